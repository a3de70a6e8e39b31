package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
)

// A lead that stops and releases the lock lets another node take it at
// once.
func TestLeadReleased(t *testing.T) {
	t.Parallel()
	ns := nodes(t, 2)
	ctx := context.Background()
	lead, release, ok, err := ns[0].Lead(ctx, pgstore.SchedulerLock)
	if err != nil || !ok {
		t.Fatalf("node 1 leads: %v %v", ok, err)
	}
	if _, _, ok, err := ns[1].Lead(ctx, pgstore.SchedulerLock); err != nil || ok {
		t.Fatalf("node 2 leads too: %v %v", ok, err)
	}
	release()
	if lead.Err() == nil {
		t.Fatal("node 1's lead goes on after its release")
	}
	_, release2, ok, err := ns[1].Lead(ctx, pgstore.SchedulerLock)
	if err != nil || !ok {
		t.Fatalf("node 2 after node 1 released the lock: %v %v", ok, err)
	}
	release2()
}

// A schedule's run for a due time and attempt is made once, whichever
// node queues it, even after the first one finished: a lead that stopped
// before recording the schedule's next time leaves it due for the next.
func TestScheduleRunOncePerDue(t *testing.T) {
	t.Parallel()
	ns := nodes(t, 2)
	due := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	run := func(n int, id string, due time.Time, attempt int) error {
		_, err := ns[n].Enqueue(job.Spec{ID: id, Project: "p", Spider: "s", Schedule: "sc", Due: due, Attempt: attempt}, time.Time{})
		return err
	}
	if err := run(0, "a", due, 0); err != nil {
		t.Fatal(err)
	}
	j, err := ns[0].Claim(time.Time{}, nil)
	if err != nil || j == nil {
		t.Fatalf("claim = %v, %v", j, err)
	}
	if err := ns[0].End(j.Seq, time.Time{}, nil, job.OutcomeFailed, "", 100); err != nil {
		t.Fatal(err)
	}
	if err := run(1, "b", due, 0); !errors.Is(err, job.ErrRunMade) {
		t.Fatalf("a second run for the same due time: err = %v, want job.ErrRunMade", err)
	}
	// Its retry, the next due time, and a run without a due time are new.
	for i, err := range []error{run(1, "c", due, 1), run(1, "d", due.Add(time.Minute), 0), run(1, "e", time.Time{}, 0)} {
		if err != nil {
			t.Errorf("run %d: %v", i, err)
		}
	}
	// The events carry the run's schedule and attempt: the lead follows
	// the ends of runs on every node.
	es, err := ns[1].Events(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, fmt.Sprintf("%s %s %q %d", e.Job.ID, e.Type, e.Job.Schedule, e.Job.Attempt))
	}
	want := []string{`a scheduled "sc" 0`, `a finished "sc" 0`, `c scheduled "sc" 1`, `d scheduled "sc" 0`, `e scheduled "sc" 0`}
	if !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// Each job event records the node that wrote it: the metrics of each node
// count its own.
func TestEventsRecordTheirNode(t *testing.T) {
	t.Parallel()
	ns := nodes(t, 2)
	ctx := context.Background()
	if _, err := ns[0].Enqueue(job.Spec{ID: "a", Project: "p", Spider: "s"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	j, err := ns[1].Claim(time.Time{}, nil)
	if err != nil || j == nil {
		t.Fatalf("claim = %v, %v", j, err)
	}
	if err := ns[1].Started(j.Seq, "h", 1); err != nil {
		t.Fatal(err)
	}
	if err := ns[1].End(j.Seq, time.Time{}, nil, job.OutcomeFinished, "", 100); err != nil {
		t.Fatal(err)
	}
	if _, err := ns[1].Enqueue(job.Spec{ID: "b", Project: "p", Spider: "s"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ns[0].CancelPending("p", "b"); err != nil {
		t.Fatal(err)
	}
	es, err := ns[0].Events(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Job.ID+" "+string(e.Type)+" "+e.Node)
	}
	want := []string{"a scheduled node1", "a started node2", "a finished node2", "b scheduled node2", "b finished node1"}
	if !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

// A lead cut off from the database (a fault proxy black-holes its
// connections: the server's side of them stays open and quiet) stops
// before the server releases its lock, and then another node takes it:
// never two leads at once.
func TestLeadPartitioned(t *testing.T) {
	t.Parallel()
	direct := pgtest.DB(t)
	proxy, via := proxied(t, direct)
	cut := opened(t, via, "node1", pgstore.Options{})
	other := opened(t, direct, "node2", pgstore.Options{})
	ctx := context.Background()
	lead, release, ok, err := cut.Lead(ctx, pgstore.SchedulerLock)
	if err != nil || !ok {
		t.Fatalf("node 1 leads: %v %v", ok, err)
	}
	t.Cleanup(func() { proxy.Heal(); release() })
	proxy.BlackHole()
	stopped := make(chan time.Time, 1)
	go func() { <-lead.Done(); stopped <- time.Now() }()
	deadline := time.Now().Add(time.Minute)
	for {
		_, release2, ok, err := other.Lead(ctx, pgstore.SchedulerLock)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			took := time.Now()
			release2()
			select {
			case at := <-stopped:
				t.Logf("node 1 stopped %v before node 2 took the lead", took.Sub(at))
			default:
				t.Fatal("node 2 took the lead while node 1 still led")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("node 2 never took the lead of the cut-off node 1")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A node that does not lead keeps one connection between its tries (the
// session that last asked for the lock stays), and takes the lock on it
// once the lead releases it.
func TestCandidateKeepsItsConnection(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	n1, n2 := opened(t, url, "node1", pgstore.Options{}), opened(t, url, "node2", pgstore.Options{})
	ctx := context.Background()
	_, release, ok, err := n1.Lead(ctx, pgstore.SchedulerLock)
	if err != nil || !ok {
		t.Fatalf("node 1 leads: %v %v", ok, err)
	}
	c := n2.Candidate(pgstore.SchedulerLock)
	defer c.Close()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var pids []int
	for range 3 {
		if _, _, ok, err := c.Try(ctx); err != nil || ok {
			t.Fatalf("node 2 leads too: %v %v", ok, err)
		}
		var pid int
		if err := admin.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_try_advisory_lock%'`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if pids[0] != pids[1] || pids[1] != pids[2] {
		t.Fatalf("node 2 tried from sessions %v, want one kept session", pids)
	}
	release()
	_, release2, ok, err := c.Try(ctx)
	if err != nil || !ok {
		t.Fatalf("node 2 after node 1 released the lock: %v %v", ok, err)
	}
	release2()
}
