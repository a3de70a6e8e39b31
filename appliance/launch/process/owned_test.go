package process

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/launchtest"
)

// sh runs a shell script as a crawl of job.
func sh(t *testing.T, job, script string, limits launch.Limits) launch.Command {
	dir := t.TempDir()
	return launch.Command{Job: job, Path: "/bin/sh", Args: []string{"-c", script}, Dir: "/",
		Env: []string{"PATH=/usr/bin:/bin"}, Stdout: filepath.Join(dir, "out"), Limits: limits}
}

// A crawl over its MaxRuntime that ignores SIGINT is killed after the grace.
func TestOvertimeKills(t *testing.T) {
	launchtest.NoLeaks(t)
	l := New()
	defer l.Close()
	l.KillGrace = 50 * time.Millisecond
	_, w, err := l.Start(t.Context(), sh(t, "overtime", `trap '' INT; while :; do sleep 0.05; done`, launch.Limits{MaxRuntime: 50 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	if e := launchtest.Wait(t, w); e.Signal != syscall.SIGKILL {
		t.Fatalf("exit = %s, want killed by SIGKILL", e)
	}
}

// A crawl that stops on the overtime SIGINT leaves no timer behind: the
// grace SIGKILL, meant for its process group, must never reach a group
// that reused the id.
func TestOvertimeTimersStopWithTheCrawl(t *testing.T) {
	launchtest.NoLeaks(t)
	l := New()
	defer l.Close()
	l.KillGrace = time.Hour
	h, w, err := l.Start(t.Context(), sh(t, "overtime-stops", `trap 'exit 0' INT; while :; do sleep 0.05; done`, launch.Limits{MaxRuntime: 50 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	c := l.crawls[h.ID]
	l.mu.Unlock()
	if e := launchtest.Wait(t, w); e.Code == nil || *e.Code != 0 {
		t.Fatalf("exit = %s, want 0 (stopped by the overtime SIGINT)", e)
	}
	c.mu.Lock()
	ended, timers := c.ended, len(c.timers)
	c.mu.Unlock()
	if !ended || timers != 0 {
		t.Fatalf("after the crawl's end: ended=%v, %d timers left", ended, timers)
	}
	if err := c.signal(syscall.SIGKILL); err != launch.ErrGone {
		t.Fatalf("signal after the end = %v, want ErrGone", err)
	}
}

// Close stops the watch of a recovered crawl that still runs.
func TestCloseStopsRecoveredWatch(t *testing.T) {
	first := New()
	defer first.Close()
	h, w, err := first.Start(t.Context(), sh(t, "recovered", `while :; do sleep 0.05; done`, launch.Limits{}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		first.Signal(t.Context(), h, syscall.SIGKILL)
		launchtest.Wait(t, w)
	}()
	t.Run("Close", func(t *testing.T) {
		launchtest.NoLeaks(t)
		second := New()
		rw, _, err := second.Recover(t.Context(), h)
		if err != nil {
			t.Fatal(err)
		}
		second.Close()
		select {
		case <-rw.Done():
			t.Fatal("the watch of a running crawl fired at Close")
		default:
		}
	})
}
