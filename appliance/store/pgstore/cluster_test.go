package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
)

// nodes opens n stores on one fresh database at once, as n daemons
// starting together would: they migrate it once between them.
func nodes(t testing.TB, n int) []*pgstore.Store {
	t.Helper()
	url := pgtest.DB(t)
	out := make([]*pgstore.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = pgstore.Open(context.Background(), url, pgstore.Options{Node: fmt.Sprintf("node%d", i+1), ServerClock: true})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range out {
		t.Cleanup(func() { s.Close() })
	}
	return out
}

// Jobs scheduled and claimed concurrently on several nodes each start
// exactly once; a job id scheduled on several nodes at once is taken once.
func TestConcurrentNodesClaimOnce(t *testing.T) {
	t.Parallel()
	ns := nodes(t, 3)
	const jobs = 150
	var wg sync.WaitGroup
	dups := make(chan error, 3*jobs)
	for i := range jobs {
		for _, s := range ns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Enqueue(job.Spec{ID: fmt.Sprintf("j%03d", i), Project: "p", Spider: "s", Priority: float64(i % 3)}, time.Time{})
				if err != nil {
					dups <- err
				}
			}()
		}
	}
	wg.Wait()
	close(dups)
	n := 0
	for err := range dups {
		if !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("enqueue: %v", err)
		}
		n++
	}
	if n != 2*jobs {
		t.Fatalf("%d duplicates refused, want %d", n, 2*jobs)
	}
	claimed := make([][]*job.Job, len(ns))
	for i, s := range ns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j, err := s.Claim(time.Time{}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				if j == nil {
					return
				}
				claimed[i] = append(claimed[i], j)
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, list := range claimed {
		for k, j := range list {
			if seen[j.ID] {
				t.Fatalf("%s claimed twice", j.ID)
			}
			seen[j.ID] = true
			// Each node's claims come in queue order.
			if k > 0 && j.Priority > list[k-1].Priority {
				t.Fatalf("node %d claimed %s (priority %v) after %s (priority %v)", i+1, j.ID, j.Priority, list[k-1].ID, list[k-1].Priority)
			}
		}
	}
	if len(seen) != jobs {
		t.Fatalf("%d jobs claimed, want %d", len(seen), jobs)
	}
	if p, r, f := ns[1].Counts(); p != 0 || r != jobs || f != 0 {
		t.Fatalf("counts from another node = %d %d %d", p, r, f)
	}
}

// A schedule on one node is heard by a listener on another, after the
// commit; the listener is called once on connecting, and again after its
// connection is cut.
func TestListenHearsOtherNodes(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	ns := nodes2(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	heard := make(chan struct{}, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ns[1].Listen(ctx, func() { heard <- struct{}{} })
	}()
	wait := func(what string) {
		t.Helper()
		select {
		case <-heard:
		case <-time.After(30 * time.Second):
			t.Fatalf("not called: %s", what)
		}
	}
	wait("on connect")
	if _, err := ns[0].Enqueue(job.Spec{ID: "a", Project: "p", Spider: "s"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	wait("after a schedule on another node")
	if j, err := ns[1].Claim(time.Time{}, nil); err != nil || j == nil || j.ID != "a" {
		t.Fatalf("claim on the node that heard: %v %v", j, err)
	}
	// A refused duplicate commits nothing, so announces nothing: the
	// next call is the reconnect's.
	if _, err := ns[0].Enqueue(job.Spec{ID: "a", Project: "p", Spider: "s"}, time.Time{}); !errors.Is(err, store.ErrDuplicate) {
		t.Fatal(err)
	}
	// Cut every listening connection of this test's database from the
	// server side (the other tests' are theirs: they share the server).
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()`); err != nil {
		t.Fatal(err)
	}
	wait("after a reconnect")
	select {
	case <-heard:
		t.Fatal("called for a refused duplicate")
	default:
	}
	cancel()
	<-done
}

// The database's clock dates jobs with ServerClock, whatever the caller's.
func TestServerClock(t *testing.T) {
	t.Parallel()
	s := nodes(t, 1)[0]
	before := time.Now().Add(-time.Minute)
	j, err := s.Enqueue(job.Spec{ID: "a", Project: "p", Spider: "s"}, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if j.Scheduled.Before(before) {
		t.Fatalf("scheduled %v: the caller's clock, not the database's", j.Scheduled)
	}
	c, err := s.Claim(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), nil)
	if err != nil || c == nil || c.Started.Before(before) {
		t.Fatalf("claimed %+v, %v", c, err)
	}
}

// A database written by a newer release is refused and left as it was.
func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	s, err := pgstore.Open(context.Background(), url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `UPDATE schema_version SET version = version + 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := pgstore.Open(context.Background(), url, pgstore.Options{}); !errors.Is(err, store.ErrNewerSchema) {
		t.Fatalf("open a newer database: %v, want ErrNewerSchema", err)
	}
}

// One node at a time leads; when its connection is cut its lead ends, and
// another node can take the lock.
func TestLeadOneNodeAtATime(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	ns := []*pgstore.Store{opened(t, url, "node1", pgstore.Options{}), opened(t, url, "node2", pgstore.Options{})}
	ctx := context.Background()
	lead, release, ok, err := ns[0].Lead(ctx, pgstore.SchedulerLock)
	if err != nil || !ok {
		t.Fatalf("node 1 leads: %v %v", ok, err)
	}
	defer release()
	if _, _, ok, err := ns[1].Lead(ctx, pgstore.SchedulerLock); err != nil || ok {
		t.Fatalf("node 2 leads too: %v %v", ok, err)
	}
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	// This test's database only: other tests hold the same key in theirs.
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, pgstore.SchedulerLock); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lead.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("node 1 still leads after losing its connection")
	}
	if _, release, ok, err := ns[1].Lead(ctx, pgstore.SchedulerLock); err != nil || !ok {
		t.Fatalf("node 2 after node 1 lost the lock: %v %v", ok, err)
	} else {
		release()
	}
}

// A database of schema version 1 is migrated with its finished jobs
// counted, and the count follows ends and trims from then on.
func TestMigrationCountsFinished(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	ctx := context.Background()
	s, err := pgstore.Open(ctx, url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Back to version 1, with three finished jobs in it.
	if _, err := conn.Exec(ctx, `DROP TABLE job_counts, job_log_chunks, job_logs, nodes, cluster_secret, eggs, imports; DROP INDEX jobs_node, jobs_successes, jobs_schedule_due;
		ALTER TABLE jobs DROP COLUMN epoch, DROP COLUMN cancel_requests, DROP COLUMN cancels_delivered, DROP COLUMN cancel_signal, DROP COLUMN items;
		ALTER TABLE events DROP COLUMN node, DROP COLUMN schedule, DROP COLUMN attempt;
		UPDATE schema_version SET version = 1;
		INSERT INTO jobs (id, project, spider, state, scheduled, ended) SELECT 'f'||g, 'p', 's', 'finished', now(), now() FROM generate_series(1, 3) g`); err != nil {
		t.Fatal(err)
	}
	s, err = pgstore.Open(ctx, url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, f := s.Counts(); f != 3 {
		t.Fatalf("finished after the migration = %d, want 3", f)
	}
	if _, err := s.Enqueue(job.Spec{ID: "a", Project: "p", Spider: "s"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	j, err := s.Claim(time.Time{}, nil)
	if err != nil || j == nil {
		t.Fatal(j, err)
	}
	if err := s.End(j.Seq, time.Time{}, nil, job.OutcomeFinished, "", 2); err != nil {
		t.Fatal(err)
	}
	if p, r, f := s.Counts(); p != 0 || r != 0 || f != 2 {
		t.Fatalf("counts after an end that trims to 2 = %d %d %d", p, r, f)
	}
}

// Each job records the node that claimed it; a listing narrowed to a node
// keeps that node's running and finished jobs, and no pending one (a
// pending job is no node's yet).
func TestListByNode(t *testing.T) {
	t.Parallel()
	ns := nodes(t, 2)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if _, err := ns[0].Enqueue(job.Spec{ID: id, Project: "p", Spider: "s"}, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := ns[0].Claim(time.Time{}, nil)
	if err != nil || a == nil {
		t.Fatal(a, err)
	}
	b, err := ns[1].Claim(time.Time{}, nil)
	if err != nil || b == nil {
		t.Fatal(b, err)
	}
	if err := ns[1].End(b.Seq, time.Time{}, nil, job.OutcomeFinished, "", 10); err != nil {
		t.Fatal(err)
	}
	ids := func(state job.State, node string) string {
		t.Helper()
		list, err := ns[0].List(ctx, state, store.Filter{Node: node})
		if err != nil {
			t.Fatal(err)
		}
		out := ""
		for _, j := range list {
			out += j.ID + "@" + j.Node + " "
		}
		return out
	}
	for _, c := range []struct {
		state      job.State
		node, want string
	}{
		{job.Pending, "", "c@ "}, {job.Pending, "node1", ""},
		{job.Running, "", "a@node1 "}, {job.Running, "node1", "a@node1 "}, {job.Running, "node2", ""},
		{job.Finished, "", "b@node2 "}, {job.Finished, "node2", "b@node2 "}, {job.Finished, "node1", ""},
	} {
		if got := ids(c.state, c.node); got != c.want {
			t.Errorf("%s jobs of node %q: %q, want %q", c.state, c.node, got, c.want)
		}
	}
	if j, err := ns[1].Find(ctx, "p", "b"); err != nil || j.Node != "node2" {
		t.Fatalf("find b: %+v %v", j, err)
	}
}

// A cancel asked on one node for a crawl another node runs is counted on
// the job's row and announced to that node only; the first asks for the
// caller's signal, a second for SIGKILL; once delivered, a request is no
// longer listed. Jobs the asking node signals itself are skipped.
func TestCancelRequests(t *testing.T) {
	t.Parallel()
	ns := nodes(t, 2)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, err := ns[0].Enqueue(job.Spec{ID: id, Project: "p", Spider: "s"}, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := ns[1].Claim(time.Time{}, nil)
	b, _ := ns[0].Claim(time.Time{}, nil)
	if a == nil || b == nil || a.ID != "a" {
		t.Fatal(a, b)
	}
	heard := make(chan string, 10)
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	go ns[1].ListenPayloads(lctx, func(p string) { heard <- p })
	if p := <-heard; p != "" {
		t.Fatalf("first call after connecting: %q", p)
	}
	if n, err := ns[0].RequestCancel("p", "b", syscall.SIGINT, []int64{b.Seq}); err != nil || n != 0 {
		t.Fatalf("a cancel of a job the caller runs itself asked %d nodes, %v", n, err)
	}
	want := func(sig syscall.Signal, requests int) {
		t.Helper()
		reqs, err := ns[1].Local().CancelRequests(ctx)
		if err != nil || len(reqs) != 1 || reqs[0].Seq != a.Seq || reqs[0].Signal != sig || reqs[0].Requests != requests {
			t.Fatalf("node 2's requests: %+v %v; want %v (%d)", reqs, err, sig, requests)
		}
		if mine, err := ns[0].Local().CancelRequests(ctx); err != nil || len(mine) != 0 {
			t.Fatalf("node 1's requests: %+v %v", mine, err)
		}
	}
	if n, err := ns[0].RequestCancel("p", "a", syscall.SIGTERM, nil); err != nil || n != 1 {
		t.Fatalf("cancel of a: %d %v", n, err)
	}
	if p := <-heard; p != pgstore.Cancels+"node2" {
		t.Fatalf("announced %q", p)
	}
	want(syscall.SIGTERM, 1)
	if err := ns[1].CancelDelivered(a.Seq, 1); err != nil {
		t.Fatal(err)
	}
	if reqs, err := ns[1].Local().CancelRequests(ctx); err != nil || len(reqs) != 0 {
		t.Fatalf("requests after delivery: %+v %v", reqs, err)
	}
	if n, err := ns[0].RequestCancel("p", "a", syscall.SIGINT, nil); err != nil || n != 1 {
		t.Fatalf("second cancel of a: %d %v", n, err)
	}
	want(syscall.SIGKILL, 2)
	if j, _ := ns[0].Find(ctx, "p", "a"); !j.Cancelled {
		t.Fatal("the job is not marked cancelled: its end would not be a cancel")
	}
}

// Every node gets the same cluster secret, made once.
func TestClusterSecret(t *testing.T) {
	t.Parallel()
	ns := nodes(t, 2)
	a, err := ns[0].ClusterSecret(context.Background())
	if err != nil || len(a) != 64 {
		t.Fatalf("secret %q %v", a, err)
	}
	if b, err := ns[1].ClusterSecret(context.Background()); err != nil || b != a {
		t.Fatalf("node 2's secret %q %v, node 1's %q", b, err, a)
	}
}
