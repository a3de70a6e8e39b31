package e2e

import (
	"fmt"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestKillAndRestartLosesNothing: kill -9 the daemon with jobs pending,
// running and finished; the next daemon has every pending job in order, the
// finished history intact, and the running crawl adopted (it kept running)
// and then recorded when it ends. A crawl that ended while the daemon was
// down is recorded as finished after the restart.
func TestKillAndRestartLosesNothing(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 2\npoll_interval = 60"})
	d.Upload(t, "sample", "1.0", testkit.SampleEgg(t))

	done := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {"done-before"}})
	before := waitState(t, d, done, "finished")

	long := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"long"}})
	short := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"slow"}, "pages": {"5"}, "jobid": {"short"}})
	runLong := waitState(t, d, long, "running")
	shortPID := int(waitState(t, d, short, "running")["pid"].(float64))
	pid := int(runLong["pid"].(float64))
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	for _, p := range []struct{ id, prio string }{{"p1", "0"}, {"p2", "5"}, {"p3", "0"}, {"p4", "-1"}} {
		schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {p.id}, "priority": {p.prio}})
	}

	d.Kill()
	// The short crawl ends while no daemon runs.
	testkit.Eventually(t, waitCrawl, "the short crawl to end without its daemon", func() bool { return ended(shortPID) })
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the running crawl died with its daemon: %v", err)
	}

	// Restart with no free slot (the long crawl holds one, max_proc=1), so
	// that the queue stays as it was and can be compared.
	d = testkit.StartDaemon(t, testkit.Options{Root: d.Root, Conf: "max_proc = 1\npoll_interval = 60"})
	l := d.Get(t, "listjobs.json", nil)
	var pending []string
	for _, e := range l["pending"].([]any) {
		pending = append(pending, e.(map[string]any)["id"].(string))
	}
	if strings.Join(pending, ",") != "p2,p1,p3,p4" {
		t.Fatalf("pending after restart = %v, want p2,p1,p3,p4", pending)
	}
	adopted := jobIn(t, d, "running", long)
	if adopted == nil || adopted["pid"] != runLong["pid"] || adopted["start_time"] != runLong["start_time"] {
		t.Fatalf("running crawl not adopted as it was: %v, before %v", adopted, runLong)
	}
	kept := jobIn(t, d, "finished", done)
	if kept == nil || kept["start_time"] != before["start_time"] || kept["end_time"] != before["end_time"] || kept["outcome"] != "finished" {
		t.Fatalf("finished history changed: %v, before %v", kept, before)
	}
	gone := jobIn(t, d, "finished", short)
	if gone == nil || gone["outcome"] != "finished" || gone["exit_code"] != nil {
		t.Fatalf("crawl that ended while the daemon was down: %v\n%s", gone, d.Logs())
	}

	// The adopted crawl is still ours: cancel it, its end is recorded, and
	// the queue drains.
	if r := d.Post(t, "cancel.json", url.Values{"project": {"sample"}, "job": {long}}); r["prevstate"] != "running" {
		t.Fatalf("cancel adopted crawl: %v", r)
	}
	if fin := waitState(t, d, long, "finished"); fin["outcome"] != "cancelled" {
		t.Fatalf("adopted crawl ended %v", fin)
	}
	for _, id := range []string{"p1", "p2", "p3", "p4"} {
		waitState(t, d, id, "finished")
	}
}

// ended reports whether a process has exited (gone, or a zombie nobody has
// reaped: this sandbox's PID 1 does not reap orphans).
func ended(pid int) bool {
	stat := readFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := strings.LastIndexByte(stat, ')')
	return i < 0 || strings.HasPrefix(stat[i+1:], " Z")
}
