package metrics

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/store/memstore"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// feed is an events.Feed over a memstore: Wait polls (the real feed is
// woken by commits), and fails once to show the retry.
type feed struct {
	st     *memstore.Store
	mu     sync.Mutex
	failed bool
}

func (f *feed) Wait(ctx context.Context, after int64, limit int) ([]store.Event, error) {
	f.mu.Lock()
	if !f.failed {
		f.failed = true
		f.mu.Unlock()
		return nil, errors.New("database is locked")
	}
	f.mu.Unlock()
	for {
		es, err := f.st.Events(ctx, after, limit)
		if err != nil || len(es) > 0 {
			return es, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// The metrics count what the store's events say: a crawl started and
// finished with its final stats, a start that failed, a pending job
// cancelled; the events before Follow's position are not counted again.
func TestFollowCountsTheStoresEvents(t *testing.T) {
	st := memstore.New()
	t0 := time.Now().Add(-time.Hour)
	run := func(id, spider string, outcome job.Outcome, stats string) {
		t.Helper()
		if _, err := st.Enqueue(job.Spec{ID: id, Project: "p", Spider: spider}, t0); err != nil {
			t.Fatal(err)
		}
		j, err := st.Claim(t0.Add(2*time.Second), store.Caps{})
		if err != nil || j == nil {
			t.Fatal(j, err)
		}
		if outcome != job.OutcomeFailed {
			// Recorded twice, as the dispatcher did before
			// Store.Launching: a job's queue wait still counts once.
			st.Started(j.Seq, "starting", 0)
			st.Started(j.Seq, "h", 1)
		}
		st.End(j.Seq, t0.Add(62*time.Second), nil, outcome, stats, 100)
	}
	run("before", "s", job.OutcomeFinished, `{"item_scraped_count": 1000}`)
	last, err := st.LastEventID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := New(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Follow(ctx, &feed{st: st}, last); close(done) }()
	run("ok", "s", job.OutcomeFinished, `{"item_scraped_count": 7, "response_received_count": 9, "log_count/ERROR": 1}`)
	run("nostart", "s", job.OutcomeFailed, "")
	st.Enqueue(job.Spec{ID: "queued", Project: "p", Spider: "t"}, t0)
	st.CancelPending("p", "queued")
	// Three series of ended jobs: p/s finished, p/s failed, p/t cancelled.
	deadline := time.Now().Add(10 * time.Second)
	for len(scrape(t, m)["scrapyd_jobs_finished_total"].GetMetric()) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the events were not all counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := scrape(t, m)
	cancel()
	<-done
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"scrapyd_jobs_finished_total", []string{"spider", "s", "outcome", "finished"}, 1},
		{"scrapyd_jobs_finished_total", []string{"spider", "s", "outcome", "failed"}, 1},
		{"scrapyd_jobs_finished_total", []string{"spider", "t", "outcome", "cancelled"}, 1},
		{"scrapyd_spider_items_scraped_total", []string{"spider", "s"}, 7},
		{"scrapyd_spider_responses_total", []string{"spider", "s"}, 9},
		{"scrapyd_spider_errors_total", []string{"spider", "s"}, 1},
		// The failed start was claimed, so it has a (short) duration; only
		// the crawl that started has a started event, so one queue wait.
		{"scrapyd_job_duration_seconds", []string{"spider", "s"}, 2},
		{"scrapyd_job_queue_wait_seconds", []string{"project", "p"}, 1},
	} {
		if v := value(t, got, c.name, c.labels...); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	if _, ok := got["scrapyd_spider_last_success_timestamp_seconds"]; !ok {
		t.Error("no last success")
	}
}

// events is a feed of given events, then none.
type events []store.Event

func (es events) Wait(ctx context.Context, after int64, limit int) ([]store.Event, error) {
	var out []store.Event
	for _, e := range es {
		if e.ID > after {
			out = append(out, e)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// In a cluster a node counts the job events it recorded, not the others'
// (which the shared feed carries too): the nodes' counters add up.
func TestFollowCountsThisNodesEvents(t *testing.T) {
	t0 := time.Now().Add(-time.Hour)
	end := func(id int64, node, spider string) store.Event {
		return store.Event{ID: id, Type: store.EventFinished, Node: node, Time: t0,
			Job: job.Job{Spec: job.Spec{ID: spider, Project: "p", Spider: spider}, Started: t0, Ended: t0.Add(time.Minute), Outcome: job.OutcomeFinished}}
	}
	feed := events{end(1, "node1", "a"), end(2, "node2", "b"), end(3, "node1", "a"), end(4, "node2", "b"), end(5, "node2", "b")}
	for _, c := range []struct {
		node string
		a, b float64
	}{{"node1", 2, 0}, {"node2", 0, 3}, {"", 2, 3}} {
		m := New(Options{Node: c.node})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { m.Follow(ctx, feed, 0); close(done) }()
		ends := func(spider string) float64 {
			v, _ := testkit.MetricValue(scrape(t, m), "scrapyd_jobs_finished_total", "spider", spider, "outcome", "finished")
			return v
		}
		deadline := time.Now().Add(10 * time.Second)
		for ends("a")+ends("b") < c.a+c.b {
			if time.Now().After(deadline) {
				t.Fatalf("node %q: the events were not all counted", c.node)
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // a miscount would land too
		cancel()
		<-done
		for spider, want := range map[string]float64{"a": c.a, "b": c.b} {
			if v := ends(spider); v != want {
				t.Errorf("node %q counts %v ends of spider %s, want %v", c.node, v, spider, want)
			}
		}
	}
}
