package pgstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
)

// running schedules a job on s and claims it there.
func running(t testing.TB, s *pgstore.Store, id string) job.Job {
	t.Helper()
	if _, err := s.Enqueue(job.Spec{ID: id, Project: "p", Spider: "s"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	j, err := s.Claim(time.Time{}, nil)
	if err != nil || j == nil || j.ID != id {
		t.Fatalf("claim %s: %v %v", id, j, err)
	}
	return *j
}

// readAll reads a shipped log in reads of n bytes, as a ranged reader does.
func readAll(t *testing.T, s *pgstore.Store, seq, n int64) []byte {
	t.Helper()
	var out []byte
	for {
		b, err := s.ReadShippedLog(context.Background(), seq, int64(len(out)), n)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			return out
		}
		out = append(out, b...)
	}
}

// A chunk sent again at an offset already shipped, whole or as part of a
// longer one, stores no byte twice; one sent past the shipped end stores
// nothing; the answer always says where to go on from.
func TestShipLogIdempotentPerOffset(t *testing.T) {
	t.Parallel()
	ns := nodes(t, 2)
	s := ns[0]
	ctx := context.Background()
	j := running(t, s, "a")
	log := []byte("line one\nline two\nline three\n")
	steps := []struct {
		off      int64
		data     string
		wantSize int64
	}{
		{0, "line one\n", 9},
		{0, "line one\n", 9},                   // sent again: the answer was lost
		{0, "line one\nline two\n", 9},         // a retry read further: still refused at 0
		{20, "ine three\n", 9},                 // past the end: a gap is never made
		{9, "line two\n", 18},                  // where the answer said
		{9, "line two\nline three\n", 18},      // again
		{18, "line three\n", int64(len(log))},  // the rest
		{18, "line three\n", int64(len(log))},  // again
		{int64(len(log)), "", int64(len(log))}, // nothing new
	}
	for i, st := range steps {
		size, err := s.ShipLog(ctx, j.Seq, st.off, []byte(st.data), false, false)
		if err != nil || size != st.wantSize {
			t.Fatalf("step %d: ship %q at %d = %d, %v; want %d", i, st.data, st.off, size, err, st.wantSize)
		}
	}
	// Read from another node, in reads that cut chunks anywhere.
	for _, n := range []int64{1, 4, 9, 100} {
		if got := readAll(t, ns[1], j.Seq, n); !bytes.Equal(got, log) {
			t.Fatalf("read by %d: %q, want %q", n, got, log)
		}
	}
	if got, err := ns[1].ReadShippedLog(ctx, j.Seq, 14, 8); err != nil || string(got) != "two\nline" {
		t.Fatalf("range 14+8 = %q, %v", got, err)
	}
	l, ok, err := ns[1].ShippedLog(ctx, "p", "s", "a")
	if err != nil || !ok || l.Size != int64(len(log)) || l.Node != "node1" || l.Done || l.Capped || l.State != job.Running {
		t.Fatalf("shipped log as another node sees it: %+v %v %v", l, ok, err)
	}
	// Another node cannot ship this node's crawl's log.
	if _, err := ns[1].ShipLog(ctx, j.Seq, l.Size, []byte("x\n"), false, false); !errors.Is(err, store.ErrNotOurs) {
		t.Fatalf("ship by another node: %v, want ErrNotOurs", err)
	}
	// The end is recorded with the last bytes; after it nothing is taken.
	if size, err := s.ShipLog(ctx, j.Seq, l.Size, []byte("end\n"), false, true); err != nil || size != l.Size+4 {
		t.Fatalf("final chunk: %d %v", size, err)
	}
	if size, err := s.ShipLog(ctx, j.Seq, l.Size+4, []byte("more\n"), false, false); err != nil || size != l.Size+4 {
		t.Fatalf("after the end: %d %v", size, err)
	}
	if got := readAll(t, ns[1], j.Seq, 7); string(got) != string(log)+"end\n" {
		t.Fatalf("whole log %q", got)
	}
}

// A capped log takes no byte after the chunk that reached the cap; its end
// is still recorded, so that it is no longer listed to ship.
func TestShipLogCapped(t *testing.T) {
	t.Parallel()
	s := nodes(t, 1)[0]
	ctx := context.Background()
	j := running(t, s, "a")
	if _, err := s.ShipLog(ctx, j.Seq, 0, []byte("12345\n"), true, false); err != nil {
		t.Fatal(err)
	}
	if size, err := s.ShipLog(ctx, j.Seq, 6, []byte("more\n"), false, false); err != nil || size != 6 {
		t.Fatalf("past the cap: %d %v", size, err)
	}
	list, err := s.LogsToShip(ctx)
	if err != nil || len(list) != 1 || !list[0].Capped || list[0].Size != 6 {
		t.Fatalf("to ship while running: %+v %v", list, err)
	}
	if _, err := s.ShipLog(ctx, j.Seq, 6, nil, false, true); err != nil {
		t.Fatal(err)
	}
	if list, err := s.LogsToShip(ctx); err != nil || len(list) != 0 {
		t.Fatalf("to ship after the end: %+v %v", list, err)
	}
	l, ok, err := s.ShippedLog(ctx, "p", "s", "a")
	if err != nil || !ok || !l.Capped || !l.Done || l.Size != 6 {
		t.Fatalf("shipped: %+v %v %v", l, ok, err)
	}
}

// LogsToShip lists this node's running crawls (nothing shipped yet, or
// part of it) and its ended crawls whose last bytes were not shipped; not
// another node's.
func TestLogsToShip(t *testing.T) {
	t.Parallel()
	ns := nodes(t, 2)
	ctx := context.Background()
	a := running(t, ns[0], "a")
	b := running(t, ns[0], "b")
	running(t, ns[1], "c")
	if _, err := ns[0].ShipLog(ctx, b.Seq, 0, []byte("b\n"), false, false); err != nil {
		t.Fatal(err)
	}
	if err := ns[0].End(b.Seq, time.Time{}, nil, job.OutcomeFinished, "", 100); err != nil {
		t.Fatal(err)
	}
	list, err := ns[0].LogsToShip(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(len(list))
	for _, l := range list {
		got += fmt.Sprintf(" %s/%s/%d", l.ID, l.State, l.Size)
	}
	if want := "2 a/running/0 b/finished/2"; got != want {
		t.Fatalf("to ship on node 1: %s, want %s", got, want)
	}
	if _, err := ns[0].ShipLog(ctx, b.Seq, 2, nil, false, true); err != nil {
		t.Fatal(err)
	}
	if list, err := ns[0].LogsToShip(ctx); err != nil || len(list) != 1 || list[0].Seq != a.Seq {
		t.Fatalf("to ship once b's end is shipped: %+v %v", list, err)
	}
	// A job that ended with nothing shipped (its start failed, or its
	// crawl was too short to be seen running) is listed too.
	d := running(t, ns[0], "d")
	if err := ns[0].End(d.Seq, time.Time{}, nil, job.OutcomeFailed, "", 100); err != nil {
		t.Fatal(err)
	}
	if list, err := ns[0].LogsToShip(ctx); err != nil || len(list) != 2 || list[1].Seq != d.Seq || list[1].State != job.Finished {
		t.Fatalf("to ship after d ended unshipped: %+v %v", list, err)
	}
}

// A job deleted from the history (finished_to_keep) takes its shipped log
// with it, and a late chunk for it is refused as not this node's.
func TestShippedLogDeletedWithItsJob(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	s, err := pgstore.Open(context.Background(), url, pgstore.Options{Node: "n", ServerClock: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	a := running(t, s, "a")
	for off := int64(0); off < 30; off += 3 {
		if _, err := s.ShipLog(ctx, a.Seq, off, []byte("ab\n"), false, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.End(a.Seq, time.Time{}, nil, job.OutcomeFinished, "", 0); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.ShippedLog(ctx, "p", "s", "a"); err != nil || ok {
		t.Fatalf("shipped log after its job was trimmed: %v %v", ok, err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var logs, chunks int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM job_logs), (SELECT count(*) FROM job_log_chunks)`).Scan(&logs, &chunks); err != nil || logs != 0 || chunks != 0 {
		t.Fatalf("rows left: %d logs, %d chunks, %v", logs, chunks, err)
	}
	if _, err := s.ShipLog(ctx, a.Seq, 30, []byte("late\n"), false, true); !errors.Is(err, store.ErrNotOurs) {
		t.Fatalf("late chunk of a deleted job: %v, want ErrNotOurs", err)
	}
}

// A job run again on another node (its first node lost, the job queued
// again) has its log shipped from the new crawl's start: the new node
// starts over, and the old node can no longer ship.
func TestShippedLogRestartsOnAnotherNode(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	ctx := context.Background()
	ns := nodes2(t, url)
	a := running(t, ns[0], "a")
	if _, err := ns[0].ShipLog(ctx, a.Seq, 0, []byte("first run\n"), false, false); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// As a reaper with lost_jobs = requeue does.
	if _, err := conn.Exec(ctx, `UPDATE jobs SET state = 'pending', node = '', started = NULL WHERE seq = $1`, a.Seq); err != nil {
		t.Fatal(err)
	}
	if j, err := ns[1].Claim(time.Time{}, nil); err != nil || j == nil || j.Seq != a.Seq {
		t.Fatalf("claim again: %v %v", j, err)
	}
	list, err := ns[1].LogsToShip(ctx)
	if err != nil || len(list) != 1 || list[0].Size != 0 {
		t.Fatalf("to ship on the new node: %+v %v", list, err)
	}
	if _, err := ns[0].ShipLog(ctx, a.Seq, 10, []byte("old\n"), false, false); !errors.Is(err, store.ErrNotOurs) {
		t.Fatalf("the old node ships: %v", err)
	}
	if size, err := ns[1].ShipLog(ctx, a.Seq, 0, []byte("second\n"), false, false); err != nil || size != 7 {
		t.Fatalf("the new node ships from 0: %d %v", size, err)
	}
	if got := readAll(t, ns[0], a.Seq, 100); string(got) != "second\n" {
		t.Fatalf("log %q", got)
	}
}

// nodes2 opens node1 and node2 on url.
func nodes2(t *testing.T, url string) []*pgstore.Store {
	var out []*pgstore.Store
	for i := 1; i <= 2; i++ {
		s, err := pgstore.Open(context.Background(), url, pgstore.Options{Node: fmt.Sprintf("node%d", i), ServerClock: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		out = append(out, s)
	}
	return out
}
