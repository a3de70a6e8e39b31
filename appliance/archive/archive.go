// Package archive looks after finished crawls' files, off the dispatch
// path: it counts a log's records once the crawl has ended (LogParser's
// categories, stored with the job's stats), gzips logs and items, and
// prunes them by age and by size (logs_max_age, logs_max_bytes,
// logs_max_bytes_per_spider). A crawl that has not finished is never
// touched: its files are left as they are, and they still count towards
// the size limits.
package archive

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/logscan"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Jobs is the job store as the archiver uses it: Find fails with
// store.ErrNotFound for a job it does not know (its history was trimmed,
// or the file predates this daemon).
type Jobs interface {
	Find(ctx context.Context, project, id string) (*job.Job, error)
	// IsRunning: a job with this id, in any project, is running. Find
	// prefers a finished job, and a client may schedule an id again.
	IsRunning(ctx context.Context, id string) bool
	SetStats(seq int64, stats string) error
}

// Archiver runs the sweeps.
type Archiver struct {
	Config func() *config.Config
	Jobs   Jobs
	Log    *slog.Logger
	// Every is how often a sweep runs without being woken (age limits
	// pass while nothing ends); 0 means ten minutes.
	Every time.Duration

	wake chan struct{}
	// since is when the last whole sweep began (less a second, for coarse
	// file times), and unsettled the plain files it left because their
	// crawl had not finished: a file older than since that is not
	// unsettled was dealt with already, so a sweep asks the store about
	// changed and unsettled files only, not about every file kept. A job
	// id used again rewrites its file, which makes it new again.
	since     time.Time
	unsettled map[string]bool
	// sweeping is 1 during a sweep (atomic; an int32, not an atomic.Bool,
	// because New takes the Archiver by value).
	sweeping int32
}

// Busy says a sweep runs or is asked for: a daemon must not exit while it
// compresses a finished crawl's files (issue 19).
func (a *Archiver) Busy() bool { return atomic.LoadInt32(&a.sweeping) == 1 || len(a.wake) > 0 }

// New returns an Archiver; call Run.
func New(a Archiver) *Archiver {
	a.wake = make(chan struct{}, 1)
	return &a
}

// Wake asks for a sweep soon (a crawl ended). It never blocks.
func (a *Archiver) Wake() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Run sweeps at start, when woken and periodically, until ctx ends.
func (a *Archiver) Run(ctx context.Context) error {
	every := a.Every
	if every <= 0 {
		every = 10 * time.Minute
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		atomic.StoreInt32(&a.sweeping, 1)
		a.Sweep(ctx, time.Now())
		atomic.StoreInt32(&a.sweeping, 0)
		// Crawls ending one after another get one sweep every few
		// seconds, not one each: a sweep reads every spider's directory.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(minGap):
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.wake:
		case <-tick.C:
		}
	}
}

// minGap is the least time between two sweeps.
const minGap = 3 * time.Second

// file is one crawl's log or items file.
type file struct {
	path    string
	size    int64
	mtime   time.Time
	spider  string // project/spider
	id      string // its job's id
	running bool   // its job has not finished: never removed
	asked   bool   // the store was asked about its job in this sweep
}

// Sweep does one pass over logs_dir and items_dir: count and compress
// the files of finished crawls, then prune.
func (a *Archiver) Sweep(ctx context.Context, now time.Time) {
	cfg := a.Config()
	began := time.Now().Add(-time.Second)
	unsettled := map[string]bool{}
	for _, tree := range []struct{ dir, ext string }{{cfg.LogsDir, jobfiles.LogExt}, {jobfiles.LocalItemsDir(cfg), jobfiles.ItemsExt}} {
		if tree.dir == "" {
			continue
		}
		files := a.walk(ctx, cfg, tree.dir, tree.ext, unsettled)
		a.prune(ctx, files, cfg, now)
	}
	if ctx.Err() == nil {
		a.since, a.unsettled = began, unsettled
	}
}

// walk lists dir/P/S/ID.ext[.gz], compressing and counting on the way.
func (a *Archiver) walk(ctx context.Context, cfg *config.Config, dir, ext string, unsettled map[string]bool) []file {
	var out []file
	projects, _ := os.ReadDir(dir)
	for _, p := range projects {
		if !p.IsDir() {
			continue
		}
		spiders, _ := os.ReadDir(filepath.Join(dir, p.Name()))
		for _, s := range spiders {
			if !s.IsDir() {
				continue
			}
			sdir := filepath.Join(dir, p.Name(), s.Name())
			ents, _ := os.ReadDir(sdir)
			for _, e := range ents {
				name := e.Name()
				id, ok := jobfiles.FileID(name, ext)
				if !ok || !e.Type().IsRegular() {
					continue // not a crawl's file (LogParser's JSON, a temp file)
				}
				f := file{path: filepath.Join(sdir, name), spider: p.Name() + "/" + s.Name(), id: id}
				if name == id+ext && a.changed(e, f.path) { // not compressed yet, nor dealt with
					f.asked = true
					j, err := a.Jobs.Find(ctx, p.Name(), id)
					switch {
					case a.Jobs.IsRunning(ctx, id), err == nil && j.State != job.Finished:
						f.running = true
					case err != nil && !errors.Is(err, store.ErrNotFound):
						f.running = true // unsure: leave it be
					default:
						if j != nil && j.Spider != s.Name() {
							j = nil // another spider's job with the same id
						}
						f.path = a.finish(ctx, cfg, f.path, id, ext == jobfiles.LogExt, j)
					}
					if f.running {
						unsettled[f.path] = true
					}
				}
				if info, err := os.Stat(f.path); err == nil {
					f.size, f.mtime = info.Size(), info.ModTime()
					out = append(out, f)
				}
			}
		}
	}
	return out
}

// finish counts a finished crawl's log (once: not if its stats have the
// counts) and compresses the file when compress_finished is on. It
// returns the file's path afterwards.
func (a *Archiver) finish(ctx context.Context, cfg *config.Config, path, id string, isLog bool, j *job.Job) string {
	count := isLog && j != nil && !strings.Contains(j.Stats, `"scrapyd/log_count/`)
	if !count && !cfg.CompressFinished {
		return path
	}
	log := a.Log.With("file", path)
	if j != nil {
		log = log.With("project", j.Project, "spider", j.Spider, "job", j.ID)
	}
	var counts logscan.Counts
	out := path
	var err error
	if cfg.CompressFinished {
		counts, err = compress(path, isLog)
		if err == nil {
			// The job's id may have been scheduled again meanwhile
			// (a client-chosen jobid): then the plain file is its log.
			if a.Jobs.IsRunning(ctx, id) {
				os.Remove(jobfiles.Compressed(path))
				return path
			}
			if err = os.Remove(path); err == nil {
				out = jobfiles.Compressed(path)
			}
		}
	} else {
		counts, err = scanFile(path)
	}
	if err != nil {
		log.Warn("cannot archive a finished crawl's file", "err", err)
		return path
	}
	if count {
		if err := a.Jobs.SetStats(j.Seq, withCounts(j.Stats, counts)); err != nil {
			log.Warn("cannot store the log's counts", "err", err)
		}
	}
	return out
}

// withCounts adds the counts to a stats JSON object ("" or not an object:
// the counts alone).
func withCounts(stats string, c logscan.Counts) string {
	m := map[string]json.RawMessage{}
	if stats != "" {
		if err := json.Unmarshal([]byte(stats), &m); err != nil {
			m = map[string]json.RawMessage{}
		}
	}
	raw, _ := json.Marshal(c)
	var add map[string]json.RawMessage
	json.Unmarshal(raw, &add)
	for k, v := range add {
		m[k] = v
	}
	out, _ := json.Marshal(m)
	return string(out)
}

func scanFile(path string) (logscan.Counts, error) {
	f, err := os.Open(path)
	if err != nil {
		return logscan.Counts{}, err
	}
	defer f.Close()
	return logscan.Scan(f)
}

// compress writes path.gz beside path (a temp file, synced, renamed), with
// path's mode and modification time, reading path once; a log is counted
// on the way. The gzip header carries the plain size (jobfiles.SizeComment).
// A file that changes size while it is read is not finished: it fails.
func compress(path string, isLog bool) (c logscan.Counts, err error) {
	src, err := os.Open(path)
	if err != nil {
		return c, err
	}
	defer src.Close()
	info, err := src.Stat()
	if err != nil {
		return c, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".gz.*")
	if err != nil {
		return c, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	zw, _ := gzip.NewWriterLevel(tmp, gzip.DefaultCompression)
	zw.Name, zw.ModTime, zw.Comment = filepath.Base(path), info.ModTime(), jobfiles.SizeComment(info.Size())
	n := &counter{r: src}
	r := io.TeeReader(n, zw)
	if isLog {
		c, err = logscan.Scan(r)
	} else {
		_, err = io.Copy(io.Discard, r)
	}
	if err != nil {
		return c, err
	}
	if n.n != info.Size() {
		return c, fmt.Errorf("%s changed while it was compressed (%d bytes, then %d)", path, info.Size(), n.n)
	}
	if err = zw.Close(); err != nil {
		return c, err
	}
	if err = tmp.Chmod(info.Mode().Perm()); err != nil {
		return c, err
	}
	if err = tmp.Sync(); err != nil {
		return c, err
	}
	if err = tmp.Close(); err != nil {
		return c, err
	}
	if err = os.Chtimes(tmp.Name(), info.ModTime(), info.ModTime()); err != nil {
		return c, err
	}
	return c, os.Rename(tmp.Name(), jobfiles.Compressed(path))
}

type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// prune removes finished crawls' files: older than logs_max_age, then the
// oldest while a spider's files exceed logs_max_bytes_per_spider, then the
// oldest while all of them exceed logs_max_bytes. A running crawl's file
// counts towards the sizes but stays.
// changed: the plain file e at path was written since the last whole
// sweep began, or that sweep left it because its crawl ran.
func (a *Archiver) changed(e os.DirEntry, path string) bool {
	if a.unsettled[path] {
		return true
	}
	info, err := e.Info()
	return err != nil || !info.ModTime().Before(a.since)
}

func (a *Archiver) prune(ctx context.Context, files []file, cfg *config.Config, now time.Time) {
	sort.Slice(files, func(i, j int) bool { return files[i].mtime.After(files[j].mtime) }) // newest first
	gone := make([]bool, len(files))
	remove := func(i int, why string) {
		if files[i].running || gone[i] {
			return
		}
		// A file the store was not asked about: its id may have been
		// scheduled again, and that crawl not have written yet.
		if !files[i].asked && a.Jobs.IsRunning(ctx, files[i].id) {
			files[i].running = true
			return
		}
		if err := os.Remove(files[i].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.Log.Warn("cannot prune a finished crawl's file", "file", files[i].path, "err", err)
			return
		}
		gone[i] = true
		a.Log.Info("pruned a finished crawl's file", "file", files[i].path, "reason", why)
	}
	if cfg.LogsMaxAge > 0 {
		for i, f := range files {
			if now.Sub(f.mtime) > cfg.LogsMaxAge {
				remove(i, "logs_max_age")
			}
		}
	}
	over := func(limit int64, key func(file) string, why string) {
		if limit <= 0 {
			return
		}
		total := map[string]int64{}
		for i, f := range files {
			if gone[i] {
				continue
			}
			k := key(f)
			total[k] += f.size
			if total[k] > limit {
				remove(i, why)
				if gone[i] {
					total[k] -= f.size
				}
			}
		}
	}
	over(cfg.LogsMaxBytesPerSpider, func(f file) string { return f.spider }, "logs_max_bytes_per_spider")
	over(cfg.LogsMaxBytes, func(file) string { return "" }, "logs_max_bytes")
}
