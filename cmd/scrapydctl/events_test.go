package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// syncBuffer is a command's stdout while it runs in another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEventsAndWatch: `scrapydctl events -f` prints a real crawl's events
// as they happen, one line each; `jobs --watch` redraws the listing at
// each one; `events --since 0 --json` prints the events kept as JSON.
func TestEventsAndWatch(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	testkit.RequireScrapy(t)
	d := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 1"})
	d.Upload(t, "sample", "1.0", testkit.SampleEgg(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var events, watch syncBuffer
	var wg sync.WaitGroup
	for _, c := range []struct {
		out  io.Writer
		args []string
	}{{&events, []string{"events", "-f", "--url", d.URL}}, {&watch, []string{"jobs", "--watch", "--url", d.URL}}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(ctx, append([]string{"scrapydctl"}, c.args...), c.out, io.Discard)
		}()
	}
	// Both are open once jobs --watch has drawn its first (empty) listing.
	testkit.Eventually(t, 20*time.Second, "jobs --watch's first listing", func() bool { return strings.Contains(watch.String(), "STATE") })
	if r := d.Post(t, "schedule.json", url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {"w1"}}); r["status"] != "ok" {
		t.Fatalf("schedule: %v", r)
	}
	testkit.Eventually(t, 60*time.Second, "events -f to print w1's end", func() bool { return strings.Contains(events.String(), "finished   sample/params/w1") })
	testkit.Eventually(t, 20*time.Second, "jobs --watch to show w1 finished", func() bool {
		return regexp.MustCompile(`(?m)^finished\s+sample\s+params\s+w1\s`).MatchString(watch.String())
	})
	cancel()
	wg.Wait()
	lines := strings.Split(strings.TrimSpace(events.String()), "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  #\d+  scheduled  sample/params/w1$`),
		regexp.MustCompile(`^\S+ \S+  #\d+  started    sample/params/w1$`),
		regexp.MustCompile(`^\S+ \S+  #\d+  finished   sample/params/w1  finished \(exit 0\)  \d+\.\ds$`),
	}
	if len(lines) != len(want) {
		t.Fatalf("events -f printed %q", lines)
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %s", i, lines[i], re)
		}
	}
	// Each redraw follows the line of the event that caused it.
	if !strings.Contains(watch.String(), "started    sample/params/w1") {
		t.Errorf("jobs --watch output:\n%s", watch.String())
	}

	out, stderr, err := scrapydctl(t, "events", "--since", "0", "--json", "--url", d.URL)
	if err != nil {
		t.Fatalf("events --since 0: %v %s", err, stderr)
	}
	var types []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct{ Event, Job string }
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("--json line %q: %v", l, err)
		}
		types = append(types, e.Event+" "+e.Job)
	}
	if strings.Join(types, ",") != "scheduled w1,started w1,finished w1" {
		t.Fatalf("events --since 0 --json: %q", types)
	}
}
