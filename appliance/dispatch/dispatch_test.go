package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch/dispatchtest"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/launchtest"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/process"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// daemon is the dispatcher's world in a test: a real store and
// configuration, and a launcher (the fake unless a test sets another).
type daemon struct {
	t     *testing.T
	cfg   *config.Config
	store *store.Store
	env   []string
	disp  *dispatch.Dispatcher // the last one run
	jobs  dispatch.Jobs        // what the dispatcher is given; the store unless a test wraps it
	// mayClaim is the dispatcher's MayClaim (nil: always).
	mayClaim func() bool
}

// newDaemon makes a data directory; conf is added to [scrapyd].
func newDaemon(t *testing.T, conf string) *daemon {
	t.Helper()
	cfg, st := dispatchtest.Open(t, t.TempDir(), conf)
	return &daemon{t: t, cfg: cfg, store: st}
}

// run starts a dispatcher with l; the returned stop ends it (as a
// daemon's exit: crawls keep running).
func (d *daemon) run(l launch.Launcher, crash func(string)) (*dispatch.Dispatcher, func()) {
	d.t.Helper()
	var jobs dispatch.Jobs = d.store
	if d.jobs != nil {
		jobs = d.jobs
	}
	disp := dispatch.New(dispatch.Options{
		Config: func() *config.Config { return d.cfg }, Store: jobs, Eggs: &egg.Store{Dir: d.cfg.EggsDir},
		Launcher: l, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Env: d.env, Crash: crash, MayClaim: d.mayClaim,
	})
	d.disp = disp
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- disp.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			d.t.Error(err)
		}
	}
	d.t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return disp, stop
}

func (d *daemon) schedule(id string) {
	d.t.Helper()
	if _, err := d.store.Enqueue(job.Spec{ID: id, Project: "p", Spider: "s"}, time.Now()); err != nil {
		d.t.Fatal(err)
	}
	if d.disp != nil {
		d.disp.Wake() // as the scheduling service does
	}
}

func (d *daemon) job(id string) job.Job {
	d.t.Helper()
	j, err := d.store.Find(context.Background(), "p", id)
	if err != nil {
		d.t.Fatal(err)
	}
	return *j
}

// finished waits for the job to be recorded finished.
func (d *daemon) finished(id string) job.Job {
	d.t.Helper()
	eventually(d.t, id+" finished", func() bool { return d.job(id).State == job.Finished })
	return d.job(id)
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

func code(n int) launch.Exit { return launch.Exit{Code: &n, Known: true} }

func TestOutcome(t *testing.T) {
	launchtest.NoLeaks(t)
	d := newDaemon(t, "")
	m := launchtest.NewMachine()
	_, stop := d.run(m.Launcher(), nil)
	for _, c := range []struct {
		id      string
		exit    launch.Exit
		outcome job.Outcome
		code    int
	}{
		{"ok", code(0), job.OutcomeFinished, 0},
		{"bad", code(1), job.OutcomeFailed, 1},
		{"killed", launch.Exit{Signal: syscall.SIGKILL, Known: true}, job.OutcomeFailed, 137},
	} {
		d.schedule(c.id)
		eventually(t, c.id+" started", func() bool { return m.IsRunning(c.id) })
		if err := m.End(c.id, c.exit); err != nil {
			t.Fatal(err)
		}
		j := d.finished(c.id)
		if j.Outcome != c.outcome || j.ExitCode == nil || *j.ExitCode != c.code {
			t.Errorf("%s: outcome %s, exit code %v; want %s, %d", c.id, j.Outcome, j.ExitCode, c.outcome, c.code)
		}
	}
	stop()
}

func TestCancelEscalates(t *testing.T) {
	d := newDaemon(t, "")
	d.env = []string{"LAUNCHTEST=ignore-int"}
	m := launchtest.NewMachine()
	disp, _ := d.run(m.Launcher(), nil)
	d.schedule("c")
	eventually(t, "started", func() bool { return m.IsRunning("c") })
	for _, want := range []job.State{job.Running, job.Running} {
		if prev, err := disp.Cancel(t.Context(), "p", "c", syscall.SIGINT); err != nil || prev != want {
			t.Fatalf("Cancel = %s, %v; want %s", prev, err, want)
		}
	}
	if got := m.Signals("c"); !slices.Equal(got, []syscall.Signal{syscall.SIGINT, syscall.SIGKILL}) {
		t.Fatalf("signals %v, want INT then KILL", got)
	}
	if j := d.finished("c"); j.Outcome != job.OutcomeCancelled {
		t.Fatalf("outcome %s, want cancelled", j.Outcome)
	}
	// Cancelling a pending job removes it.
	d.cfg.MaxProc = 1
	m.StartHook = nil
	d.schedule("busy")
	eventually(t, "busy started", func() bool { return m.IsRunning("busy") })
	d.schedule("queued")
	if prev, err := disp.Cancel(t.Context(), "p", "queued", syscall.SIGINT); err != nil || prev != job.Pending {
		t.Fatalf("Cancel of a pending job = %s, %v", prev, err)
	}
	if _, err := d.store.Find(t.Context(), "p", "queued"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the cancelled pending job is still there: %v", err)
	}
}

// A claimed job whose start never began goes back to the queue and runs
// once.
func TestRequeue(t *testing.T) {
	d := newDaemon(t, "")
	d.schedule("r")
	if j, err := d.store.Claim(time.Now(), nil); err != nil || j == nil {
		t.Fatalf("claim: %v", err)
	}
	m := launchtest.NewMachine()
	d.run(m.Launcher(), nil)
	eventually(t, "the requeued job started", func() bool { return m.IsRunning("r") })
	if n := m.Starts("r"); n != 1 {
		t.Fatalf("started %d times", n)
	}
}

func TestFailedStart(t *testing.T) {
	d := newDaemon(t, "")
	m := launchtest.NewMachine()
	m.StartHook = func(context.Context, launch.Command) error { return errors.New("no such python") }
	d.run(m.Launcher(), nil)
	d.schedule("f")
	j := d.finished("f")
	if j.Outcome != job.OutcomeFailed || j.ExitCode != nil {
		t.Fatalf("outcome %s, exit code %v; want failed, none", j.Outcome, j.ExitCode)
	}
	log, _ := os.ReadFile(jobfiles.Of(d.cfg, "p", "s", "f").Log)
	if !strings.Contains(string(log), "crawl could not be started: no such python") {
		t.Fatalf("the job's log does not say why: %q", log)
	}
}

// A start that hangs (a launcher ignoring its context) blocks neither
// other starts nor cancels; after start_timeout it is abandoned, its job
// recorded failed, and its crawl stopped when it appears.
func TestHungStart(t *testing.T) {
	for _, planned := range []bool{false, true} {
		t.Run(fmt.Sprintf("planned=%v", planned), func(t *testing.T) {
			d := newDaemon(t, "start_timeout = 0.3")
			m := launchtest.NewMachine()
			m.Plan = planned
			release := make(chan struct{})
			hung := make(chan struct{})
			m.StartHook = func(_ context.Context, c launch.Command) error {
				if c.Job == "hang" {
					close(hung)
					<-release
				}
				return nil
			}
			disp, _ := d.run(m.Launcher(), nil)
			d.schedule("hang")
			<-hung
			// While it hangs: a cancel of it answers, and another job starts.
			if prev, err := disp.Cancel(t.Context(), "p", "hang", syscall.SIGINT); err != nil || prev != job.Running {
				t.Fatalf("Cancel while starting = %s, %v", prev, err)
			}
			d.schedule("other")
			eventually(t, "another job started", func() bool { return m.IsRunning("other") })
			j := d.finished("hang")
			if j.Outcome != job.OutcomeCancelled {
				t.Fatalf("outcome %s, want cancelled (it was cancelled while starting)", j.Outcome)
			}
			log, _ := os.ReadFile(jobfiles.Of(d.cfg, "p", "s", "hang").Log)
			if !strings.Contains(string(log), "did not start within start_timeout") {
				t.Fatalf("the job's log does not say why: %q", log)
			}
			close(release)
			eventually(t, "the late crawl was stopped", func() bool {
				return m.Starts("hang") == 1 && !m.IsRunning("hang")
			})
			if got := m.Signals("hang"); !slices.Contains(got, syscall.SIGKILL) {
				t.Fatalf("signals to the late crawl %v, want KILL", got)
			}
		})
	}
}

// A cancel that arrives while the start is under way is sent once it is done.
func TestCancelWhileStarting(t *testing.T) {
	d := newDaemon(t, "")
	m := launchtest.NewMachine()
	release := make(chan struct{})
	hung := make(chan struct{})
	m.StartHook = func(context.Context, launch.Command) error {
		close(hung)
		<-release
		return nil
	}
	disp, _ := d.run(m.Launcher(), nil)
	d.schedule("s")
	<-hung
	if _, err := disp.Cancel(t.Context(), "p", "s", syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	close(release)
	if j := d.finished("s"); j.Outcome != job.OutcomeCancelled {
		t.Fatalf("outcome %s", j.Outcome)
	}
	if got := m.Signals("s"); !slices.Equal(got, []syscall.Signal{syscall.SIGINT}) {
		t.Fatalf("signals %v, want INT", got)
	}
}

// At start, a crawl no job claims is stopped; one whose Recover fails is
// stopped and its job recorded, its slot held until it is gone.
func TestAdoptStopsWhatItCannotTrack(t *testing.T) {
	d := newDaemon(t, "")
	m := launchtest.NewMachine()
	m.Plan = true
	first := m.Launcher()
	_, stop := d.run(first, nil)
	d.schedule("lost")
	eventually(t, "started", func() bool { return m.IsRunning("lost") })
	stop()
	stray := m.Launcher()
	if _, _, err := stray.Start(t.Context(), launch.Command{Job: "stray", Path: "/bin/sh"}); err != nil {
		t.Fatal(err)
	}
	m.RecoverErr = func(h launch.Handle) error {
		if h.Job == "lost" {
			return errors.New("bus unreachable")
		}
		return nil
	}
	disp, _ := d.run(m.Launcher(), nil)
	eventually(t, "the stray crawl was stopped", func() bool { return !m.IsRunning("stray") })
	j := d.finished("lost")
	if j.Outcome != job.OutcomeFailed || m.IsRunning("lost") {
		t.Fatalf("outcome %s, running %v: want the crawl killed and the job failed", j.Outcome, m.IsRunning("lost"))
	}
	if got := m.Signals("lost"); !slices.Equal(got, []syscall.Signal{syscall.SIGKILL}) {
		t.Fatalf("signals %v, want KILL", got)
	}
	eventually(t, "the slot is free", func() bool { return disp.Running() == 0 })
}

// TestRestartAtEveryCrashPoint: a daemon dies at each point of a start;
// the next one never starts the job twice, never leaves a crawl untracked,
// and ends with the job recorded. Under the fake with planned handles (as
// systemd; the lab runs the real one) and under the exec launcher with real
// processes.
func TestRestartAtEveryCrashPoint(t *testing.T) {
	root := func(t *testing.T) string { return t.TempDir() }
	t.Run("planned", func(t *testing.T) {
		dispatchtest.Walk(t, root, func(t *testing.T, _ *config.Config) dispatchtest.Rig {
			m := launchtest.NewMachine()
			m.Plan = true
			return dispatchtest.Rig{
				NewLauncher: func() launch.Launcher { return m.Launcher() },
				Starts:      func() int { return m.Starts(dispatchtest.Job) },
				Running:     func() bool { return m.IsRunning(dispatchtest.Job) },
			}
		})
	})
	t.Run("exec", func(t *testing.T) {
		dispatchtest.Walk(t, root, func(t *testing.T, cfg *config.Config) dispatchtest.Rig {
			dir := t.TempDir()
			cfg.Python = filepath.Join(dir, "crawl")
			os.WriteFile(cfg.Python, []byte(standIn), 0o755)
			owner := filepath.Join(dir, "owner")
			var ls []*process.Launcher
			t.Cleanup(func() {
				for _, l := range ls {
					l.Close()
				}
			})
			newLauncher := func() launch.Launcher {
				l := process.New()
				l.Owner = owner
				ls = append(ls, l)
				return l
			}
			return dispatchtest.Rig{
				NewLauncher: newLauncher,
				Env:         []string{"STARTS=" + filepath.Join(dir, "starts"), "PATH=/usr/bin:/bin"},
				Starts: func() int {
					b, _ := os.ReadFile(filepath.Join(dir, "starts"))
					return strings.Count(string(b), "started")
				},
				Running: func() bool {
					hs, _ := newLauncher().Running(context.Background())
					return len(hs) > 0
				},
			}
		})
	})
}

// standIn is the crawl's interpreter in the restart test: it counts its
// starts and runs until SIGINT.
const standIn = "#!/bin/sh\necho started >> \"$STARTS\"\ntrap 'exit 0' INT\nwhile :; do sleep 0.05; done\n"

// startedFails is a store whose Started always fails (a full disk).
type startedFails struct{ *store.Store }

func (startedFails) Started(int64, string, int) error { return errors.New("disk full") }

// A crawl whose handle cannot be stored is stopped unless its planned
// handle already points at it: nothing runs that no record tracks.
func TestStartedFailure(t *testing.T) {
	for _, planned := range []bool{false, true} {
		t.Run(fmt.Sprintf("planned=%v", planned), func(t *testing.T) {
			d := newDaemon(t, "")
			d.jobs = startedFails{d.store}
			m := launchtest.NewMachine()
			m.Plan = planned
			disp, _ := d.run(m.Launcher(), nil)
			d.schedule("h")
			if !planned {
				j := d.finished("h")
				if j.Outcome != job.OutcomeFailed || m.IsRunning("h") {
					t.Fatalf("outcome %s, crawl running %v: want failed, stopped", j.Outcome, m.IsRunning("h"))
				}
				if got := m.Signals("h"); !slices.Equal(got, []syscall.Signal{syscall.SIGKILL}) {
					t.Fatalf("signals %v, want KILL", got)
				}
				eventually(t, "the slot is free", func() bool { return disp.Running() == 0 })
				return
			}
			eventually(t, "started", func() bool { return m.IsRunning("h") })
			if j := d.job("h"); j.State != job.Running || j.Handle != "fake:h" {
				t.Fatalf("job %s with handle %q: want running with its planned handle", j.State, j.Handle)
			}
			m.End("h", code(0))
			if j := d.finished("h"); j.Outcome != job.OutcomeFinished {
				t.Fatalf("outcome %s", j.Outcome)
			}
		})
	}
}

// endFails is a store whose End fails while full is set (a full disk),
// counting the refusals.
type endFails struct {
	*store.Store
	full    *atomic.Bool
	refused *atomic.Int32
}

func (s endFails) End(seq int64, at time.Time, code *int, o job.Outcome, stats string, keep int) error {
	if s.full.Load() {
		s.refused.Add(1)
		return errors.New("database or disk is full")
	}
	return s.Store.End(seq, at, code, o, stats, keep)
}

// A crawl's end that the store refuses keeps its slot and is recorded once
// the store takes writes again: the job never stays "running" in the store
// while another takes its slot, and never loses its outcome.
func TestEndRecordedAfterStoreRefused(t *testing.T) {
	d := newDaemon(t, "")
	d.cfg.MaxProc = 1 // a copy of the loaded snapshot, before any reader has it
	var full atomic.Bool
	var refused atomic.Int32
	d.jobs = endFails{d.store, &full, &refused}
	m := launchtest.NewMachine()
	disp, _ := d.run(m.Launcher(), nil)
	d.schedule("a")
	eventually(t, "a started", func() bool { return m.IsRunning("a") })
	d.schedule("b")
	full.Store(true)
	m.End("a", code(0))
	eventually(t, "a's end refused twice (tried again)", func() bool { return refused.Load() >= 2 })
	if m.IsRunning("b") || disp.Running() != 1 || d.job("a").State != job.Running {
		t.Fatalf("while the store refuses a's end: b running %v, slots held %d, a %s; want b waiting, 1, running",
			m.IsRunning("b"), disp.Running(), d.job("a").State)
	}
	full.Store(false)
	if j := d.finished("a"); j.Outcome != job.OutcomeFinished || j.ExitCode == nil || *j.ExitCode != 0 {
		t.Fatalf("a after the store took writes again: %s exit %v", j.Outcome, j.ExitCode)
	}
	eventually(t, "b started in the freed slot", func() bool { return m.IsRunning("b") })
}
