package e2e

import (
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestPostgresRestart: the database stops (a clean shutdown, or a crash)
// under a node with one crawl ending during the outage and one outliving
// it. During the outage schedule.json fails with Scrapyd's error envelope
// saying the database is unavailable, and the daemon stays up; after it
// the crawl's end is recorded, the refused job was never half-written,
// the long crawl is still the node's (nothing was reaped) and the node
// schedules and runs jobs again. Each mode on its own private cluster:
// the shared one is never restarted.
func TestPostgresRestart(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	for _, mode := range []pgtest.Mode{pgtest.Fast, pgtest.Immediate} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			pg := pgtest.Cluster(t)
			d := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 2\nnode_name = node1\ndatabase = " + pg.URL})
			uploadSample(t, d, "sample")
			long := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"long"}})
			pid := int(waitState(t, d, long, "running")["pid"].(float64))
			t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
			// About 6 s of pages once Scrapy runs: it ends in the outage.
			short := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"short"}, "pages": {"30"}})
			waitState(t, d, short, "running")

			pg.Down(t, mode)
			shortLog := d.Path("var", "log", "scrapyd", "sample", "slow", short+".log")
			if strings.Contains(readFile(shortLog), "Spider closed") {
				t.Fatal("the short crawl ended before the database stopped: the test proves nothing")
			}
			r := d.Post(t, "schedule.json", url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {"refused"}})
			if r["status"] != "error" || !strings.Contains(r["message"].(string), "database is unavailable") {
				t.Fatalf("schedule.json while the database is down: %v", r)
			}
			t.Logf("schedule.json while the database is down: %v", r["message"])
			if r := d.Get(t, "daemonstatus.json", nil); r["status"] != "ok" {
				t.Fatalf("daemonstatus.json while the database is down: %v", r)
			}
			// The crawl ends, and its node cannot record it yet.
			testkit.Eventually(t, waitCrawl, "the short crawl to end in the outage", func() bool {
				for _, line := range strings.Split(d.Logs(), "\n") {
					if strings.Contains(line, "cannot record the crawl's end") && strings.Contains(line, "job="+short) {
						return true
					}
				}
				return false
			})

			pg.Up(t)
			if fin := waitState(t, d, short, "finished"); fin["outcome"] != "finished" {
				t.Fatalf("the crawl that ended in the outage: %v\n%s", fin, d.Logs())
			}
			if n := strings.Count(readFile(shortLog), "Spider opened"); n != 1 {
				t.Fatalf("the crawl that ended in the outage ran %d times:\n%s", n, d.Logs())
			}
			for _, state := range []string{"pending", "running", "finished"} {
				if j := jobIn(t, d, state, "refused"); j != nil {
					t.Fatalf("the refused schedule left a %s job: %v", state, j)
				}
			}
			if j := jobIn(t, d, "running", long); j == nil || int(j["pid"].(float64)) != pid {
				t.Fatalf("the crawl that outlived the outage is no longer the node's: %v\n%s", j, d.Logs())
			}
			again := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {"refused"}})
			if fin := waitState(t, d, again, "finished"); fin["outcome"] != "finished" {
				t.Fatalf("a job scheduled after the outage: %v\n%s", fin, d.Logs())
			}
			if fin := cancelled(t, d, "sample", long); fin["outcome"] != "cancelled" {
				t.Fatalf("the crawl that outlived the outage ended %v", fin)
			}
		})
	}
}
