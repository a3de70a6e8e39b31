package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watching runs a watcher over o with the given quiet period. Each callback
// sends what read() returns at that moment; the first (the watch is in
// place) has already been received when watching returns.
func watching(t *testing.T, o Options, quiet time.Duration, read func() string) <-chan string {
	t.Helper()
	w, err := newWatcher(o)
	if err != nil {
		t.Fatal(err)
	}
	calls := make(chan string, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, quiet, func() { calls <- read() })
	}()
	t.Cleanup(func() { cancel(); <-done; w.fs.Close() })
	next(t, calls, "the first call")
	return calls
}

// next waits for a callback. The deadline is generous: it only stops a
// broken test, it measures nothing.
func next(t *testing.T, calls <-chan string, what string) string {
	t.Helper()
	select {
	case s := <-calls:
		return s
	case <-time.After(20 * time.Second):
		t.Fatalf("no callback after %s", what)
		return ""
	}
}

func TestWatchSeesEveryKindOfChange(t *testing.T) {
	root := t.TempDir()
	o := opts(root)
	confD := filepath.Join(root, "etc/scrapyd/conf.d")
	srv := filepath.Join(root, "srv")
	write(t, filepath.Join(confD, "10-base.conf"), "[scrapyd]\n")
	write(t, filepath.Join(srv, "a.conf"), "[scrapyd]\nmax_proc = 1\n")
	write(t, filepath.Join(srv, "b.conf"), "[scrapyd]\nmax_proc = 2\n")
	calls := watching(t, o, 20*time.Millisecond, func() string { return "" })

	steps := []struct {
		name string
		do   func() error
	}{
		{"new file in conf.d", func() error {
			return os.WriteFile(filepath.Join(confD, "20-limits.conf"), []byte("[scrapyd]\nmax_proc = 16\n"), 0o644)
		}},
		{"edit in place", func() error {
			return os.WriteFile(filepath.Join(confD, "20-limits.conf"), []byte("[scrapyd]\nmax_proc = 8\n"), 0o644)
		}},
		{"write and rename (an editor's save)", func() error {
			tmp := filepath.Join(confD, ".20-limits.conf.swx")
			if err := os.WriteFile(tmp, []byte("[scrapyd]\nmax_proc = 4\n"), 0o644); err != nil {
				return err
			}
			return os.Rename(tmp, filepath.Join(confD, "20-limits.conf"))
		}},
		{"delete", func() error { return os.Remove(filepath.Join(confD, "20-limits.conf")) }},
		{"new symlink", func() error { return os.Symlink(filepath.Join(srv, "a.conf"), filepath.Join(confD, "30-link.conf")) }},
		{"edit the symlink's target", func() error {
			return os.WriteFile(filepath.Join(srv, "a.conf"), []byte("[scrapyd]\nmax_proc = 3\n"), 0o644)
		}},
		{"symlink swap", func() error {
			tmp := filepath.Join(confD, ".30-link.tmp")
			if err := os.Symlink(filepath.Join(srv, "b.conf"), tmp); err != nil {
				return err
			}
			return os.Rename(tmp, filepath.Join(confD, "30-link.conf"))
		}},
		{"edit the new target", func() error {
			return os.WriteFile(filepath.Join(srv, "b.conf"), []byte("[scrapyd]\nmax_proc = 5\n"), 0o644)
		}},
		{"scrapyd.conf created", func() error {
			return os.WriteFile(filepath.Join(root, "etc/scrapyd/scrapyd.conf"), []byte("[scrapyd]\n"), 0o644)
		}},
		{"~/.scrapyd.conf created", func() error {
			write(t, filepath.Join(o.Home, ".scrapyd.conf"), "[scrapyd]\n")
			return nil
		}},
		{"conf.d removed", func() error { return os.RemoveAll(confD) }},
		{"conf.d created again", func() error {
			write(t, filepath.Join(confD, "20-limits.conf"), "[scrapyd]\n")
			return nil
		}},
		{"a file in the new conf.d", func() error {
			return os.WriteFile(filepath.Join(confD, "40-more.conf"), []byte("[scrapyd]\n"), 0o644)
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		next(t, calls, s.name)
		// Let this step's events settle, so the next step's call is its own.
		drain(calls, 100*time.Millisecond)
	}
}

// drain empties calls until it has been quiet for d.
func drain(calls <-chan string, d time.Duration) {
	for {
		select {
		case <-calls:
		case <-time.After(d):
			return
		}
	}
}

func TestWatchWhenNothingExistsYet(t *testing.T) {
	root := t.TempDir()
	o := opts(root)
	calls := watching(t, o, 20*time.Millisecond, func() string { return "" })
	write(t, filepath.Join(root, "etc/scrapyd/conf.d/20-limits.conf"), "[scrapyd]\nmax_proc = 16\n")
	next(t, calls, "creating etc/scrapyd/conf.d")
	drain(calls, 100*time.Millisecond)
	write(t, filepath.Join(root, "etc/scrapyd/conf.d/30-more.conf"), "[scrapyd]\n")
	next(t, calls, "a second file in the new conf.d")
}

// TestWatchDebouncesABurst: twenty quick rewrites make one call, which
// sees the last content.
func TestWatchDebouncesABurst(t *testing.T) {
	root := t.TempDir()
	f := filepath.Join(root, "etc/scrapyd/conf.d/20-limits.conf")
	write(t, f, "[scrapyd]\nmax_proc = 0\n")
	read := func() string { b, _ := os.ReadFile(f); return string(b) }
	// The quiet period is far longer than the burst takes, so that every
	// rewrite falls inside it.
	calls := watching(t, opts(root), 500*time.Millisecond, read)
	var last string
	for i := 1; i <= 20; i++ {
		last = fmt.Sprintf("[scrapyd]\nmax_proc = %d\n", i)
		tmp := f + ".tmp"
		if err := os.WriteFile(tmp, []byte(last), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f); err != nil {
			t.Fatal(err)
		}
	}
	if got := next(t, calls, "the burst"); got != last {
		t.Fatalf("the call after the burst saw %q, want the final %q", got, last)
	}
}

func TestWatchFiltersNames(t *testing.T) {
	root := t.TempDir()
	o := opts(root)
	write(t, filepath.Join(root, "etc/scrapyd/conf.d/x"), "")
	write(t, filepath.Join(o.Cwd, "notes.txt"), "")
	write(t, filepath.Join(o.Home, "notes.txt"), "")
	w, err := newWatcher(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.fs.Close()
	for _, c := range []struct {
		name string
		op   fsnotify.Op
		want bool
	}{
		{filepath.Join(o.Cwd, "scrapyd.conf"), fsnotify.Write, true},
		{filepath.Join(o.Cwd, "notes.txt"), fsnotify.Write, false},
		{filepath.Join(root, "etc/scrapyd/scrapyd.conf"), fsnotify.Rename, true},
		{filepath.Join(root, "etc/scrapyd/other.conf"), fsnotify.Create, false},
		{filepath.Join(root, "etc/scrapyd/conf.d"), fsnotify.Remove, true},
		{filepath.Join(root, "etc/scrapyd/conf.d/anything"), fsnotify.Create, true},
		{filepath.Join(root, "etc/scrapyd/conf.d/anything"), fsnotify.Chmod, false},
		{filepath.Join(o.Home, ".scrapyd.conf"), fsnotify.Create, true},
	} {
		if got := w.matters(fsnotify.Event{Name: c.name, Op: c.op}); got != c.want {
			t.Errorf("%s %s: matters = %v, want %v", c.op, c.name, got, c.want)
		}
	}
}
