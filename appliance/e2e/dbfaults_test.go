package e2e

import (
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestPostgresRestart: the database stops (a clean shutdown, or a crash)
// under a cluster of two nodes, with a crawl on node 1 ending during the
// outage and one crawl on each node outliving it; the outage lasts longer
// than the nodes' lease. During the outage schedule.json fails with
// Scrapyd's error envelope saying the database is unavailable, and the
// daemon stays up; after it the crawl's end is recorded (once: the job
// did not run again), the refused job was never half-written, nothing is
// reaped (each long crawl is still its node's, with its pid), and the
// nodes schedule and run jobs again. Each mode on its own private
// cluster: the shared one is never restarted.
func TestPostgresRestart(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	for _, mode := range []pgtest.Mode{pgtest.Fast, pgtest.Immediate} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			pg := pgtest.Cluster(t)
			conf := "node_lease = 3\n"
			// Node 1 starts alone, so that it runs "long" and "short".
			d := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf(conf+"max_proc = 2", pg.URL, "node1")})
			uploadSample(t, d, "sample")
			long := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"long"}})
			pid := int(waitState(t, d, long, "running")["pid"].(float64))
			t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
			// About 6 s of pages once Scrapy runs: it ends in the outage.
			short := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"short"}, "pages": {"30"}})
			waitState(t, d, short, "running")
			n2 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf(conf+"max_proc = 1", pg.URL, "node2")})
			schedule(t, n2, url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"long2"}})
			long2 := waitState(t, n2, "long2", "running")
			pid2 := int(long2["pid"].(float64))
			t.Cleanup(func() { syscall.Kill(-pid2, syscall.SIGKILL) })
			if long2["node_name"] != "node2" {
				t.Fatalf("long2 runs as %v, not on node 2", long2)
			}

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
				return logged(d, "cannot record the crawl's end", "job="+short)
			})
			// Both leases have run out by the nodes' clocks.
			testkit.Eventually(t, waitCrawl, "both nodes to see their lease run out", func() bool {
				return logged(d, "lease is about to run out") && logged(n2, "lease is about to run out")
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
			// Nothing is reaped, even twice the lease after both renewed.
			testkit.Eventually(t, waitCrawl, "both nodes to renew their lease", func() bool {
				return logged(d, "lease is renewed again") && logged(n2, "lease is renewed again")
			})
			time.Sleep(2 * 3 * time.Second)
			for _, n := range []*testkit.Daemon{d, n2} {
				if logged(n, "declared a node dead") || logged(n, "was declared dead") {
					t.Fatalf("a node was reaped after the database restarted:\n%s", n.Logs())
				}
			}
			for _, c := range []struct {
				id, node string
				pid      int
			}{{long, "node1", pid}, {"long2", "node2", pid2}} {
				if j := jobIn(t, d, "running", c.id); j == nil || int(j["pid"].(float64)) != c.pid || j["node_name"] != c.node {
					t.Fatalf("%s, which outlived the outage on %s: %v\n%s", c.id, c.node, j, d.Logs())
				}
			}
			again := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {"refused"}})
			if fin := waitState(t, d, again, "finished"); fin["outcome"] != "finished" {
				t.Fatalf("a job scheduled after the outage: %v\n%s", fin, d.Logs())
			}
			if fin := cancelled(t, d, "sample", long); fin["outcome"] != "cancelled" {
				t.Fatalf("the crawl that outlived the outage ended %v", fin)
			}
			if fin := cancelled(t, n2, "sample", "long2"); fin["outcome"] != "cancelled" {
				t.Fatalf("the crawl that outlived the outage on node 2 ended %v", fin)
			}
		})
	}
}

// logged: one line of the daemon's log has every one of parts.
func logged(d *testkit.Daemon, parts ...string) bool {
	for _, line := range strings.Split(d.Logs(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
