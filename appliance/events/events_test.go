package events

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/store/memstore"
)

func setup(t *testing.T) (*memstore.Store, *Feed, *config.Config) {
	st := memstore.New()
	f := NewFeed(st)
	st.OnEvent(f.Notify)
	return st, f, &config.Config{NodeName: "node1", LogsDir: "/var/log/scrapyd", ItemsDir: "/var/lib/scrapyd/items"}
}

// run takes a job through its life: scheduled, started, finished.
func run(t *testing.T, st *memstore.Store, id string) {
	t.Helper()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := st.Enqueue(job.Spec{ID: id, Project: "p q", Spider: "s"}, t0); err != nil {
		t.Fatal(err)
	}
	j, _ := st.Claim(t0.Add(time.Second), nil)
	st.Started(j.Seq, "h", 42)
	code := 0
	st.End(j.Seq, t0.Add(4*time.Second), &code, job.OutcomeFinished, `{"item_scraped_count": 7,
 "finish_reason": "finished"}`, 10)
}

func TestWaitWakesOnCommit(t *testing.T) {
	st, f, _ := setup(t)
	got := make(chan int, 1)
	go func() {
		es, _ := f.Wait(context.Background(), 0, 10)
		got <- len(es)
	}()
	time.Sleep(10 * time.Millisecond) // let it wait; no poll would find the event otherwise either
	st.Enqueue(job.Spec{ID: "a", Project: "p", Spider: "s"}, time.Now())
	if n := <-got; n != 1 {
		t.Fatalf("woken with %d events", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Wait(ctx, 1, 10); err != context.Canceled {
		t.Fatalf("Wait with nothing new and an ended ctx = %v", err)
	}
}

func TestJSON(t *testing.T) {
	st, _, cfg := setup(t)
	run(t, st, "j 1")
	es, _ := st.Events(context.Background(), 0, 10)
	var got map[string]any
	if err := json.Unmarshal(Marshal(cfg, es[2]), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": 3.0, "event": "finished", "time": "2026-01-02T03:04:09.000000Z", "node_name": "node1",
		"project": "p q", "spider": "s", "job": "j 1", "version": "", "priority": 0.0,
		"scheduled_at": "2026-01-02T03:04:05.000000Z", "started_at": "2026-01-02T03:04:06.000000Z", "ended_at": "2026-01-02T03:04:09.000000Z",
		"pid": 42.0, "outcome": "finished", "exit_code": 0.0, "queue_wait_seconds": 1.0, "duration_seconds": 3.0,
		"stats":   map[string]any{"item_scraped_count": 7.0, "finish_reason": "finished"},
		"log_url": "/logs/p%20q/s/j%201.log", "items_url": "/items/p%20q/s/j%201.jl"}
	for k, v := range want {
		if gv, ok := got[k]; !ok || !equalJSON(gv, v) {
			t.Errorf("%s = %#v, want %#v", k, gv, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("keys = %d, want %d: %v", len(got), len(want), got)
	}
	if line := Marshal(cfg, es[2]); strings.Contains(string(line), "\n") {
		t.Fatalf("event JSON spans lines (an SSE data line): %s", line)
	}
	var sched map[string]any
	json.Unmarshal(Marshal(cfg, es[0]), &sched)
	for _, k := range []string{"started_at", "outcome", "exit_code", "duration_seconds", "stats", "pid"} {
		if v, ok := sched[k]; !ok || v != nil {
			t.Errorf("scheduled event's %s = %v, want null", k, v)
		}
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// receiver records what a webhook receiver got; it fails while down.
type receiver struct {
	mu     sync.Mutex
	down   bool
	failed int
	got    []int64
	types  []string
	badSig int
	srv    *httptest.Server
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.down {
			r.failed++
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if req.Header.Get(SignatureHeader) != Sign(secret, body) {
			r.badSig++
		}
		var e Event
		json.Unmarshal(body, &e)
		r.got = append(r.got, e.ID)
		r.types = append(r.types, req.Header.Get("X-Scrapyd-Event"))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) ids() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

func TestWebhooksInOrderSignedRetriedResumed(t *testing.T) {
	st, f, cfg := setup(t)
	run(t, st, "before") // events before a receiver exists are not sent to it
	r := newReceiver(t, "s3cret")
	c := *cfg
	c.Webhooks = []config.Webhook{{Name: "r", URL: r.srv.URL + "/hook", Secret: "s3cret"}}
	h := &Webhooks{Feed: f, Cursors: st, Config: func() *config.Config { return &c }, Log: slog.New(slog.DiscardHandler),
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.Run(ctx) }()
	waitFor(t, "the receiver's cursor", func() bool { _, ok, _ := st.Cursor(ctx, c.Webhooks[0].URL); return ok })
	run(t, st, "a")
	waitFor(t, "a's three events", func() bool { return len(r.ids()) == 3 })
	r.mu.Lock()
	r.down = true
	r.mu.Unlock()
	run(t, st, "b")
	waitFor(t, "three failed attempts", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.failed >= 3 })
	r.mu.Lock()
	r.down = false
	r.mu.Unlock()
	waitFor(t, "b's events after the receiver came back", func() bool { return len(r.ids()) == 6 })
	cancel()
	<-done
	if got := r.ids(); !slices.Equal(got, []int64{4, 5, 6, 7, 8, 9}) {
		t.Fatalf("delivered %v, want events 4..9 in order", got)
	}
	if !slices.Equal(r.types, []string{"scheduled", "started", "finished", "scheduled", "started", "finished"}) || r.badSig != 0 {
		t.Fatalf("types %v, %d bad signatures", r.types, r.badSig)
	}
	if id, _, _ := st.Cursor(context.Background(), c.Webhooks[0].URL); id != 9 {
		t.Fatalf("cursor = %d, want 9", id)
	}
	// A restart resumes after the cursor: nothing again, then what is new.
	run(t, st, "c")
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- h.Run(ctx) }()
	waitFor(t, "c's events after a restart", func() bool { return len(r.ids()) == 9 })
	cancel()
	<-done
	if got := r.ids(); !slices.Equal(got[6:], []int64{10, 11, 12}) {
		t.Fatalf("after restart delivered %v", got)
	}
}

func TestStream(t *testing.T) {
	st, f, cfg := setup(t)
	run(t, st, "a")
	run(t, st, "b")
	s := &Stream{Feed: f, Config: func() *config.Config { return cfg }}
	app := fiber.New()
	s.Register(app)
	read := func(target, lastID string) []string {
		req := httptest.NewRequest("GET", target, nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := app.Test(req, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			b, _ := io.ReadAll(resp.Body)
			return []string{"status " + resp.Status + ": " + string(b)}
		}
		var ids []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
				ids = append(ids, id)
			}
		}
		return ids
	}
	if got := read("/events?since=0&follow=0", ""); !slices.Equal(got, []string{"1", "2", "3", "4", "5", "6"}) {
		t.Fatalf("since=0: ids %v", got)
	}
	if got := read("/events?since=1&follow=0", "4"); !slices.Equal(got, []string{"5", "6"}) {
		t.Fatalf("Last-Event-ID 4 (over since): ids %v", got)
	}
	if got := read("/events?follow=0", ""); len(got) != 0 {
		t.Fatalf("no since: only events to come, got %v", got)
	}
	if got := read("/events?since=x&follow=0", ""); len(got) != 1 || !strings.Contains(got[0], "must be event ids") {
		t.Fatalf("bad since: %v", got)
	}
}

// A reload adds and removes receivers; old events are trimmed, except
// those a receiver has not taken yet.
func TestWebhooksApplyAndTrim(t *testing.T) {
	st, f, cfg := setup(t)
	r := newReceiver(t, "k")
	var current atomic.Pointer[config.Config] // the daemon's configuration in force
	current.Store(cfg)
	h := &Webhooks{Feed: f, Cursors: st, Config: current.Load, Log: slog.New(slog.DiscardHandler),
		MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Keep: 2}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.Run(ctx)
	run(t, st, "a") // events 1-3: no receiver yet
	withHook := *cfg
	withHook.Webhooks = []config.Webhook{{Name: "r", URL: r.srv.URL, Secret: "k"}}
	// A reload: the new configuration is in force, then applied.
	current.Store(&withHook)
	h.Apply(&withHook)
	waitFor(t, "the new receiver's cursor", func() bool { _, ok, _ := st.Cursor(ctx, r.srv.URL); return ok })
	run(t, st, "b") // 4-6
	waitFor(t, "b's events", func() bool { return len(r.ids()) == 3 })
	if got := r.ids(); !slices.Equal(got, []int64{4, 5, 6}) {
		t.Fatalf("a receiver added later got %v, want the events after it was added", got)
	}
	r.mu.Lock()
	r.down = true
	r.mu.Unlock()
	run(t, st, "c") // 7-9, undelivered
	waitFor(t, "a refused delivery", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.failed > 0 })
	h.trim(ctx)
	es, _ := st.Events(ctx, 0, 100)
	if len(es) != 3 || es[0].ID != 7 {
		t.Fatalf("after a trim keeping 2, events %v; want 7-9 (the receiver lacks them)", describeIDs(es))
	}
	current.Store(cfg) // the receiver removed: no more attempts
	h.Apply(cfg)
	r.mu.Lock()
	r.down = false
	r.mu.Unlock()
	run(t, st, "d")
	h.trim(ctx)
	if es, _ := st.Events(ctx, 0, 100); len(es) != 2 || es[0].ID != 11 {
		t.Fatalf("after removing the receiver, a trim keeps %v; want the last 2", describeIDs(es))
	}
	if got := r.ids(); len(got) != 3 {
		t.Fatalf("a removed receiver got %v", got)
	}
}

func describeIDs(es []store.Event) []int64 {
	var out []int64
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

// An idle stream sends a comment at each heartbeat, so proxies keep it.
func TestStreamHeartbeat(t *testing.T) {
	_, f, cfg := setup(t)
	s := &Stream{Feed: f, Config: func() *config.Config { return cfg }, Heartbeat: time.Millisecond}
	app := fiber.New()
	s.Register(app)
	// app.Test returns once the stream ends: Stop ends it after a while.
	time.AfterFunc(50*time.Millisecond, s.Stop)
	resp, err := app.Test(httptest.NewRequest("GET", "/events", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "\n: keep-alive\n\n") {
		t.Fatalf("an idle stream sent %q, no heartbeat", body)
	}
}

// TestWebhooksRunAgainWithTheConfigurationInForce: a cluster node that
// loses the lead stops Run and calls it again when it takes the lead
// back: the receivers are then those of the configuration in force, not
// those applied before the first Run.
func TestWebhooksRunAgainWithTheConfigurationInForce(t *testing.T) {
	st, f, cfg := setup(t)
	old, cur := newReceiver(t, "k"), newReceiver(t, "k")
	first, second := *cfg, *cfg
	first.Webhooks = []config.Webhook{{Name: "r", URL: old.srv.URL, Secret: "k"}}
	second.Webhooks = []config.Webhook{{Name: "r", URL: cur.srv.URL, Secret: "k"}}
	var current atomic.Pointer[config.Config]
	current.Store(&first)
	h := &Webhooks{Feed: f, Cursors: st, Config: current.Load, Log: slog.New(slog.DiscardHandler), MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	h.Apply(&first) // a reload before the first Run
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.Run(ctx) }()
	waitFor(t, "the first receiver's cursor", func() bool { _, ok, _ := st.Cursor(ctx, old.srv.URL); return ok })
	cancel()
	<-done
	current.Store(&second) // a reload while another node leads
	h.Apply(&second)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- h.Run(ctx) }()
	waitFor(t, "the second receiver's cursor", func() bool { _, ok, _ := st.Cursor(ctx, cur.srv.URL); return ok })
	run(t, st, "a")
	waitFor(t, "a's events at the receiver in force", func() bool { return len(cur.ids()) == 3 })
	if got := old.ids(); len(got) != 0 {
		t.Fatalf("the receiver of the earlier configuration got %v", got)
	}
}
