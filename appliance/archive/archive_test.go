package archive

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/store/memstore"
)

var now = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

type fixture struct {
	cfg  *config.Config
	jobs *memstore.Store
	a    *Archiver
}

func newFixture(t *testing.T, conf func(*config.Config)) *fixture {
	root := t.TempDir()
	cfg := &config.Config{LogsDir: filepath.Join(root, "logs"), ItemsDir: filepath.Join(root, "items"), CompressFinished: true}
	if conf != nil {
		conf(cfg)
	}
	f := &fixture{cfg: cfg, jobs: memstore.New()}
	f.a = New(Archiver{Config: func() *config.Config { return f.cfg }, Jobs: f.jobs, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return f
}

// job records a job as running or finished (with stats).
func (f *fixture) job(t *testing.T, project, spider, id string, state job.State, stats string) {
	f.jobs.Enqueue(job.Spec{ID: id, Project: project, Spider: spider}, now)
	j, _ := f.jobs.Claim(now, nil)
	f.jobs.Started(j.Seq, "h", 1)
	if state == job.Finished {
		f.jobs.End(j.Seq, now, nil, job.OutcomeFinished, stats, 1000)
	}
}

// file writes a crawl's file of size bytes, last changed age ago.
func (f *fixture) file(t *testing.T, dir, rel string, size int, age time.Duration) string {
	p := filepath.Join(dir, filepath.FromSlash(rel))
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, bytes.Repeat([]byte("x"), size), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, now.Add(-age), now.Add(-age))
	return p
}

// left lists the files under dir, relative.
func left(t *testing.T, dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(out)
	return out
}

const sampleLog = `2026-01-01 00:00:01 [scrapy.core.scraper] ERROR: Spider error processing <GET http://a/e>
Traceback (most recent call last):
  ValueError: boom
2026-01-01 00:00:02 [scrapy.downloadermiddlewares.retry] DEBUG: Retrying <GET http://a/c> (failed 1 times)
2026-01-01 00:00:03 [demo] WARNING: careful
2026-01-01 00:00:04 [scrapy.core.engine] INFO: Spider closed (finished)
`

func TestFinishedFilesCountedAndCompressedRunningUntouched(t *testing.T) {
	f := newFixture(t, nil)
	f.job(t, "p", "s", "done", job.Finished, `{"item_scraped_count": 2}`)
	f.job(t, "p", "s", "live", job.Running, "")
	done := filepath.Join(f.cfg.LogsDir, "p", "s", "done.log")
	os.MkdirAll(filepath.Dir(done), 0o755)
	os.WriteFile(done, []byte(sampleLog), 0o640)
	mtime := now.Add(-time.Hour)
	os.Chtimes(done, mtime, mtime)
	f.file(t, f.cfg.LogsDir, "p/s/live.log", 10, 0)
	f.file(t, f.cfg.ItemsDir, "p/s/done.jl", 100, time.Hour)
	f.file(t, f.cfg.ItemsDir, "p/s/live.jl", 10, 0)
	f.file(t, f.cfg.LogsDir, "p/s/done.json", 10, 0) // LogParser's: not a crawl's file

	f.a.Sweep(context.Background(), now)

	if got, want := left(t, f.cfg.LogsDir), []string{"p/s/done.json", "p/s/done.log.gz", "p/s/live.log"}; !slices.Equal(got, want) {
		t.Errorf("logs_dir holds %q, want %q", got, want)
	}
	if got, want := left(t, f.cfg.ItemsDir), []string{"p/s/done.jl.gz", "p/s/live.jl"}; !slices.Equal(got, want) {
		t.Errorf("items_dir holds %q, want %q", got, want)
	}
	// The compressed log is the log, keeps its mode and time, and says its size.
	gz, err := os.Open(done + ".gz")
	if err != nil {
		t.Fatal(err)
	}
	defer gz.Close()
	info, _ := gz.Stat()
	if info.Mode().Perm() != 0o640 || !info.ModTime().Equal(mtime) {
		t.Errorf("compressed file mode %v time %v, want 0640 %v", info.Mode().Perm(), info.ModTime(), mtime)
	}
	zr, err := gzip.NewReader(gz)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(zr)
	if string(data) != sampleLog {
		t.Errorf("decompressed %q", data)
	}
	if n, ok := jobfiles.ParseSizeComment(zr.Comment); !ok || n != int64(len(sampleLog)) {
		t.Errorf("size comment %q", zr.Comment)
	}
	// The counts are stored with the job's stats, once.
	j, _ := f.jobs.Find(context.Background(), "p", "done")
	for _, want := range []string{`"item_scraped_count":2`, `"scrapyd/log_count/error":1`, `"scrapyd/log_count/retry":1`, `"scrapyd/log_count/warning":1`} {
		if !strings.Contains(j.Stats, want) {
			t.Errorf("stats %s lack %s", j.Stats, want)
		}
	}
	f.a.Sweep(context.Background(), now)
	if got := left(t, f.cfg.LogsDir); !slices.Contains(got, "p/s/done.log.gz") {
		t.Errorf("second sweep: %q", got)
	}
}

func TestCountedWithoutCompression(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.CompressFinished = false })
	f.job(t, "p", "s", "done", job.Finished, "")
	done := filepath.Join(f.cfg.LogsDir, "p", "s", "done.log")
	os.MkdirAll(filepath.Dir(done), 0o755)
	os.WriteFile(done, []byte(sampleLog), 0o644)
	f.a.Sweep(context.Background(), now)
	if got := left(t, f.cfg.LogsDir); !slices.Equal(got, []string{"p/s/done.log"}) {
		t.Errorf("logs_dir holds %q", got)
	}
	if j, _ := f.jobs.Find(context.Background(), "p", "done"); !strings.Contains(j.Stats, `"scrapyd/log_count/error":1`) {
		t.Errorf("stats %q", j.Stats)
	}
}

func TestPruneByAge(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.LogsMaxAge = 48 * time.Hour; c.CompressFinished = false })
	f.job(t, "p", "s", "old-running", job.Running, "")
	f.file(t, f.cfg.LogsDir, "p/s/old.log.gz", 10, 72*time.Hour)
	f.file(t, f.cfg.LogsDir, "p/s/old-running.log", 10, 72*time.Hour) // a crawl silent for days
	f.file(t, f.cfg.LogsDir, "p/s/new.log.gz", 10, time.Hour)
	f.file(t, f.cfg.ItemsDir, "p/s/old.jl.gz", 10, 72*time.Hour)
	f.file(t, f.cfg.LogsDir, "p/s/notes.txt", 10, 72*time.Hour) // not a crawl's file
	f.a.Sweep(context.Background(), now)
	if got, want := left(t, f.cfg.LogsDir), []string{"p/s/new.log.gz", "p/s/notes.txt", "p/s/old-running.log"}; !slices.Equal(got, want) {
		t.Errorf("logs_dir holds %q, want %q", got, want)
	}
	if got := left(t, f.cfg.ItemsDir); len(got) != 0 {
		t.Errorf("items_dir holds %q", got)
	}
}

func TestPruneBySize(t *testing.T) {
	f := newFixture(t, func(c *config.Config) {
		c.LogsMaxBytesPerSpider, c.LogsMaxBytes, c.CompressFinished = 250, 400, false
	})
	f.job(t, "p", "a", "a-running", job.Running, "")
	// Spider a: a running crawl's file (oldest, never removed) and three
	// finished ones of 100 bytes; spider b: two finished.
	f.file(t, f.cfg.LogsDir, "p/a/a-running.log", 100, 10*time.Hour)
	f.file(t, f.cfg.LogsDir, "p/a/a1.log.gz", 100, 1*time.Hour)
	f.file(t, f.cfg.LogsDir, "p/a/a2.log.gz", 100, 2*time.Hour)
	f.file(t, f.cfg.LogsDir, "p/a/a3.log.gz", 100, 3*time.Hour)
	f.file(t, f.cfg.LogsDir, "p/b/b1.log.gz", 100, 90*time.Minute)
	f.file(t, f.cfg.LogsDir, "q/b/b2.log.gz", 100, 150*time.Minute)
	f.a.Sweep(context.Background(), now)
	// Per spider (250): a keeps a1, a2 (200) and its running file; then in
	// all (400), newest first: a1 100, b1 200, a2 300, b2 400, the running
	// file 500 (stays).
	want := []string{"p/a/a-running.log", "p/a/a1.log.gz", "p/a/a2.log.gz", "p/b/b1.log.gz", "q/b/b2.log.gz"}
	if got := left(t, f.cfg.LogsDir); !slices.Equal(got, want) {
		t.Errorf("logs_dir holds %q, want %q", got, want)
	}
	f.cfg.LogsMaxBytes = 300 // live: the next sweep applies it
	f.a.Sweep(context.Background(), now)
	want = []string{"p/a/a-running.log", "p/a/a1.log.gz", "p/a/a2.log.gz", "p/b/b1.log.gz"}
	if got := left(t, f.cfg.LogsDir); !slices.Equal(got, want) {
		t.Errorf("after logs_max_bytes = 300, logs_dir holds %q, want %q", got, want)
	}
}

// BenchmarkCompress: counting and gzipping a 16 MiB Scrapy log in one read.
func BenchmarkCompress(b *testing.B) {
	dir := b.TempDir()
	data := []byte(strings.Repeat(sampleLog, (16<<20)/len(sampleLog)))
	path := filepath.Join(dir, "j.log")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		b.StopTimer()
		os.WriteFile(path, data, 0o644)
		b.StartTimer()
		if _, err := compress(path, true); err != nil {
			b.Fatal(err)
		}
	}
}

// asking counts the archiver's questions to the store.
type asking struct {
	*memstore.Store
	finds int
	asked []string
}

func (a *asking) Find(ctx context.Context, project, id string) (*job.Job, error) {
	a.finds++
	a.asked = append(a.asked, id)
	return a.Store.Find(ctx, project, id)
}

// A sweep asks the store only about files written since the last sweep
// began and files a running crawl held then: a thousand kept logs cost no
// query each time a crawl ends. A file left unasked is still never pruned
// while a crawl of its id runs.
func TestSweepAsksOnlyAboutChangedFiles(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.CompressFinished = false; c.LogsMaxAge = 48 * time.Hour })
	jobs := &asking{Store: f.jobs}
	f.a.Jobs = jobs
	old := time.Now().Add(-time.Hour) // real times: the sweep compares with the clock
	write := func(id string, at time.Time) {
		p := filepath.Join(f.cfg.LogsDir, "p", "s", id+".log")
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(sampleLog), 0o644)
		os.Chtimes(p, at, at)
	}
	for _, id := range []string{"a", "b", "c"} {
		f.job(t, "p", "s", id, job.Finished, "")
		write(id, old)
	}
	f.job(t, "p", "s", "r", job.Running, "")
	write("r", old)
	ctx := context.Background()
	f.a.Sweep(ctx, time.Now())
	if jobs.finds != 4 {
		t.Fatalf("first sweep asked about %d files, want all 4", jobs.finds)
	}
	if j, _ := f.jobs.Find(ctx, "p", "a"); !strings.Contains(j.Stats, "scrapyd/log_count/") {
		t.Fatalf("a's log was not counted: %q", j.Stats)
	}
	jobs.finds = 0
	f.a.Sweep(ctx, time.Now())
	if jobs.finds != 1 {
		t.Fatalf("second sweep asked about %d files, want 1 (the running crawl's)", jobs.finds)
	}
	// r ends; b is written again (its id scheduled again and finished).
	r, _ := f.jobs.Find(ctx, "p", "r")
	f.jobs.End(r.Seq, time.Now(), nil, job.OutcomeFinished, "", 1000)
	write("b", time.Now())
	jobs.finds = 0
	f.a.Sweep(ctx, time.Now())
	if jobs.finds != 2 {
		t.Fatalf("third sweep asked about %d files, want 2 (r, once unsettled, and b, rewritten)", jobs.finds)
	}
	if j, _ := f.jobs.Find(ctx, "p", "r"); !strings.Contains(j.Stats, "scrapyd/log_count/") {
		t.Fatalf("r's log was not counted once it ended: %q", j.Stats)
	}
	// c's id runs again before its crawl wrote a line: its old file is
	// past logs_max_age, and the sweep does not ask about it, yet keeps it.
	// (b, written within the last second, may be asked about again: file
	// times can be coarse.)
	f.job(t, "p", "s", "c", job.Running, "")
	jobs.asked = nil
	f.a.Sweep(ctx, time.Now().Add(72*time.Hour))
	if slices.Contains(jobs.asked, "c") || slices.Contains(jobs.asked, "a") {
		t.Fatalf("fourth sweep asked about %q, want neither a nor c", jobs.asked)
	}
	if got, want := left(t, f.cfg.LogsDir), []string{"p/s/c.log"}; !slices.Equal(got, want) {
		t.Errorf("after the age limit passed, logs_dir holds %q, want %q (c runs again)", got, want)
	}
}
