package e2e

import (
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit/faultproxy"
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

// crawlSpan is when a crawl's log says it started and last wrote, to the
// second (Scrapy's log time).
func crawlSpan(t *testing.T, path string) (first, last time.Time) {
	t.Helper()
	for _, line := range strings.Split(readFile(path), "\n") {
		if len(line) < 19 {
			continue
		}
		at, err := time.ParseInLocation("2006-01-02 15:04:05", line[:19], time.Local)
		if err != nil {
			continue
		}
		if first.IsZero() {
			first = at
		}
		last = at
	}
	if first.IsZero() {
		t.Fatalf("no dated line in %s:\n%s", path, readFile(path))
	}
	return first, last
}

// TestPostgresPartition: node 1 of two, with lost_jobs = requeue and a
// 4 s lease, is cut from the database (a fault proxy black-holes its
// connections: nothing refused, nothing answered) for twice the lease
// while it runs a crawl. Node 1 stops its crawl before its lease can run
// out, node 2 reaps node 1 and runs the job again: the two copies never
// run at once (node 1's copy logged its last line before node 2's logged
// its first, to the second). When the partition heals, node 1's late
// writes (its crawl's end) are fenced, not recorded over node 2's run;
// node 1 rejoins under a new epoch and takes jobs again.
func TestPostgresPartition(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	pg := pgtest.Cluster(t)
	proxy := faultproxy.Start(t, pg.Addr)
	const lease = 4 * time.Second
	conf := "max_proc = 1\nnode_lease = 4\nlost_jobs = requeue\n"
	// Node 1 starts alone, so that it runs "a".
	n1 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf(conf, pg.URLAt(proxy.Addr), "node1")})
	uploadSample(t, n1, "sample")
	schedule(t, n1, url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"a"}})
	pid1 := int(waitState(t, n1, "a", "running")["pid"].(float64))
	t.Cleanup(func() { syscall.Kill(-pid1, syscall.SIGKILL) })
	n2 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf(conf, pg.URL, "node2")})
	log1 := n1.Path("var", "log", "scrapyd", "sample", "slow", "a.log")
	// Scrapy runs: its log has pages.
	testkit.Eventually(t, waitCrawl, "a's crawl to crawl on node 1", func() bool { return strings.Contains(readFile(log1), "slow page") })

	proxy.BlackHole()
	partitioned := time.Now()
	var a map[string]any
	testkit.Eventually(t, waitCrawl, "a to run again on node 2", func() bool {
		a = jobIn(t, n2, "running", "a")
		return a != nil && a["node_name"] == "node2" && a["pid"] != nil
	})
	pid2 := int(a["pid"].(float64))
	t.Cleanup(func() { syscall.Kill(-pid2, syscall.SIGKILL) })
	log2 := n2.Path("var", "log", "scrapyd", "sample", "slow", "a.log")
	testkit.Eventually(t, waitCrawl, "a's crawl to log on node 2", func() bool { return strings.Contains(readFile(log2), "slow page") })
	if err := syscall.Kill(pid1, 0); err == nil {
		t.Fatalf("node 1's copy of a (pid %d) still runs while node 2's does\n%s", pid1, n1.Logs())
	}
	_, stop1 := crawlSpan(t, log1)
	start2, _ := crawlSpan(t, log2)
	if !stop1.Before(start2) {
		t.Fatalf("node 1's copy of a logged until %v, node 2's from %v: two copies ran at once\nnode 1's copy:\n%s\nnode 2's copy:\n%s\nnode 1:\n%s\nnode 2:\n%s",
			stop1, start2, tail(readFile(log1), 15), tail(readFile(log2), 40), n1.Logs(), n2.Logs())
	}
	t.Logf("node 1's copy of a logged until %v, node 2's from %v", stop1.Format(time.TimeOnly), start2.Format(time.TimeOnly))
	time.Sleep(time.Until(partitioned.Add(2 * lease)))
	proxy.Heal()

	testkit.Eventually(t, waitCrawl, "node 1 to rejoin", func() bool { return logged(n1, "rejoined under a new epoch") })
	// Node 1's crawl ended in the partition: its end, written late, is
	// refused, and a is node 2's.
	testkit.Eventually(t, waitCrawl, "node 1 to drop its crawl's end", func() bool { return logged(n1, "its end not recorded", "job=a") })
	if j := jobIn(t, n1, "running", "a"); j == nil || j["node_name"] != "node2" || int(j["pid"].(float64)) != pid2 {
		t.Fatalf("a after node 1 healed: %v (want running on node 2)\n%s", j, n1.Logs())
	}
	// Node 2's one slot is a's: a job scheduled now runs on node 1.
	schedule(t, n2, url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {"d"}})
	if d := waitState(t, n1, "d", "finished"); d["outcome"] != "finished" || d["node_name"] != "node1" {
		t.Fatalf("d after node 1 rejoined: %v\n%s", d, n1.Logs())
	}
	if fin := cancelled(t, n2, "sample", "a"); fin["outcome"] != "cancelled" || fin["node_name"] != "node2" {
		t.Fatalf("a ended %v", fin)
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
