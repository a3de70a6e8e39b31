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
	"github.com/scrapyd-debian/scrapyd/appliance/testkit/faultproxy"
)

// proxied is url through a fault proxy: the proxy and the URL to give a
// store.
func proxied(t *testing.T, url string) (*faultproxy.Proxy, string) {
	t.Helper()
	proxy := faultproxy.Start(t, pgtest.Addr(t, url))
	return proxy, pgtest.Via(t, url, proxy.Addr)
}

// A node cut off from the database (a black hole: its connections stay
// open and quiet) does not hold a schedule, a listing or a status until
// the partition heals: each fails as store.ErrUnavailable, which the API
// answers in Scrapyd's error style, once pgstore.CallBound has passed; the
// schedule changed nothing, and after the heal the store works again.
func TestCallsBoundedWhileCutOff(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	proxy, via := proxied(t, url)
	cut := opened(t, via, "node1", pgstore.Options{})
	other := opened(t, url, "node2", pgstore.Options{})
	enqueue(t, cut, "before", 0)
	proxy.BlackHole()
	t.Cleanup(proxy.Heal)
	calls := map[string]func() error{
		"schedule": func() error {
			_, err := cut.Enqueue(job.Spec{ID: "during", Project: "p", Spider: "s"}, time.Time{})
			return err
		},
		"listjobs": func() error {
			_, _, _, err := cut.Snapshot(context.Background(), store.Filter{}, store.Filter{}, map[job.State]bool{job.Pending: true})
			return err
		},
		"listprojects": func() error { // schedule.json's check of the project too
			_, err := cut.EggProjects(context.Background())
			return err
		},
		"status": func() error {
			_, err := cut.Find(context.Background(), "p", "before")
			return err
		},
	}
	done := make(map[string]chan error)
	for what, call := range calls {
		done[what] = make(chan error, 1)
		go func() { done[what] <- call() }()
	}
	give := time.After(pgstore.CallBound + 30*time.Second)
	for what := range calls {
		select {
		case err := <-done[what]:
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s while cut off: %v, want store.ErrUnavailable", what, err)
			}
		case <-give:
			t.Fatalf("%s while cut off: no answer", what)
		}
	}
	if got := pendingIDs(t, other); got != "before" {
		t.Fatalf("pending = %s, want before: the failed schedule wrote", got)
	}
	proxy.Heal()
	enqueue(t, cut, "after", 0)
	if got := pendingIDs(t, other); got != "before,after" {
		t.Fatalf("pending after the heal = %s", got)
	}
}
