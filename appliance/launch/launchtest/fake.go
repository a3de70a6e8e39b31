package launchtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/scrapyd-debian/scrapyd/appliance/launch"
)

// Machine is what fake launchers share: the crawls that "run" on one
// machine. Several Fakes of one Machine are daemons restarted on it.
type Machine struct {
	mu     sync.Mutex
	crawls map[string]*fakeCrawl // by handle ID
	next   int

	// StartHook, if set, runs at the start of every Start: it may block
	// (a hung start job) or fail it. Set it before the first Start.
	StartHook func(ctx context.Context, c launch.Command) error
	// RecoverErr, if set, is what Recover returns for a running crawl (a
	// launcher that cannot reach its service manager).
	RecoverErr func(h launch.Handle) error
	// Plan makes the Fakes know handles in advance, as the systemd launcher
	// does (Planned); otherwise they behave like the exec launcher.
	Plan bool
}

type fakeCrawl struct {
	h       launch.Handle
	cmd     launch.Command
	ignore  bool // SIGINT is ignored
	onInt   int  // exit code on SIGINT
	ended   bool
	exit    launch.Exit
	signals []syscall.Signal
	watches []*fakeWatch
}

// NewMachine returns an empty machine.
func NewMachine() *Machine { return &Machine{crawls: map[string]*fakeCrawl{}} }

// Launcher returns a new fake launcher on the machine (a daemon's start).
func (m *Machine) Launcher() *Fake { return &Fake{m: m, mine: map[string]bool{}} }

// Fake is a launcher whose crawls are not processes: each behaves as the
// LAUNCHTEST variable of its environment says (see Behaviour). Tests end
// them with End and read what they were sent with Signals.
type Fake struct {
	m    *Machine
	mu   sync.Mutex
	mine map[string]bool
}

var _ launch.Launcher = (*Fake)(nil)

// Name implements launch.Launcher.
func (f *Fake) Name() string { return "fake" }

// Planned implements launch.Launcher.
func (f *Fake) Planned(job string) (launch.Handle, bool) {
	if !f.m.Plan {
		return launch.Handle{}, false
	}
	return launch.Handle{ID: "fake:" + job, Job: job}, true
}

// Start implements launch.Launcher.
func (f *Fake) Start(ctx context.Context, c launch.Command) (launch.Handle, launch.Watch, error) {
	if err := ctx.Err(); err != nil {
		return launch.Handle{}, nil, fmt.Errorf("fake start %s: %w", c.Job, err)
	}
	if f.m.StartHook != nil {
		// It may block past the context's end: the crawl then appears late.
		if err := f.m.StartHook(ctx, c); err != nil {
			return launch.Handle{}, nil, err
		}
	}
	if _, err := os.Stat(c.Path); err != nil {
		return launch.Handle{}, nil, fmt.Errorf("fake start %s: %w", c.Job, err)
	}
	m := f.m
	m.mu.Lock()
	m.next++
	h := launch.Handle{ID: "fake:" + c.Job, PID: 100000 + m.next, Job: c.Job}
	if !m.Plan {
		h.ID = fmt.Sprintf("fake-pid:%d", h.PID)
	}
	if old, ok := m.crawls[h.ID]; ok && !old.ended {
		m.mu.Unlock()
		return launch.Handle{}, nil, fmt.Errorf("fake start %s: a crawl with this job id is running", c.Job)
	}
	cr := &fakeCrawl{h: h, cmd: c}
	w := &fakeWatch{done: make(chan struct{})}
	cr.watches = append(cr.watches, w)
	m.crawls[h.ID] = cr
	b := behaviour(c.Env)
	var exitNow *launch.Exit
	switch {
	case strings.HasPrefix(b, "exit:"):
		n, _ := strconv.Atoi(strings.TrimPrefix(b, "exit:"))
		exitNow = &launch.Exit{Code: &n, Known: true}
	case strings.HasPrefix(b, "int:"):
		cr.onInt, _ = strconv.Atoi(strings.TrimPrefix(b, "int:"))
	case b == "ignore-int":
		cr.ignore = true
	}
	m.mu.Unlock()
	f.mu.Lock()
	f.mine[h.ID] = true
	f.mu.Unlock()
	if r := envOf(c.Env, "READY"); r != "" {
		os.WriteFile(r, nil, 0o644)
	}
	if exitNow != nil {
		m.end(h.ID, *exitNow)
	}
	return h, w, nil
}

// Recover implements launch.Launcher.
func (f *Fake) Recover(ctx context.Context, h launch.Handle) (launch.Watch, launch.Exit, error) {
	m := f.m
	m.mu.Lock()
	defer m.mu.Unlock()
	cr, ok := m.crawls[h.ID]
	if !ok {
		return nil, launch.Exit{}, launch.ErrGone
	}
	if cr.ended {
		return nil, cr.exit, launch.ErrGone
	}
	if m.RecoverErr != nil {
		if err := m.RecoverErr(h); err != nil {
			return nil, launch.Exit{}, err
		}
	}
	w := &fakeWatch{done: make(chan struct{})}
	cr.watches = append(cr.watches, w)
	return w, launch.Exit{}, nil
}

// Signal implements launch.Launcher.
func (f *Fake) Signal(ctx context.Context, h launch.Handle, sig syscall.Signal) error {
	m := f.m
	m.mu.Lock()
	cr, ok := m.crawls[h.ID]
	if !ok || cr.ended {
		m.mu.Unlock()
		return launch.ErrGone
	}
	cr.signals = append(cr.signals, sig)
	ignore, code := cr.ignore, cr.onInt
	m.mu.Unlock()
	switch {
	case sig == syscall.SIGKILL:
		m.end(h.ID, launch.Exit{Signal: sig, Known: true})
	case sig == syscall.SIGINT && !ignore:
		m.end(h.ID, launch.Exit{Code: &code, Known: true})
	}
	return nil
}

// Running implements launch.Launcher.
func (f *Fake) Running(ctx context.Context) ([]launch.Handle, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []launch.Handle
	for id, cr := range f.m.crawls {
		if !cr.ended && !f.mine[id] {
			out = append(out, cr.h)
		}
	}
	return out, nil
}

// End ends a running crawl with exit, as if its process exited.
func (m *Machine) End(job string, exit launch.Exit) error {
	m.mu.Lock()
	var id string
	for k, cr := range m.crawls {
		if cr.h.Job == job && !cr.ended {
			id = k
		}
	}
	m.mu.Unlock()
	if id == "" {
		return errors.New("fake: no running crawl of job " + job)
	}
	m.end(id, exit)
	return nil
}

// Handles returns the handles of the crawls of job, started in order.
func (m *Machine) Handles(job string) []launch.Handle {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []launch.Handle
	for _, cr := range m.crawls {
		if cr.h.Job == job {
			out = append(out, cr.h)
		}
	}
	return out
}

// IsRunning says whether a crawl of job runs.
func (m *Machine) IsRunning(job string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, cr := range m.crawls {
		if cr.h.Job == job && !cr.ended {
			return true
		}
	}
	return false
}

// Signals returns the signals sent to the crawls of job, in order.
func (m *Machine) Signals(job string) []syscall.Signal {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []syscall.Signal
	for _, cr := range m.crawls {
		if cr.h.Job == job {
			out = append(out, cr.signals...)
		}
	}
	return out
}

// Starts counts the crawls of job ever started.
func (m *Machine) Starts(job string) int { return len(m.Handles(job)) }

func (m *Machine) end(id string, exit launch.Exit) {
	m.mu.Lock()
	cr := m.crawls[id]
	if cr == nil || cr.ended {
		m.mu.Unlock()
		return
	}
	cr.ended, cr.exit = true, exit
	ws := cr.watches
	cr.watches = nil
	m.mu.Unlock()
	for _, w := range ws {
		w.exit = exit
		close(w.done)
	}
}

type fakeWatch struct {
	done chan struct{}
	exit launch.Exit
}

func (w *fakeWatch) Done() <-chan struct{} { return w.done }
func (w *fakeWatch) Exit() launch.Exit     { return w.exit }

func behaviour(env []string) string { return envOf(env, "LAUNCHTEST") }

func envOf(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}
