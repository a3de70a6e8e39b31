package dispatch_test

import (
	"context"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/launchtest"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// fencedStore refuses a cluster node's crawl ends (while end is set) and
// starts (while start is set) as fenced: the cluster declared the node
// dead. It counts the refused ends.
type fencedStore struct {
	*store.Store
	end, start *atomic.Bool
	ended      *atomic.Int32
}

func (s fencedStore) End(seq int64, at time.Time, code *int, o job.Outcome, stats string, keep int) error {
	if s.end.Load() {
		s.ended.Add(1)
		return store.ErrFenced
	}
	return s.Store.End(seq, at, code, o, stats, keep)
}

func (s fencedStore) Started(seq int64, handle string, pid int) error {
	if s.start.Load() {
		return store.ErrFenced
	}
	return s.Store.Started(seq, handle, pid)
}

// A fenced end is dropped, not tried again: the cluster decided the
// job's fate, and the crawl's slot is free at once.
func TestFencedEndDropped(t *testing.T) {
	d := newDaemon(t, "")
	d.cfg.MaxProc = 1
	var on, off atomic.Bool
	var ended atomic.Int32
	d.jobs = fencedStore{d.store, &on, &off, &ended}
	m := launchtest.NewMachine()
	d.run(m.Launcher(), nil)
	d.schedule("a")
	eventually(t, "a started", func() bool { return m.IsRunning("a") })
	d.schedule("b")
	on.Store(true)
	m.End("a", code(0))
	eventually(t, "b started in a's slot", func() bool { return m.IsRunning("b") })
	if n := ended.Load(); n != 1 {
		t.Fatalf("a's fenced end was tried %d times, want once", n)
	}
	if j := d.job("a"); j.State != job.Running {
		t.Fatalf("a is %s: the fenced end was written", j.State)
	}
}

// A crawl whose start a fenced node cannot record is stopped even with its
// planned handle stored: the job may be another node's by now.
func TestFencedStartStopsThePlannedCrawl(t *testing.T) {
	d := newDaemon(t, "")
	var off, on atomic.Bool
	var ended atomic.Int32
	d.jobs = fencedStore{d.store, &off, &on, &ended}
	on.Store(true)
	m := launchtest.NewMachine()
	m.Plan = true
	disp, _ := d.run(m.Launcher(), nil)
	d.schedule("h")
	eventually(t, "the slot is free", func() bool { return m.Starts("h") == 1 && disp.Running() == 0 })
	if m.IsRunning("h") || !slices.Equal(m.Signals("h"), []syscall.Signal{syscall.SIGKILL}) {
		t.Fatalf("crawl running %v, signals %v: want stopped with KILL", m.IsRunning("h"), m.Signals("h"))
	}
}

// A node that may not claim (its lease is not renewed) starts nothing;
// StopAll kills its crawls, whose ends are recorded lost; claiming again,
// it starts what waits.
func TestStopAllAndMayClaim(t *testing.T) {
	d := newDaemon(t, "")
	var may atomic.Bool
	may.Store(true)
	d.mayClaim = may.Load
	m := launchtest.NewMachine()
	disp, _ := d.run(m.Launcher(), nil)
	d.schedule("a")
	d.schedule("b")
	eventually(t, "a and b started", func() bool { return m.IsRunning("a") && m.IsRunning("b") })
	may.Store(false)
	d.schedule("c")
	disp.StopAll(context.Background(), "lease not renewed")
	for _, id := range []string{"a", "b"} {
		if j := d.finished(id); j.Outcome != job.OutcomeLost {
			t.Fatalf("%s ended %s, want lost", id, j.Outcome)
		}
		if got := m.Signals(id); !slices.Equal(got, []syscall.Signal{syscall.SIGKILL}) {
			t.Fatalf("%s got %v, want KILL", id, got)
		}
	}
	disp.Wake()
	time.Sleep(100 * time.Millisecond) // a claim would be under way
	if m.Starts("c") != 0 || d.job("c").State != job.Pending {
		t.Fatal("c started while the node may not claim")
	}
	may.Store(true)
	disp.Wake()
	eventually(t, "c started", func() bool { return m.IsRunning("c") })
}

// startedHangs is a store whose Started waits until release is closed (a
// database cut off).
type startedHangs struct {
	*store.Store
	release chan struct{}
}

func (s startedHangs) Started(seq int64, handle string, pid int) error {
	<-s.release
	return s.Store.Started(seq, handle, pid)
}

// StopAll kills a crawl whose start is done but whose handle the store has
// not taken yet: a node cut off from the database stops it all the same.
func TestStopAllWhileStartIsRecorded(t *testing.T) {
	d := newDaemon(t, "")
	release := make(chan struct{})
	d.jobs = startedHangs{d.store, release}
	m := launchtest.NewMachine()
	disp, _ := d.run(m.Launcher(), nil)
	d.schedule("a")
	eventually(t, "a started", func() bool { return m.IsRunning("a") })
	disp.StopAll(context.Background(), "lease not renewed")
	eventually(t, "a killed while its start is recorded", func() bool { return !m.IsRunning("a") })
	close(release)
	if j := d.finished("a"); j.Outcome != job.OutcomeLost {
		t.Fatalf("a ended %s, want lost", j.Outcome)
	}
}
