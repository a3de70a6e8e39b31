package dispatch_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/launchtest"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// remote is the cluster's cancel requests in memory: what other nodes
// asked of this one (reqs), and what this node asked of the others.
type remote struct {
	mu        sync.Mutex
	reqs      map[int64]store.CancelRequest
	delivered map[int64]int
	asked     []string // project/id and skipped seqs of each RequestCancel
	others    int      // how many running jobs of that id other nodes run
}

func (r *remote) RequestCancel(project, id string, sig syscall.Signal, skip []int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, project+"/"+id+" "+sig.String()+" skip "+string(rune('0'+len(skip))))
	return r.others, nil
}

func (r *remote) CancelRequests(context.Context) ([]store.CancelRequest, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []store.CancelRequest
	for seq, c := range r.reqs {
		if c.Requests > r.delivered[seq] {
			out = append(out, c)
		}
	}
	return out, nil
}

func (r *remote) CancelDelivered(seq int64, requests int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered[seq] = max(r.delivered[seq], requests)
	return nil
}

func (r *remote) ask(seq int64, sig syscall.Signal, requests int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs[seq] = store.CancelRequest{Seq: seq, Signal: sig, Requests: requests}
}

// runRemote runs a dispatcher over d's store with rm as its cluster.
func (d *daemon) runRemote(l launch.Launcher, rm *remote) *dispatch.Dispatcher {
	d.t.Helper()
	disp := dispatch.New(dispatch.Options{
		Config: func() *config.Config { return d.cfg }, Store: d.store, Eggs: &egg.Store{Dir: d.cfg.EggsDir},
		Launcher: l, Log: slog.New(slog.DiscardHandler), Env: d.env, Remote: rm,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- disp.Run(ctx) }()
	d.t.Cleanup(func() { cancel(); <-done })
	return disp
}

// Cancels other nodes asked for reach this node's crawls once each, even
// when several deliveries run at once; a crawl still starting gets its
// signal when its start is done; a request for a job this node does not
// hold stays for a later look.
func TestDeliverCancels(t *testing.T) {
	d := newDaemon(t, "")
	d.env = []string{"LAUNCHTEST=ignore-int"}
	m := launchtest.NewMachine()
	release := make(chan struct{})
	m.StartHook = func(_ context.Context, c launch.Command) error {
		if slices.Contains(c.Args, "_job=late") {
			<-release
		}
		return nil
	}
	rm := &remote{reqs: map[int64]store.CancelRequest{}, delivered: map[int64]int{}}
	disp := d.runRemote(m.Launcher(), rm)
	d.schedule("a")
	eventually(t, "a started", func() bool { return m.IsRunning("a") })
	a := d.job("a")

	rm.ask(a.Seq, syscall.SIGINT, 1)
	rm.ask(a.Seq+1000, syscall.SIGINT, 1) // no slot here
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() { defer wg.Done(); disp.DeliverCancels(t.Context()) }()
	}
	wg.Wait()
	// a may still be finishing its start (the machine runs it, the
	// dispatcher has not recorded it): its signal then waits for that.
	// The later exact lists show it was sent once.
	eventually(t, "one SIGINT after five deliveries of one request", func() bool {
		return slices.Equal(m.Signals("a"), []syscall.Signal{syscall.SIGINT})
	})
	if reqs, _ := rm.CancelRequests(t.Context()); len(reqs) != 1 || reqs[0].Seq != a.Seq+1000 {
		t.Fatalf("left undelivered: %+v", reqs)
	}
	rm.ask(a.Seq, syscall.SIGKILL, 2)
	disp.DeliverCancels(t.Context())
	if got := m.Signals("a"); !slices.Equal(got, []syscall.Signal{syscall.SIGINT, syscall.SIGKILL}) {
		t.Fatalf("signals after the second request: %v", got)
	}

	d.schedule("late")
	eventually(t, "late claimed", func() bool { return d.job("late").State == job.Running })
	rm.ask(d.job("late").Seq, syscall.SIGTERM, 1)
	disp.DeliverCancels(t.Context())
	if m.IsRunning("late") || len(m.Signals("late")) != 0 {
		t.Fatalf("late started (%v) or was signalled (%v) before its start was done", m.IsRunning("late"), m.Signals("late"))
	}
	close(release)
	eventually(t, "late signalled once started", func() bool {
		return slices.Equal(m.Signals("late"), []syscall.Signal{syscall.SIGTERM})
	})
}

// A cancel of a job this node does not run asks the other nodes, skipping
// the node's own crawls of that id, and answers running when one runs it.
func TestCancelAsksOtherNodes(t *testing.T) {
	d := newDaemon(t, "")
	m := launchtest.NewMachine()
	rm := &remote{reqs: map[int64]store.CancelRequest{}, delivered: map[int64]int{}}
	disp := d.runRemote(m.Launcher(), rm)
	if prev, err := disp.Cancel(t.Context(), "p", "elsewhere", syscall.SIGINT); err != nil || prev != "" {
		t.Fatalf("cancel of a job no node runs: %q %v", prev, err)
	}
	rm.others = 1
	if prev, err := disp.Cancel(t.Context(), "p", "elsewhere", syscall.SIGINT); err != nil || prev != job.Running {
		t.Fatalf("cancel of a job another node runs: %q %v", prev, err)
	}
	rm.others = 0
	d.schedule("mine")
	eventually(t, "mine started", func() bool { return m.IsRunning("mine") })
	if prev, err := disp.Cancel(t.Context(), "p", "mine", syscall.SIGINT); err != nil || prev != job.Running {
		t.Fatalf("cancel of this node's job: %q %v", prev, err)
	}
	if want := []string{"p/elsewhere interrupt skip 0", "p/elsewhere interrupt skip 0", "p/mine interrupt skip 1"}; !slices.Equal(rm.asked, want) {
		t.Fatalf("asked %q, want %q", rm.asked, want)
	}
}
