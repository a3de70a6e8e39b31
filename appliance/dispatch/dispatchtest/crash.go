// Package dispatchtest is the restart test every launcher passes with the
// dispatcher: a daemon dies at each crash point of a start, and the next one
// never starts the job twice and leaves no crawl untracked. The dispatcher's
// tests run it with the exec launcher and a fake; the systemd lab runs it
// with transient units.
package dispatchtest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Rig is one launcher's part of the walk, made per crash point.
type Rig struct {
	// NewLauncher is a daemon's launcher; a second call is the restarted
	// daemon's.
	NewLauncher func() launch.Launcher
	// Starts counts the crawls of the job ever started.
	Starts func() int
	// Running tells whether a crawl of the job runs.
	Running func() bool
	// Env is the crawls' base environment; MakeDir as dispatch.Options.
	Env     []string
	MakeDir func(dir string) error
}

// Job is the id of the job the walk schedules, in project "p", spider "s".
const Job = "crash-walk"

// Walk runs the restart test at every crash point. root makes a data
// directory; rig gets the loaded configuration (to point python at a stand-in
// crawl) and returns the launcher's part.
func Walk(t *testing.T, root func(t *testing.T) string, rig func(t *testing.T, cfg *config.Config) Rig) {
	for _, point := range dispatch.CrashPoints {
		t.Run(point, func(t *testing.T) { walk(t, root(t), point, rig) })
	}
}

// Open makes a data directory in root whose scrapyd.conf has max_proc = 4,
// conf in [scrapyd], and project p's settings module, and returns its
// configuration and its job store (closed when the test ends).
func Open(t testing.TB, root, conf string) (*config.Config, *store.Store) {
	t.Helper()
	os.MkdirAll(filepath.Join(root, "etc/scrapyd"), 0o755)
	text := "[scrapyd]\nmax_proc = 4\n" + conf + "\n[settings]\np = p.settings\n"
	if err := os.WriteFile(filepath.Join(root, "etc/scrapyd/scrapyd.conf"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Options{Root: root, Env: []string{}, Cwd: root, Home: "-"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(cfg.DbsDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return cfg, st
}

func walk(t *testing.T, root, point string, rig func(t *testing.T, cfg *config.Config) Rig) {
	cfg, st := Open(t, root, "")
	os.MkdirAll(cfg.EggsDir, 0o755)
	r := rig(t, cfg)
	run := func(crash func(string)) (*dispatch.Dispatcher, func()) {
		disp := dispatch.New(dispatch.Options{
			Config: func() *config.Config { return cfg }, Store: st, Eggs: &egg.Store{Dir: cfg.EggsDir},
			Launcher: r.NewLauncher(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Env: r.Env,
			MakeDir: r.MakeDir, Crash: crash,
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- disp.Run(ctx) }()
		return disp, func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	find := func() job.Job {
		j, err := st.Find(context.Background(), "p", Job)
		if err != nil {
			t.Fatal(err)
		}
		return *j
	}

	crashed := make(chan struct{})
	disp, stop := run(func(p string) {
		if p == point {
			close(crashed)
			runtime.Goexit() // the daemon dies here
		}
	})
	if _, err := st.Enqueue(job.Spec{ID: Job, Project: "p", Spider: "s"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	disp.Wake()
	<-crashed
	stop()
	if point == "launched" || point == "recorded" {
		eventually(t, "the crawl runs", func() bool { return r.Starts() == 1 })
	}

	disp, stop = run(nil)
	defer stop()
	eventually(t, "the restarted daemon tracks the job", func() bool {
		j := find()
		return j.State == job.Finished || j.State == job.Running && disp.Running() == 1 && r.Running() && r.Starts() == 1
	})
	if find().State == job.Running {
		if _, err := disp.Cancel(t.Context(), "p", Job, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the job is recorded", func() bool { return find().State == job.Finished })
	j := find()
	eventually(t, "no crawl runs", func() bool { return !r.Running() })
	switch n := r.Starts(); {
	case n > 1:
		t.Fatalf("the job was started %d times", n)
	case n == 0 && point != "persisted":
		t.Fatalf("the job never started (outcome %s)", j.Outcome)
	case n == 0 && j.Outcome != job.OutcomeLost:
		t.Fatalf("never started, outcome %s: want lost", j.Outcome)
	case n == 1 && j.Outcome != job.OutcomeCancelled:
		t.Fatalf("outcome %s, want cancelled", j.Outcome)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
