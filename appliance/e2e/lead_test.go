package e2e

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestPostgresLeadFailover: the node that makes a recurring schedule's
// runs (it holds the lead lock) is killed (kill -9); the other node takes
// the lead over and the schedule keeps making runs, each due time once.
func TestPostgresLeadFailover(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	db := pgtest.DB(t)
	n1 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf("", db, "node1")})
	testkit.Eventually(t, waitCrawl, "node 1 to take the lead", func() bool { return strings.Contains(n1.Logs(), "this node took the lead lock") })
	n2 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf("", db, "node2")})
	testkit.Eventually(t, waitCrawl, "node 2 to find the lead taken", func() bool { return strings.Contains(n2.Logs(), "it holds the lead lock") })
	uploadSample(t, n1, "sample")
	id := addSchedule(t, n2, url.Values{"project": {"sample"}, "spider": {"params"}, "every": {"2s"}, "overlap": {"allow"}})
	// A schedule added through node 2 reaches the lead at once (NOTIFY).
	testkit.Eventually(t, waitCrawl, "two runs made by node 1", func() bool { return len(scheduleRuns(t, n2, "sample", id)) >= 2 })
	if strings.Contains(n2.Logs(), "schedule made a run") {
		t.Fatalf("node 2 made runs while node 1 led:\n%s", n2.Logs())
	}
	n1.Kill()
	before := len(scheduleRuns(t, n2, "sample", id))
	testkit.Eventually(t, waitCrawl, "three runs made by node 2 after node 1 died", func() bool {
		return len(scheduleRuns(t, n2, "sample", id)) >= before+3
	})
	n2.Post(t, "delschedule.json", url.Values{"project": {"sample"}, "schedule": {id}})
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
