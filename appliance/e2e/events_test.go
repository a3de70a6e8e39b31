package e2e

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// hookReceiver is a webhook receiver as its README tells users to write
// one: it checks each body's X-Scrapyd-Signature (HMAC-SHA256 with its
// secret) and dedupes by event id. While down it answers 503.
type hookReceiver struct {
	secret string
	srv    *httptest.Server

	mu       sync.Mutex
	down     bool
	refused  int              // answers 503 given
	events   []map[string]any // each event once, in the order received
	seen     map[float64]bool
	unsigned int // bodies whose signature did not verify
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	r := &hookReceiver{secret: secret, seen: map[float64]bool{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve)) // on 127.0.0.1
	t.Cleanup(r.srv.Close)
	return r
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		r.refused++
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	m := hmac.New(sha256.New, []byte(r.secret))
	m.Write(body)
	if !hmac.Equal([]byte(req.Header.Get("X-Scrapyd-Signature")), []byte("sha256="+hex.EncodeToString(m.Sum(nil)))) {
		r.unsigned++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if id := e["id"].(float64); !r.seen[id] { // at least once: dedupe by id
		r.seen[id] = true
		r.events = append(r.events, e)
	}
}

func (r *hookReceiver) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

func (r *hookReceiver) got() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// describe is "event job" per event, and the ids.
func describeEvents(es []map[string]any) (steps []string, ids []int64) {
	for _, e := range es {
		steps = append(steps, fmt.Sprint(e["event"], " ", e["job"]))
		ids = append(ids, int64(e["id"].(float64)))
	}
	return steps, ids
}

// readEvents reads /events until it ends (follow=0), as "id event job".
func readEvents(t *testing.T, c *http.Client, rawURL, lastID string) (steps []string, ids []int64) {
	t.Helper()
	req, _ := http.NewRequest("GET", rawURL, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/events: HTTP %d %s: %s", resp.StatusCode, ct, b)
	}
	sc := bufio.NewScanner(resp.Body)
	var id int64
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "id: "); ok {
			id, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			var e map[string]any
			if err := json.Unmarshal([]byte(v), &e); err != nil || int64(e["id"].(float64)) != id {
				t.Fatalf("event data %q (SSE id %d): %v", v, id, err)
			}
			steps = append(steps, fmt.Sprint(e["event"], " ", e["job"]))
			ids = append(ids, id)
		}
	}
	return steps, ids
}

// TestJobEventsWebhookAndStream: a webhook receiver gets scheduled, started
// and finished for a real crawl, in order, signed; then the daemon is
// killed (kill -9) while the receiver is down with events undelivered,
// started again, and the receiver, back up, gets every event in order,
// none lost. /events (behind the daemon's auth) resumes exactly after
// Last-Event-ID (issue 17 point 3).
func TestJobEventsWebhookAndStream(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	r := newHookReceiver(t, "s3cret hook")
	conf := "max_proc = 1\nusername = u\npassword = p\n[webhook:test]\nurl = " + r.srv.URL + "/hook\nsecret = s3cret hook"
	d := testkit.StartDaemon(t, testkit.Options{Conf: conf})
	if code := httpStatus(t, d.URL+"/events?follow=0", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("/events without credentials: HTTP %d, want 401", code)
	}
	c := authClient("u", "p")
	d.Client = c
	d.Upload(t, "sample", "1.0", testkit.SampleEgg(t))

	a := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "limit": {"3"}, "jobid": {"a"}})
	waitState(t, d, a, "finished")
	testkit.Eventually(t, waitCrawl, "a's three events at the receiver", func() bool { return len(r.got()) == 3 })
	steps, ids := describeEvents(r.got())
	if !slices.Equal(steps, []string{"scheduled a", "started a", "finished a"}) || ids[1] != ids[0]+1 || ids[2] != ids[1]+1 {
		t.Fatalf("receiver got %q (ids %v), want a's scheduled, started, finished in order", steps, ids)
	}
	fin := r.got()[2]
	stats, _ := fin["stats"].(map[string]any)
	if fin["outcome"] != "finished" || fin["exit_code"] != 0.0 || fin["duration_seconds"] == nil || fin["log_url"] != "/logs/sample/params/a.log" ||
		fin["items_url"] != "/items/sample/params/a.jl" || stats == nil || stats["item_scraped_count"] != 3.0 {
		t.Fatalf("finished event: %v", fin)
	}

	// The receiver goes down; two more jobs run their whole life while it
	// refuses, and the daemon dies with their events undelivered.
	r.setDown(true)
	b := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {"b"}})
	cj := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"failing"}, "jobid": {"c"}})
	waitState(t, d, b, "finished")
	waitState(t, d, cj, "finished")
	testkit.Eventually(t, waitCrawl, "the receiver to refuse a delivery", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.refused > 0
	})
	d.Kill()
	if n := len(r.got()); n != 3 {
		t.Fatalf("receiver got %d events while down", n)
	}

	d = testkit.StartDaemon(t, testkit.Options{Root: d.Root, Conf: conf})
	d.Client = c
	r.setDown(false)
	// The daemon's own order of events, from the start: each job's
	// scheduled, started, finished in that order (b and c interleave as
	// the dispatcher ran them).
	all, allIDs := readEvents(t, c, d.URL+"/events?follow=0&since=0", "")
	if len(all) != 9 {
		t.Fatalf("/events?since=0 = %q, want 9 events", all)
	}
	for _, id := range []string{"a", "b", "c"} {
		var life []string
		for _, s := range all {
			if strings.HasSuffix(s, " "+id) {
				life = append(life, strings.TrimSuffix(s, " "+id))
			}
		}
		if !slices.Equal(life, []string{"scheduled", "started", "finished"}) {
			t.Fatalf("job %s's events: %q (all: %q)", id, life, all)
		}
	}
	for i := 1; i < len(allIDs); i++ {
		if allIDs[i] != allIDs[i-1]+1 {
			t.Fatalf("event ids %v: one is missing or out of order", allIDs)
		}
	}
	testkit.Eventually(t, waitCrawl, "every event at the receiver after the restart", func() bool { return len(r.got()) >= len(all) })
	steps, ids = describeEvents(r.got())
	if !slices.Equal(steps, all) || !slices.Equal(ids, allIDs) {
		t.Fatalf("receiver got %q %v, want %q %v", steps, ids, all, allIDs)
	}
	for _, e := range r.got() {
		if e["job"] == "c" && e["event"] == "finished" && e["outcome"] != "failed" {
			t.Fatalf("c's finished event: %v", e)
		}
	}
	r.mu.Lock()
	unsigned := r.unsigned
	r.mu.Unlock()
	if unsigned != 0 {
		t.Fatalf("%d deliveries without a valid signature", unsigned)
	}

	// /events from Last-Event-ID: exactly the events after it; ?since= is
	// the same for clients that cannot set the header.
	sseSteps, sseIDs := readEvents(t, c, d.URL+"/events?follow=0", strconv.FormatInt(allIDs[2], 10))
	if !slices.Equal(sseSteps, all[3:]) || !slices.Equal(sseIDs, allIDs[3:]) {
		t.Fatalf("/events after %d = %q %v, want %q %v", allIDs[2], sseSteps, sseIDs, all[3:], allIDs[3:])
	}
	if s, _ := readEvents(t, c, d.URL+"/events?follow=0&since="+strconv.FormatInt(allIDs[7], 10), ""); !slices.Equal(s, all[8:]) {
		t.Fatalf("/events?since=%d = %q", allIDs[7], s)
	}

	// A live stream: it is woken by the commit of each new event.
	resp, err := c.Get(d.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	lines.Scan() // the opening comment: the stream is open
	e := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {"e"}})
	var live []string
	for len(live) < 3 && lines.Scan() {
		if v, ok := strings.CutPrefix(lines.Text(), "event: "); ok {
			live = append(live, v)
		}
	}
	if !slices.Equal(live, []string{"scheduled", "started", "finished"}) {
		t.Fatalf("live /events for %s: %q", e, live)
	}
}
