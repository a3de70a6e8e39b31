package dispatch_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/launchtest"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/store/memstore"
)

// lostAnswers is an in-memory job store whose claim of job lose is made
// and then answered as a shared database answers when it goes away after
// the COMMIT: unavailable, in doubt. The lost answer also closes mayClaim,
// so that the test sees what the dispatcher does about it before any
// other claim. Launching waits for hold, if set, to let a job's start go.
type lostAnswers struct {
	*memstore.Store
	lose     string
	lost     atomic.Bool
	mayClaim atomic.Bool
	hold     func(seq int64)
}

func (s *lostAnswers) Claim(now time.Time, caps store.Caps) (*job.Job, error) {
	j, err := s.Store.Claim(now, caps)
	if err != nil || j == nil || j.ID != s.lose || s.lost.Load() {
		return j, err
	}
	s.mayClaim.Store(false)
	s.lost.Store(true)
	return nil, fmt.Errorf("claim: %w: %w: read tcp: connection reset by peer", store.ErrUnavailable, store.ErrInDoubt)
}

func (s *lostAnswers) Launching(seq int64, handle string) error {
	if s.hold != nil {
		s.hold(seq)
	}
	return s.Store.Launching(seq, handle)
}

// runLost runs a dispatcher of cfg on st, mayClaim open, and schedules ids
// first (they are claimed at once).
func runLost(t *testing.T, cfg *config.Config, st *lostAnswers, m *launchtest.Machine, ids ...string) *dispatch.Dispatcher {
	t.Helper()
	for _, id := range ids {
		if _, err := st.Enqueue(job.Spec{ID: id, Project: "p", Spider: "s"}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	st.mayClaim.Store(true)
	disp := dispatch.New(dispatch.Options{
		Config: func() *config.Config { return cfg }, Store: st, Eggs: &egg.Store{Dir: cfg.EggsDir},
		Launcher: m.Launcher(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), MayClaim: st.mayClaim.Load,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- disp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return disp
}

func (s *lostAnswers) state(t *testing.T, id string) job.Job {
	t.Helper()
	j, err := s.Find(context.Background(), "p", id)
	if err != nil {
		t.Fatal(err)
	}
	return *j
}

func pendingIDs(t *testing.T, s *lostAnswers) []string {
	t.Helper()
	list, err := s.List(context.Background(), job.Pending, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range list {
		ids = append(ids, j.ID)
	}
	return ids
}

// A claim whose COMMIT was made but whose answer was lost leaves the job
// running on this node with no crawl; at its next look at the queue the
// dispatcher puts it back in its place, and it then runs once.
func TestLostClaimAnswerRequeued(t *testing.T) {
	d := newDaemon(t, "")
	d.cfg.MaxProc = 1
	st := &lostAnswers{Store: memstore.New(), lose: "a"}
	m := launchtest.NewMachine()
	disp := runLost(t, d.cfg, st, m, "a", "b")
	eventually(t, "a's claim made, its answer lost", st.lost.Load)
	if j := st.state(t, "a"); j.State != job.Running || j.Handle != "" {
		t.Fatalf("after the lost answer a is %s with handle %q; want running with none", j.State, j.Handle)
	}
	eventually(t, "a queued again", func() bool {
		disp.Wake()
		return st.state(t, "a").State == job.Pending
	})
	if got := pendingIDs(t, st); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("pending %v; want a back in its place before b", got)
	}
	st.mayClaim.Store(true)
	disp.Wake()
	eventually(t, "a started", func() bool { return m.IsRunning("a") })
	if m.IsRunning("b") {
		t.Fatal("b runs in a's slot")
	}
	m.End("a", code(0))
	eventually(t, "b started", func() bool { return m.IsRunning("b") })
	if n := m.Starts("a"); n != 1 {
		t.Fatalf("a started %d times, want once", n)
	}
}

// A job being started (claimed, its handle not yet stored) is not queued
// again by the same look: only the job whose claim's answer was lost is.
func TestLostClaimSparesTheJobBeingStarted(t *testing.T) {
	d := newDaemon(t, "")
	d.cfg.MaxProc = 2
	st := &lostAnswers{Store: memstore.New(), lose: "y"}
	release := make(chan struct{})
	var held atomic.Bool
	st.hold = func(seq int64) {
		if j, err := st.Find(context.Background(), "p", "x"); err == nil && j.Seq == seq {
			held.Store(true)
			<-release
		}
	}
	m := launchtest.NewMachine()
	disp := runLost(t, d.cfg, st, m, "x", "y")
	eventually(t, "x's start under way, y's claim answer lost", func() bool { return held.Load() && st.lost.Load() })
	eventually(t, "y queued again", func() bool {
		disp.Wake()
		return st.state(t, "y").State == job.Pending
	})
	if j := st.state(t, "x"); j.State != job.Running {
		t.Fatalf("x, being started, is %s: the look queued it again", j.State)
	}
	close(release)
	st.mayClaim.Store(true)
	disp.Wake()
	eventually(t, "x and y started", func() bool { return m.IsRunning("x") && m.IsRunning("y") })
	if nx, ny := m.Starts("x"), m.Starts("y"); nx != 1 || ny != 1 {
		t.Fatalf("x started %d times, y %d; want once each", nx, ny)
	}
}
