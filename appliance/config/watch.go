package config

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is how long the files must be quiet before Watch reports a
// change: an editor's save (write a temporary, rename it over) or a package
// upgrade touches several files within a few milliseconds, and should cost
// one reload, not several.
const debounce = 150 * time.Millisecond

// maxDelay bounds how long a stream of events can postpone a reload.
const maxDelay = time.Second

// Watch calls changed once its watches are in place (so that a change made
// between the caller's Load and the watch is not lost), then after every
// debounced burst of changes to the files of o's search order, until ctx
// ends. It watches directories, not files, so that an editor's
// write-and-rename, a new or deleted file in conf.d, and a symlink swap all
// count. An event only prompts the caller to Load again: Watch never reads
// the files itself. It returns an error only when it cannot start watching.
func Watch(ctx context.Context, o Options, changed func()) error {
	w, err := newWatcher(o)
	if err != nil {
		return err
	}
	defer w.fs.Close()
	return w.run(ctx, debounce, changed)
}

type watcher struct {
	o    Options
	fs   *fsnotify.Watcher
	want watchSet
}

func newWatcher(o Options) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &watcher{o: o, fs: fw}
	if err := w.sync(); err != nil {
		fw.Close()
		return nil, err
	}
	return w, nil
}

func (w *watcher) run(ctx context.Context, quiet time.Duration, changed func()) error {
	changed()
	timer := time.NewTimer(quiet)
	timer.Stop()
	var deadline time.Time // when the current burst must be reported; zero when none
	poke := func() {
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(maxDelay)
		}
		timer.Reset(min(quiet, deadline.Sub(now)))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fs.Events:
			if !ok {
				return nil
			}
			if w.matters(ev) {
				poke()
			}
		case _, ok := <-w.fs.Errors:
			if !ok {
				return nil
			}
			// An overflow means events were lost: look again to be sure.
			poke()
		case <-timer.C:
			deadline = time.Time{}
			// Directories may have appeared (conf.d created) or symlinks
			// may point elsewhere now; a failure here leaves SIGHUP.
			_ = w.sync()
			changed()
		}
	}
}

// matters filters a directory's events down to the names of the search
// order. A pure chmod is left out: reading the files can update their
// access time, which must not trigger another reload.
func (w *watcher) matters(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	names := w.want[filepath.Dir(ev.Name)]
	return names[""] || names[filepath.Base(ev.Name)]
}

// sync makes the watched directories those of the current search order.
func (w *watcher) sync() error {
	want := wanted(w.o)
	var errs []error
	for dir := range want {
		if err := w.fs.Add(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, dir := range w.fs.WatchList() {
		if _, ok := want[dir]; !ok {
			w.fs.Remove(dir)
		}
	}
	w.want = want
	return errors.Join(errs...)
}

// watchSet maps each watched directory to the names in it that matter; the
// name "" means every name.
type watchSet map[string]map[string]bool

func (s watchSet) add(dir, name string) {
	if s[dir] == nil {
		s[dir] = map[string]bool{}
	}
	s[dir][name] = true
}

// file watches the file's directory for its name. When that directory does
// not exist yet, the nearest existing ancestor is watched for the first
// missing component, so that the directory's creation is seen.
func (s watchSet) file(p string) {
	dir, name := filepath.Dir(p), filepath.Base(p)
	for {
		if _, err := os.Stat(dir); err == nil || filepath.Dir(dir) == dir {
			break
		}
		dir, name = filepath.Dir(dir), filepath.Base(dir)
	}
	s.add(dir, name)
}

// wanted is every directory of o's search order: the files' directories,
// conf.d itself, and where symlinked files point.
func wanted(o Options) watchSet {
	s := watchSet{}
	files, confD := o.SearchPaths()
	confD = absolute(confD)
	s.file(confD)
	if _, err := os.Stat(confD); err == nil {
		s.add(confD, "")
	}
	if names, err := os.ReadDir(confD); err == nil {
		for _, n := range names {
			files = append(files, filepath.Join(confD, n.Name()))
		}
	}
	for _, f := range append(files, o.Extra...) {
		f = absolute(f)
		s.file(f)
		// A symlinked file changes when its target does: watch there too.
		if t, err := filepath.EvalSymlinks(f); err == nil && t != f {
			s.file(absolute(t))
		}
	}
	return s
}

func absolute(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
