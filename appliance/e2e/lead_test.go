package e2e

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestPostgresLeadFailover: the node that makes a recurring schedule's
// runs and delivers webhooks (it holds the lead lock) is killed (kill -9);
// the other node takes the lead over: the schedule keeps making runs, each
// due time once, and the webhook receiver gets every event, in order.
func TestPostgresLeadFailover(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	db := pgtest.DB(t)
	r := newHookReceiver(t, "s3cret")
	conf := func(node string) string {
		return testkit.NodeConf("", db, node) + "[webhook:test]\nurl = " + r.srv.URL + "\nsecret = s3cret\n"
	}
	n1 := testkit.StartDaemon(t, testkit.Options{Conf: conf("node1")})
	testkit.Eventually(t, waitCrawl, "node 1 to take the lead", func() bool { return strings.Contains(n1.Logs(), "this node took the lead lock") })
	n2 := testkit.StartDaemon(t, testkit.Options{Conf: conf("node2")})
	testkit.Eventually(t, waitCrawl, "node 2 to find the lead taken", func() bool { return strings.Contains(n2.Logs(), "it holds the lead lock") })
	uploadSample(t, n1, "sample")
	id := addSchedule(t, n2, url.Values{"project": {"sample"}, "spider": {"params"}, "every": {"2s"}, "overlap": {"allow"}})
	// A schedule added through node 2 reaches the lead at once (NOTIFY).
	testkit.Eventually(t, waitCrawl, "two runs made by node 1", func() bool { return len(scheduleRuns(t, n2, "sample", id)) >= 2 })
	if strings.Contains(n2.Logs(), "schedule made a run") {
		t.Fatalf("node 2 made runs while node 1 led:\n%s", n2.Logs())
	}
	// Node 2 lists the schedule as node 1 keeps it: its runs announce it.
	testkit.Eventually(t, waitCrawl, "node 2 to list the last run node 1 made", func() bool {
		l, _ := n2.Get(t, "listschedules.json", url.Values{"project": {"sample"}})["schedules"].([]any)
		if len(l) != 1 {
			return false
		}
		last, _ := l[0].(map[string]any)["last_job"].(string)
		for _, r := range scheduleRuns(t, n2, "sample", id) {
			if r.id == last {
				return true
			}
		}
		return false
	})
	n1.Kill()
	before := len(scheduleRuns(t, n2, "sample", id))
	testkit.Eventually(t, waitCrawl, "three runs made by node 2 after node 1 died", func() bool {
		return len(scheduleRuns(t, n2, "sample", id)) >= before+3
	})
	n2.Post(t, "delschedule.json", url.Values{"project": {"sample"}, "schedule": {id}})
	runs := scheduleRuns(t, n2, "sample", id)
	last := runs[len(runs)-1].id
	testkit.Eventually(t, waitCrawl, "the last run's scheduled event at the receiver", func() bool {
		steps, _ := describeEvents(r.got())
		return slices.Contains(steps, "scheduled "+last)
	})
	steps, ids := describeEvents(r.got())
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			t.Fatalf("the receiver got events %v: not every event once, in order (%q)", ids, steps)
		}
	}
	if !strings.Contains(n2.Logs(), "this node took the lead lock") || !strings.Contains(n2.Logs(), "schedule made a run") {
		t.Fatalf("node 2 did not take the lead over:\n%s", n2.Logs())
	}
	seen := map[time.Time]string{}
	for _, r := range scheduleRuns(t, n2, "sample", id) {
		if other, dup := seen[r.due]; dup {
			t.Fatalf("runs %s and %s were both made for %v", other, r.id, r.due)
		}
		seen[r.due] = r.id
	}
}

// TestPostgresMetricsPerNode: two nodes each run a crawl; each node's
// /metrics counts its own crawl's end, not the other's, though both
// follow the cluster's one event feed (dashboards sum the nodes).
func TestPostgresMetricsPerNode(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	ns := testkit.StartCluster(t, 2, pgtest.DB(t), testkit.Options{Conf: "max_proc = 1\n"})
	uploadSample(t, ns[0], "sample")
	// hold takes one node's only slot, so b runs on the other.
	hold := schedule(t, ns[0], url.Values{"project": {"sample"}, "spider": {"slow"}, "pages": {"20"}})
	node := map[string]*testkit.Daemon{}
	for _, n := range ns {
		node[testkit.NodeName(len(node))] = n
	}
	holder := waitState(t, ns[0], hold, "running")["node_name"].(string)
	b := schedule(t, ns[1], url.Values{"project": {"sample"}, "spider": {"params"}})
	other := waitState(t, ns[0], b, "running")["node_name"].(string)
	if holder == other {
		t.Fatalf("both crawls ran on %s", holder)
	}
	for id, want := range map[string]string{hold: holder, b: other} {
		if fin := waitState(t, ns[0], id, "finished"); fin["outcome"] != "finished" || fin["node_name"] != want {
			t.Fatalf("%s ended %v", id, fin)
		}
	}
	ends := func(n, spider string) float64 {
		fams, _ := scrapeMetrics(t, node[n], "", "")
		v, _ := sample(fams, "scrapyd_jobs_finished_total", "project", "sample", "spider", spider, "outcome", "finished")
		return v
	}
	testkit.Eventually(t, waitCrawl, "each node to count its crawl's end", func() bool {
		return ends(holder, "slow") == 1 && ends(other, "params") == 1
	})
	// The other node's end, in the same feed, would be counted by now.
	time.Sleep(2 * time.Second)
	if a, b := ends(holder, "params"), ends(other, "slow"); a != 0 || b != 0 {
		t.Fatalf("a node counts the other's crawl: %s counts %v ends of params (run on %s), %s %v of slow (run on %s)", holder, a, other, other, b, holder)
	}
	if a, b := ends(holder, "slow"), ends(other, "params"); a != 1 || b != 1 {
		t.Fatalf("each node's own crawl: %s counts %v, %s %v; want 1 each", holder, a, other, b)
	}
}

// TestPostgresRetryOfARunOnAnotherNode: a schedule's run fails on the node
// that does not lead (the lead's only slot is busy); the lead hears of the
// failure and makes the retry, once.
func TestPostgresRetryOfARunOnAnotherNode(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	db := pgtest.DB(t)
	n1 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf("max_proc = 1", db, "node1")})
	testkit.Eventually(t, waitCrawl, "node 1 to take the lead", func() bool { return strings.Contains(n1.Logs(), "this node took the lead lock") })
	uploadSample(t, n1, "sample")
	busy := schedule(t, n1, url.Values{"project": {"sample"}, "spider": {"slow"}, "pages": {"300"}})
	pid := int(waitState(t, n1, busy, "running")["pid"].(float64))
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	n2 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf("max_proc = 1", db, "node2")})
	form := func(every string) url.Values {
		return url.Values{"project": {"sample"}, "spider": {"failing"}, "every": {every}, "retries": {"1"}, "retry_delay": {"1s"}}
	}
	id := addSchedule(t, n2, form("1h"))
	// The first run is an hour away: a short period makes it, then the
	// hour again.
	f := form("3s")
	f.Set("schedule", id)
	addSchedule(t, n2, f)
	testkit.Eventually(t, waitCrawl, "a first run", func() bool { return len(scheduleRuns(t, n2, "sample", id)) >= 1 })
	f.Set("every", "1h")
	addSchedule(t, n2, f)
	var rs []run
	testkit.Eventually(t, waitCrawl, "the run and its retry, failed", func() bool {
		rs = scheduleRuns(t, n2, "sample", id)
		return len(rs) >= 2 && rs[0].outcome == "failed" && rs[1].outcome == "failed"
	})
	time.Sleep(3 * time.Second) // a second retry would come within the doubled delay (2 s)
	rs = scheduleRuns(t, n2, "sample", id)
	var attempts []string
	for _, r := range rs {
		attempts = append(attempts, fmt.Sprintf("%d:%s:%s", r.attempt, r.outcome, r.node))
	}
	if got := strings.Join(attempts, " "); !strings.HasPrefix(got, "0:failed:node2 1:failed:") || len(rs) != 2 {
		t.Fatalf("runs %s, want the run (failed on node 2) and one retry", got)
	}
}
