package logship

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// memLogs is the database's side in memory, with pgstore's rules: a chunk
// is taken only at the shipped size, nothing after the cap or the end.
// lose makes the next shipment be stored but its answer lost.
type memLogs struct {
	mu     sync.Mutex
	jobs   []store.ShippedLog
	data   map[int64][]byte
	chunks int
	lose   bool
}

func (m *memLogs) LogsToShip(context.Context) ([]store.ShippedLog, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.ShippedLog
	for _, l := range m.jobs {
		if !l.Done {
			out = append(out, l)
		}
	}
	return out, nil
}

func (m *memLogs) ShipLog(_ context.Context, seq, off int64, data []byte, capped, done bool) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.jobs {
		l := &m.jobs[i]
		if l.Seq != seq {
			continue
		}
		switch {
		case l.Done:
		case l.Capped:
			l.Done = l.Done || done
		case off == l.Size:
			m.data[seq] = append(m.data[seq], data...)
			m.chunks++
			l.Size += int64(len(data))
			l.Capped, l.Done = capped, done
		}
		if m.lose {
			m.lose = false
			return 0, errors.New("connection reset")
		}
		return l.Size, nil
	}
	return 0, store.ErrNotOurs
}

func (m *memLogs) ShippedLog(_ context.Context, project, spider, id string) (store.ShippedLog, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.jobs {
		if l.Project == project && l.Spider == spider && l.ID == id {
			return l, true, nil
		}
	}
	return store.ShippedLog{}, false, nil
}

func (m *memLogs) ReadShippedLog(_ context.Context, seq, off, n int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.data[seq]
	if off >= int64(len(d)) {
		return nil, nil
	}
	return append([]byte(nil), d[off:min(off+n, int64(len(d)))]...), nil
}

type fixture struct {
	m    *memLogs
	s    *Shipper
	path string
	cfg  *config.Config
}

func newFixture(t *testing.T, limit int64) *fixture {
	cfg := &config.Config{LogsDir: t.TempDir(), LogShipLimit: limit}
	m := &memLogs{data: map[int64][]byte{}, jobs: []store.ShippedLog{{Seq: 1, Project: "p", Spider: "s", ID: "j", State: job.Running, Node: "n1"}}}
	path := filepath.Join(cfg.LogsDir, "p", "s", "j.log")
	os.MkdirAll(filepath.Dir(path), 0o755)
	return &fixture{m: m, path: path, cfg: cfg,
		s: &Shipper{Store: m, Config: func() *config.Config { return cfg }, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Chunk: 8}}
}

func (f *fixture) write(t *testing.T, s string) {
	w, err := os.OpenFile(f.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString(s)
	w.Close()
}

// served is the log as another node serves it, read in small pieces.
func (f *fixture) served(t *testing.T) string {
	t.Helper()
	l, ok, err := (&Reader{Source: f.m, Window: 5}).Open(context.Background(), "p", "s", "j")
	if err != nil || !ok {
		t.Fatalf("open: %v %v", ok, err)
	}
	b, err := io.ReadAll(io.NewSectionReader(l, 0, l.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A running crawl's log is shipped as it grows, in chunks, and its end
// with the last bytes; a shipment whose answer was lost is sent again
// without storing a byte twice.
func TestShipGrowingLog(t *testing.T) {
	f := newFixture(t, 1<<20)
	ctx := context.Background()
	if err := f.s.round(ctx); err != nil || f.m.chunks != 0 {
		t.Fatalf("before the log exists: %v, %d chunks", err, f.m.chunks)
	}
	f.write(t, "first line\nsecond line\n")
	if err := f.s.round(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.served(t); got != "first line\nsecond line\n" {
		t.Fatalf("after one round: %q", got)
	}
	if !f.s.Busy() {
		t.Fatal("not busy while a crawl's log is shipped")
	}
	f.write(t, "third")
	f.m.lose = true
	if err := f.s.round(ctx); err == nil {
		t.Fatal("a lost answer is not an error")
	}
	f.write(t, " line, unterminated")
	if err := f.s.round(ctx); err != nil {
		t.Fatal(err)
	}
	j := job.Job{Spec: job.Spec{ID: "j", Project: "p", Spider: "s"}, Seq: 1, State: job.Running}
	f.write(t, "\nlast\n")
	f.s.Ended(j)
	want := "first line\nsecond line\nthird line, unterminated\nlast\n"
	if got := f.served(t); got != want {
		t.Fatalf("whole log %q, want %q", got, want)
	}
	if list, _ := f.m.LogsToShip(ctx); len(list) != 0 || f.s.Busy() {
		t.Fatalf("still to ship after the end: %+v (busy %v)", list, f.s.Busy())
	}
}

// Past log_ship_limit nothing more is shipped; the served log ends with a
// line of its own saying where the rest is.
func TestShipCapped(t *testing.T) {
	f := newFixture(t, 30)
	f.write(t, "0123456789\n0123456789\n0123456789\n0123456789\n")
	if err := f.s.round(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.write(t, "more\n")
	f.s.Ended(job.Job{Spec: job.Spec{ID: "j", Project: "p", Spider: "s"}, Seq: 1})
	got := f.served(t)
	if !strings.HasPrefix(got, "0123456789\n0123456789\n01234567\n[scrapyd] log_ship_limit:") || !strings.HasSuffix(got, "on node n1\n") {
		t.Fatalf("capped log %q", got)
	}
	if l := f.m.jobs[0]; !l.Capped || !l.Done || l.Size != 30 {
		t.Fatalf("shipped %+v", l)
	}
}

// A crawl's log compressed after its end (compress_finished) before its
// last bytes were shipped is read from the .gz.
func TestShipCompressedRest(t *testing.T) {
	f := newFixture(t, 1<<20)
	f.write(t, "shipped while running\n")
	if err := f.s.round(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.write(t, "written at the end\n")
	raw, _ := os.ReadFile(f.path)
	gz, _ := os.Create(f.path + ".gz")
	zw := gzip.NewWriter(gz)
	zw.Write(raw)
	zw.Close()
	gz.Close()
	os.Remove(f.path)
	f.m.jobs[0].State = job.Finished
	if err := f.s.round(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.served(t); got != string(raw) {
		t.Fatalf("log %q, want %q", got, raw)
	}
	if !f.m.jobs[0].Done {
		t.Fatal("the end is not recorded")
	}
}

// A log that cannot be read holds up no other log, and is not taken for
// the database failing (no back-off).
func TestShipUnreadableLogAlone(t *testing.T) {
	f := newFixture(t, 1<<20)
	// Job 1's log is a directory; job 2's a file.
	os.MkdirAll(f.path, 0o755)
	f.m.jobs = append(f.m.jobs, store.ShippedLog{Seq: 2, Project: "p", Spider: "s", ID: "k", State: job.Running, Node: "n1"})
	other := filepath.Join(filepath.Dir(f.path), "k.log")
	os.WriteFile(other, []byte("k's line\n"), 0o644)
	if err := f.s.round(context.Background()); err != nil {
		t.Fatalf("round: %v", err)
	}
	if got := string(f.m.data[2]); got != "k's line\n" {
		t.Fatalf("the readable log shipped %q", got)
	}
}
