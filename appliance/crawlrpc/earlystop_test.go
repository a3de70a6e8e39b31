package crawlrpc

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEarlyStop sends a crawl its graceful stop signal (what cancel.json
// sends first) while Scrapy is still starting it: before Scrapy 2.8 installs
// its shutdown handlers, SIGINT was a KeyboardInterrupt that a spider_opened
// or engine_started handler swallowed, and the crawl ran on to its end. Each
// crawl here must end on its own with finish_reason "shutdown", long before
// its 1000 pages (200 s at DOWNLOAD_DELAY 0.2) could be crawled.
//
// The points are held open by the Hold extension (testdata/site), which
// blocks the start for two seconds where it is named, as a loaded machine
// would; the plain delays hit wherever the start happens to be.
func TestEarlyStop(t *testing.T) {
	cases := []struct {
		name  string
		at    string        // Hold's point; "" for none
		delay time.Duration // after the "Enabled extensions" log line, without Hold
		sig   syscall.Signal
	}{
		{name: "built", at: "built", sig: syscall.SIGINT},
		{name: "spider_opened", at: "spider_opened", sig: syscall.SIGINT},
		{name: "engine_started", at: "engine_started", sig: syscall.SIGINT},
		{name: "engine_started SIGTERM", at: "engine_started", sig: syscall.SIGTERM},
		{name: "at once", delay: 0, sig: syscall.SIGINT},
		{name: "after 100ms", delay: 100 * time.Millisecond, sig: syscall.SIGINT},
		{name: "after 300ms", delay: 300 * time.Millisecond, sig: syscall.SIGINT},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			hold := filepath.Join(f.dir, "held")
			f.env = []string{"CRAWLRPCTEST_HOLD_AT=" + tc.at, "CRAWLRPCTEST_HOLD_FILE=" + hold}
			job := "early-" + string(rune('a'+i))
			c := f.start(t, job, "crawlrpctest_hold_settings", true, "slow", "-a", "pages=1000")
			if tc.at != "" {
				eventually(t, "the start held at "+tc.at, func() bool {
					_, err := os.Stat(hold)
					return err == nil
				})
			} else {
				eventually(t, "the extensions built", func() bool {
					b, _ := os.ReadFile(c.log)
					return strings.Contains(string(b), "Enabled extensions")
				})
				time.Sleep(tc.delay)
			}
			if err := c.proc.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			c.wait(t) // within waitLimit, and exit status 0
			if reason := finishReason(t, f, c); reason != "shutdown" {
				b, _ := os.ReadFile(c.log)
				t.Fatalf("finish_reason %q, want \"shutdown\"\n%s", reason, b)
			}
		})
	}
}

// TestEarlyStopTwice: a second signal during the start forces the stop, as
// Scrapy's second Ctrl-C does, even with the start held up.
func TestEarlyStopTwice(t *testing.T) {
	f := newFixture(t)
	hold := filepath.Join(f.dir, "held")
	f.env = []string{"CRAWLRPCTEST_HOLD_AT=spider_opened", "CRAWLRPCTEST_HOLD_FILE=" + hold, "CRAWLRPCTEST_HOLD_SECONDS=30"}
	c := f.start(t, "early-twice", "crawlrpctest_hold_settings", true, "slow", "-a", "pages=1000")
	eventually(t, "the start held at spider_opened", func() bool {
		_, err := os.Stat(hold)
		return err == nil
	})
	// Signals that arrive before Python runs its handler count as one: the
	// second waits for the first to be logged. The start is held long
	// enough for both to land in it.
	if err := c.proc.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first SIGINT logged", func() bool {
		b, _ := os.ReadFile(c.log)
		return strings.Contains(string(b), "Received SIGINT while the crawl starts")
	})
	if err := c.proc.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
	case <-time.After(waitLimit):
		t.Fatalf("crawl did not end within %v of a second SIGINT", waitLimit)
	}
	var exit *exec.ExitError
	if !errors.As(c.err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGINT {
		b, _ := os.ReadFile(c.log)
		t.Fatalf("crawl ended with %v, want killed by SIGINT\n%s", c.err, b)
	}
}

// finishReason reads the final stats the extension writes at engine_stopped.
func finishReason(tb testing.TB, f *fixture, c *crawl) string {
	tb.Helper()
	b, err := os.ReadFile(f.svc.statsPath(c.job))
	if err != nil {
		tb.Fatalf("final stats: %v", err)
	}
	var stats struct {
		FinishReason string `json:"finish_reason"`
	}
	if err := json.Unmarshal(b, &stats); err != nil {
		tb.Fatalf("final stats %q: %v", b, err)
	}
	return stats.FinishReason
}
