package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit/faultproxy"
)

// TestPartitionMidTransaction: a node cut off from the database (a
// black hole: its connection stays open, its COMMIT never arrives) in the
// middle of a transaction that holds the event counter, which every
// job-event write locks first, does not hold the other nodes' writes for
// longer than its lease: the server ends its session
// (idle_in_transaction_session_timeout), and a schedule on another node
// goes through. Without that it would wait for TCP to give up, which is
// minutes to hours, and no node could reap the cut-off one meanwhile.
func TestPartitionMidTransaction(t *testing.T) {
	t.Parallel()
	pg := pgtest.Cluster(t)
	proxy := faultproxy.Start(t, pg.Addr)
	ctx := context.Background()
	open := func(url, node string) *pgstore.Store {
		s, err := pgstore.Open(ctx, url, pgstore.Options{Node: node, ServerClock: true, Lease: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	cut := open(pg.URLAt(proxy.Addr), "node1")
	other := open(pg.URL, "node2")
	tx, err := cut.HoldEventCounter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// First of the cleanups: the held connection must be given back for
	// the store to close, even when the test fails with it held.
	t.Cleanup(func() {
		proxy.Close()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		tx.Rollback(ctx)
	})
	proxy.BlackHole()
	done := make(chan error, 1)
	go func() {
		_, err := other.Enqueue(job.Spec{ID: "j", Project: "p", Spider: "s"}, time.Time{})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("schedule on another node: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a node cut off in a transaction holds the other nodes' schedules")
	}
	proxy.Heal()
	// The cut-off node's transaction was ended by the server: its commit,
	// delivered late, fails.
	if err := tx.Commit(ctx); err == nil {
		t.Fatal("the cut-off transaction committed after the server ended it")
	}
}
