package pgstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
)

// opened opens a store on url as node name, not registered.
func opened(t *testing.T, url, name string, o pgstore.Options) *pgstore.Store {
	t.Helper()
	o.Node, o.ServerClock = name, true
	s, err := pgstore.Open(context.Background(), url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// member is a registered node.
func member(t *testing.T, url, name string, o pgstore.Options) *pgstore.Store {
	t.Helper()
	s := opened(t, url, name, o)
	if err := s.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// reapUntil has reaper renew its lease and reap until it reaps something
// (a dead node's lease must run out first).
func reapUntil(t *testing.T, reaper *pgstore.Store) []pgstore.Reaped {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if err := reaper.Renew(ctx, 1); err != nil {
			t.Fatal(err)
		}
		rs, err := reaper.Reap(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) > 0 {
			return rs
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("nothing reaped within 20 s")
	return nil
}

func enqueue(t *testing.T, s *pgstore.Store, id string, prio float64) {
	t.Helper()
	if _, err := s.Enqueue(job.Spec{ID: id, Project: "p", Spider: "s", Priority: prio}, time.Time{}); err != nil {
		t.Fatal(err)
	}
}

func claim(t *testing.T, s *pgstore.Store, started bool) *job.Job {
	t.Helper()
	j, err := s.Claim(time.Time{}, nil)
	if err != nil || j == nil {
		t.Fatalf("claim: %v %v", j, err)
	}
	if started {
		if err := s.Started(j.Seq, "h-"+j.ID, 0); err != nil {
			t.Fatal(err)
		}
	}
	return j
}

func find(t *testing.T, s *pgstore.Store, id string) *job.Job {
	t.Helper()
	j, err := s.Find(context.Background(), "p", id)
	if err != nil {
		t.Fatalf("find %s: %v", id, err)
	}
	return j
}

func pendingIDs(t *testing.T, s *pgstore.Store) string {
	t.Helper()
	list, err := s.List(context.Background(), job.Pending, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range list {
		ids = append(ids, j.ID)
	}
	return strings.Join(ids, ",")
}

// A second daemon with a node name already alive is refused; once the
// first stops it takes over under the next epoch.
func TestDuplicateNodeNameRefused(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	o := pgstore.Options{AdvertiseURL: "http://127.0.0.1:6800", Version: "1.2.3", MaxProc: 4}
	first := member(t, url, "node1", o)
	second := opened(t, url, "node1", o)
	err := second.Register(context.Background())
	if !errors.Is(err, pgstore.ErrNodeAlive) || !strings.Contains(err.Error(), `node_name "node1" is in use by another running daemon`) {
		t.Fatalf("second registration: %v", err)
	}
	ns, err := second.Nodes(context.Background())
	if err != nil || len(ns) != 1 {
		t.Fatalf("nodes: %+v %v", ns, err)
	}
	n := ns[0]
	if n.Name != "node1" || n.Epoch != 1 || !n.Alive || n.Stopped || n.AdvertiseURL != o.AdvertiseURL || n.Version != "1.2.3" || n.MaxProc != 4 ||
		n.LostJobs != pgstore.LostMark || n.Lease != 30*time.Second || !n.LeaseUntil.After(n.Renewed) {
		t.Fatalf("node as listed: %+v", n)
	}
	first.Close() // a clean stop
	ns, _ = second.Nodes(context.Background())
	if !ns[0].Stopped || ns[0].Alive {
		t.Fatalf("node after a clean stop: %+v", ns[0])
	}
	if err := second.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	if second.Epoch() != 2 {
		t.Fatalf("epoch after the takeover = %d, want 2", second.Epoch())
	}
	ns, _ = second.Nodes(context.Background())
	if ns[0].Stopped || !ns[0].Alive || ns[0].Epoch != 2 {
		t.Fatalf("node after the takeover: %+v", ns[0])
	}
}

// A restarted node takes its running jobs over (nothing is reaped), and
// the run before it, whose connection the server still believed alive,
// is fenced.
func TestRestartTakesOverAndFencesTheOldRun(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	o := pgstore.Options{Lease: time.Second}
	old := member(t, url, "node1", o)
	other := member(t, url, "node2", o)
	enqueue(t, old, "x", 0)
	x := claim(t, old, true)
	// The old run stops renewing (a black-holed network): its lease runs
	// out, its connection still holds the node's lock.
	time.Sleep(1500 * time.Millisecond)
	restarted := member(t, url, "node1", o)
	if restarted.Epoch() != 2 {
		t.Fatalf("epoch = %d", restarted.Epoch())
	}
	if rs, err := other.Reap(context.Background(), 100); err != nil || len(rs) != 0 {
		t.Fatalf("reaped %v %v: the node restarted", rs, err)
	}
	running, err := restarted.Local().List(context.Background(), job.Running, store.Filter{})
	if err != nil || len(running) != 1 || running[0].ID != "x" || running[0].Handle != "h-x" {
		t.Fatalf("running after the restart: %+v %v", running, err)
	}
	if err := old.End(x.Seq, time.Time{}, nil, job.OutcomeFailed, "", 100); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("the old run's end: %v, want ErrFenced", err)
	}
	if err := restarted.End(x.Seq, time.Time{}, nil, job.OutcomeFinished, "", 100); err != nil {
		t.Fatal(err)
	}
	if j := find(t, other, "x"); j.State != job.Finished || j.Outcome != job.OutcomeFinished {
		t.Fatalf("x = %s %s", j.State, j.Outcome)
	}
	// A second report of its own end is no error.
	if err := restarted.End(x.Seq, time.Time{}, nil, job.OutcomeFinished, "", 100); err != nil {
		t.Fatal(err)
	}
}

// lost_jobs = mark: a dead node's running job ends lost (with its event),
// its claimed-not-started job is pending again, its pending job is left
// alone; every later write of the dead node is fenced until it registers
// again.
func TestReapMarksLostAndFences(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	o := pgstore.Options{Lease: time.Second}
	dead := member(t, url, "node1", o)
	reaper := member(t, url, "node2", o)
	enqueue(t, dead, "r", 2)
	enqueue(t, dead, "c", 1)
	enqueue(t, dead, "p", 0)
	r := claim(t, dead, true)
	c := claim(t, dead, false)
	after, err := reaper.LastEventID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rs := reapUntil(t, reaper)
	if len(rs) != 1 || rs[0] != (pgstore.Reaped{Node: "node1", Lost: 1, Returned: 1}) {
		t.Fatalf("reaped %+v", rs)
	}
	if j := find(t, reaper, "r"); j.State != job.Finished || j.Outcome != job.OutcomeLost || j.Ended.IsZero() {
		t.Fatalf("r = %+v", j)
	}
	if got := pendingIDs(t, reaper); got != "c,p" {
		t.Fatalf("pending = %s, want c,p", got)
	}
	es, err := reaper.Events(context.Background(), after, 10)
	if err != nil || len(es) != 1 || es[0].Type != store.EventFinished || es[0].Job.ID != "r" || es[0].Job.Outcome != job.OutcomeLost {
		t.Fatalf("events of the reap: %+v %v", es, err)
	}
	if _, p, f := reaper.Counts(); p != 0 || f != 1 {
		t.Fatalf("counts: running %d finished %d", p, f)
	}

	// The dead node comes back: everything it writes is refused.
	for what, err := range map[string]error{
		"end":       dead.End(r.Seq, time.Time{}, nil, job.OutcomeFinished, "", 100),
		"launching": dead.Launching(c.Seq, "h-c"),
		"started":   dead.Started(c.Seq, "h-c", 0),
		"requeue":   dead.Requeue(c.Seq),
		"renew":     dead.Renew(context.Background(), 1),
	} {
		if !errors.Is(err, store.ErrFenced) {
			t.Errorf("%s by the dead node: %v, want ErrFenced", what, err)
		}
	}
	if j, err := dead.Claim(time.Time{}, nil); !errors.Is(err, store.ErrFenced) {
		t.Errorf("claim by the dead node: %v %v, want ErrFenced", j, err)
	}
	if j := find(t, reaper, "r"); j.Outcome != job.OutcomeLost {
		t.Fatalf("r after the dead node's end = %s", j.Outcome)
	}
	// It rejoins under a new epoch and claims again; its old job's end
	// is still refused.
	if err := dead.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	if dead.Epoch() != 3 {
		t.Fatalf("epoch after rejoining = %d, want 3 (1, reaped 2, 3)", dead.Epoch())
	}
	if err := dead.End(r.Seq, time.Time{}, nil, job.OutcomeFinished, "", 100); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("old end after rejoining: %v", err)
	}
	if j := claim(t, dead, true); j.ID != "c" {
		t.Fatalf("claimed %s after rejoining, want c", j.ID)
	}
}

// lost_jobs = requeue (the dead node's own setting): its running jobs are
// pending again in their original order and priority, before jobs
// scheduled later; one whose cancel was sent ends cancelled.
func TestReapRequeueKeepsOrder(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	dead := member(t, url, "node1", pgstore.Options{Lease: time.Second, LostJobs: pgstore.LostRequeue})
	reaper := member(t, url, "node2", pgstore.Options{Lease: time.Second})
	enqueue(t, dead, "a", 0)
	enqueue(t, dead, "b", 5)
	enqueue(t, dead, "c", 0)
	enqueue(t, dead, "x", 9)
	for _, want := range []string{"x", "b", "a"} {
		if j := claim(t, dead, true); j.ID != want {
			t.Fatalf("claimed %s, want %s", j.ID, want)
		}
	}
	if _, err := dead.MarkCancelled(find(t, dead, "x").Seq); err != nil {
		t.Fatal(err)
	}
	enqueue(t, reaper, "d", 0)
	rs := reapUntil(t, reaper)
	if len(rs) != 1 || rs[0] != (pgstore.Reaped{Node: "node1", Requeued: 2, Lost: 1}) {
		t.Fatalf("reaped %+v", rs)
	}
	if j := find(t, reaper, "x"); j.State != job.Finished || j.Outcome != job.OutcomeCancelled {
		t.Fatalf("cancelled x = %s %s", j.State, j.Outcome)
	}
	if got := pendingIDs(t, reaper); got != "b,a,c,d" {
		t.Fatalf("pending = %s, want b,a,c,d", got)
	}
	for _, want := range []string{"b", "a", "c", "d"} {
		j := claim(t, reaper, false)
		if j.ID != want {
			t.Fatalf("claimed %s, want %s", j.ID, want)
		}
		if j.Started.IsZero() || j.Handle != "" {
			t.Fatalf("requeued job claimed again: %+v", j)
		}
	}
}

// A reaper whose own lease ran out (it could not reach the database, or
// the database was away) reaps nothing until the others had a whole lease
// to renew while it renewed again.
func TestNoReapUntilTheReaperRenewedALease(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	o := pgstore.Options{Lease: time.Second}
	member(t, url, "node1", o)
	reaper := member(t, url, "node2", o)
	time.Sleep(2500 * time.Millisecond) // both leases run out
	if err := reaper.Renew(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if rs, err := reaper.Reap(context.Background(), 100); err != nil || len(rs) != 0 {
		t.Fatalf("reaped %+v %v right after the reaper came back", rs, err)
	}
	if rs := reapUntil(t, reaper); rs[0].Node != "node1" {
		t.Fatalf("reaped %+v", rs)
	}
}

// KeepLease: a node whose renewals hang says it lost its lease, then, a
// quarter of the lease before it could run out, that it expires; renewed
// again it says so; found fenced it registers again under a new epoch.
func TestKeepLeaseHooks(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	s := member(t, url, "node1", pgstore.Options{Lease: 3 * time.Second})
	events := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.KeepLease(ctx, pgstore.LeaseHooks{
		Lost:     func(error) { events <- "lost" },
		Expiring: func() { events <- "expiring" },
		Regained: func(fenced bool) {
			if fenced {
				events <- "rejoined"
			} else {
				events <- "regained"
			}
		},
	})
	next := func(want string) {
		t.Helper()
		select {
		case got := <-events:
			if got != want {
				t.Fatalf("hook %s, want %s", got, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no hook; want %s", want)
		}
	}
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	// The nodes table locked: renewals wait, and time out.
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE nodes IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	next("lost")
	next("expiring")
	tx.Rollback(ctx)
	next("regained")
	// Reaped meanwhile, as another node would.
	if _, err := admin.Exec(ctx, `UPDATE nodes SET epoch = epoch + 1, reaped = true`); err != nil {
		t.Fatal(err)
	}
	next("rejoined")
	if s.Epoch() != 3 {
		t.Fatalf("epoch after rejoining = %d, want 3", s.Epoch())
	}
}

// Right after the database restarts no node is reaped, even one whose
// lease ran out before: every node gets a lease's time to renew first.
// (The reaper's own lease runs through the restart: it is the database's
// start that holds the reap back.)
func TestNoReapRightAfterTheDatabaseRestarts(t *testing.T) {
	t.Parallel()
	srv := pgtest.Cluster(t)
	ctx := context.Background()
	o := pgstore.Options{Lease: 5 * time.Second}
	member(t, srv.URL, "node1", o)
	reaper := member(t, srv.URL, "node2", o)
	// node1 never renews; the reaper does, past the point where node1
	// could be reaped (its lease, a tenth of it and a second), without
	// reaping.
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if err := reaper.Renew(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	renewed := time.Now()
	if err := reaper.Renew(ctx, 1); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t, pgtest.Fast)
	for reaper.Renew(ctx, 1) != nil {
		if time.Since(renewed) > 20*time.Second {
			t.Fatal("the reaper cannot renew after the restart")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if time.Since(renewed) > o.Lease-time.Second {
		t.Skipf("the restart took %v: the reaper's own lease may have run out", time.Since(renewed))
	}
	if rs, err := reaper.Reap(ctx, 100); err != nil || len(rs) != 0 {
		t.Fatalf("reaped %+v %v right after the database restarted", rs, err)
	}
	if rs := reapUntil(t, reaper); rs[0].Node != "node1" {
		t.Fatalf("reaped %+v", rs)
	}
}

// Node locks are per database: a node taking its name over in one
// database (its earlier run's lease ran out) leaves alone a node of the
// same name in another database of the same server (another cluster's,
// or another test's).
func TestNodeLockIsPerDatabase(t *testing.T) {
	t.Parallel()
	elsewhere := member(t, pgtest.DB(t), "node1", pgstore.Options{})
	url := pgtest.DB(t)
	o := pgstore.Options{Lease: time.Second}
	member(t, url, "node1", o)
	time.Sleep(1500 * time.Millisecond) // its lease runs out: it is taken over
	restarted := member(t, url, "node1", o)
	if restarted.Epoch() != 2 {
		t.Fatalf("epoch after the takeover = %d, want 2", restarted.Epoch())
	}
	if err := elsewhere.Renew(context.Background(), 1); err != nil {
		t.Fatalf("the namesake in another database: %v", err)
	}
}
