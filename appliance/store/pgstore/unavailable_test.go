package pgstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
)

// TestUnavailable: while the database is down, a write, a spider-cache
// read and a listing fail as store.ErrUnavailable and change nothing; a
// refused statement is not "unavailable"; right after a restart (pooled
// connections the server closed included) the store works again.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	pg := pgtest.Cluster(t)
	s, err := pgstore.Open(context.Background(), pg.URL, pgstore.Options{Node: "node1", ServerClock: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Enqueue(job.Spec{ID: "a", Project: "p", Spider: "s"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(job.Spec{ID: "a", Project: "p", Spider: "s"}, time.Time{}); !errors.Is(err, store.ErrDuplicate) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a duplicate id: %v", err)
	}
	for _, mode := range []pgtest.Mode{pgtest.Fast, pgtest.Immediate} {
		pg.Down(t, mode)
		if _, err := s.Enqueue(job.Spec{ID: "b", Project: "p", Spider: "s"}, time.Time{}); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("enqueue while down (%s): %v", mode, err)
		}
		if _, _, err := s.Spiders(ctx, "p", "1"); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("spider cache while down (%s): %v", mode, err)
		}
		if _, err := s.List(ctx, job.Pending, store.Filter{}); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("list while down (%s): %v", mode, err)
		}
		pg.Up(t)
		pending, err := s.List(ctx, job.Pending, store.Filter{})
		if err != nil || len(pending) != 1 || pending[0].ID != "a" {
			t.Fatalf("pending after a %s restart: %v %v", mode, pending, err)
		}
	}
	// A restart between two uses: the pool's connections are all closed
	// by the server, none idle long enough to be pinged first.
	for range 3 {
		s.List(ctx, job.Pending, store.Filter{})
	}
	pg.Restart(t, pgtest.Fast)
	if _, err := s.Enqueue(job.Spec{ID: "c", Project: "p", Spider: "s"}, time.Time{}); err != nil {
		t.Fatalf("enqueue right after a restart: %v", err)
	}
}
