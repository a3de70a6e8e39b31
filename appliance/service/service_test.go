package service_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/egg/memegg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/process"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapy"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
	"github.com/scrapyd-debian/scrapyd/appliance/store/memstore"
)

// lister stands in for `scrapy list`, counting its runs.
type lister struct {
	runs  int
	names []string
	err   error
}

func (l *lister) List(context.Context, scrapy.Project) ([]string, error) {
	l.runs++
	return l.names, l.err
}

// addVersion uploads an egg that names its settings module.
func addVersion(t *testing.T, s *service.Service, project, version string) (int, error) {
	t.Helper()
	return s.AddVersion(context.Background(), project, version, receive(t, s, project))
}

// receive receives an egg that names its settings module, all of an egg
// the service reads (the lister stands in for its spiders).
func receive(t *testing.T, s *service.Service, project string) *service.Upload {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("EGG-INFO/entry_points.txt")
	io.WriteString(w, "[scrapy]\nsettings = bot.settings\n")
	zw.Close()
	up, err := s.Receive(project, &buf)
	if err != nil {
		t.Fatal(err)
	}
	return up
}

// newService is the service over the in-memory stores (the stores'
// contracts say they behave as the SQLite and disk ones); its dispatcher
// is never run, so scheduled jobs stay pending.
func newService(t *testing.T, l *lister) (*service.Service, *memstore.Store) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc", "scrapyd"), 0o755)
	cfg, err := config.Load(config.Options{Root: root, Env: []string{}, Cwd: root, Home: "-"})
	if err != nil {
		t.Fatal(err)
	}
	conf := func() *config.Config { return cfg }
	jobs, eggs := memstore.New(), memegg.New(t.TempDir())
	disp := dispatch.New(dispatch.Options{Config: conf, Store: jobs, Eggs: eggs, Launcher: process.New(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return &service.Service{Config: conf, Store: jobs, Eggs: eggs, Dispatch: disp,
		Lister: func(*config.Config) service.Lister { return l }}, jobs
}

// TestUploadScheduleCancel: an upload's spiders are listed once and
// cached; a scheduled job is listed pending with its settings in order;
// its id cannot be reused while it waits; cancelling it leaves no trace.
func TestUploadScheduleCancel(t *testing.T) {
	l := &lister{names: []string{"a", "b"}}
	s, _ := newService(t, l)
	ctx := context.Background()
	if n, err := addVersion(t, s, "p", "1.0"); n != 2 || err != nil {
		t.Fatalf("AddVersion = %d, %v", n, err)
	}
	if names, err := s.Spiders(ctx, "p", ""); err != nil || !slices.Equal(names, []string{"a", "b"}) || l.runs != 1 {
		t.Fatalf("Spiders = %v, %v after %d runs of scrapy list, want the cached list", names, err, l.runs)
	}
	req := service.ScheduleRequest{Project: "p", Spider: "b", JobID: "j1", Settings: []string{"A=1", "A=2"}}
	if id, err := s.Schedule(ctx, req); id != "j1" || err != nil {
		t.Fatalf("Schedule = %q, %v", id, err)
	}
	var se *service.Error
	if _, err := s.Schedule(ctx, req); !errors.As(err, &se) {
		t.Fatalf("a second job j1 while the first waits: %v", err)
	}
	l2, err := s.Jobs(ctx, service.JobsQuery{Project: "p"})
	if err != nil || len(l2.Pending) != 1 || l2.Pending[0].ID != "j1" ||
		!slices.Equal(l2.Pending[0].Settings, []job.Pair{{Name: "A", Value: "1"}, {Name: "A", Value: "2"}}) {
		t.Fatalf("Jobs = %+v, %v", l2, err)
	}
	if p, r, f := s.DaemonStatus(); p != 1 || r != 0 || f != 0 {
		t.Fatalf("DaemonStatus = %d %d %d", p, r, f)
	}
	if prev, err := s.Cancel(ctx, "p", "j1", ""); prev != job.Pending || err != nil {
		t.Fatalf("Cancel = %q, %v", prev, err)
	}
	if j, err := s.Status(ctx, "j1", "p"); j != nil || err != nil {
		t.Fatalf("Status after cancelling a pending job = %+v, %v; want unknown", j, err)
	}
}

// TestRefusedUploadStoresNothing: an egg whose `scrapy list` fails leaves
// no project, version or cached list behind.
func TestRefusedUploadStoresNothing(t *testing.T) {
	l := &lister{err: &scrapy.RunnerError{Output: "Traceback"}}
	s, jobs := newService(t, l)
	ctx := context.Background()
	if _, err := addVersion(t, s, "p", "1.0"); err == nil {
		t.Fatal("AddVersion accepted an egg whose scrapy list failed")
	}
	if ps, err := s.Projects(); len(ps) != 0 || err != nil {
		t.Fatalf("Projects = %q, %v", ps, err)
	}
	if _, cached, _ := jobs.Spiders(ctx, "p", "1.0"); cached {
		t.Fatal("a refused upload's spiders are cached")
	}
}
