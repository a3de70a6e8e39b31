package e2e

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// lease is the node_lease of the liveness tests, and lostWithin the
// issue's bound on how soon a dead node's jobs are reaped.
const (
	lease      = 3 * time.Second
	lostWithin = lease + 15*time.Second
)

// killedNode is a two-node cluster in which node 1 runs the slow crawl
// "a", node 2 the slow crawl "c", "b" waits in the queue (both nodes are
// full), and "done" finished on node 1 before; node 1 is then killed with
// its crawl, as a machine that dies.
type killedNode struct {
	n1, n2 *testkit.Daemon
	done   map[string]any // "done" as listed before the kill
	pidA   int
	pidC   int
}

func killNode(t *testing.T, n1conf string) killedNode {
	t.Helper()
	db := pgtest.DB(t)
	egg := testkit.SampleEgg(t)
	conf := "max_proc = 1\nnode_lease = 3\n"
	var k killedNode
	// Node 1 starts alone, so that it runs "done" and "a".
	k.n1 = testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf(conf+n1conf, db, "node1")})
	k.n1.Upload(t, "sample", "1.0", egg)
	schedule(t, k.n1, url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {"done"}})
	if fin := waitState(t, k.n1, "done", "finished"); fin["outcome"] != "finished" {
		t.Fatalf("done ended %v\n%s", fin, k.n1.Logs())
	}
	schedule(t, k.n1, url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"a"}})
	k.pidA = int(waitState(t, k.n1, "a", "running")["pid"].(float64))
	t.Cleanup(func() { syscall.Kill(-k.pidA, syscall.SIGKILL) })
	k.n2 = testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf(conf, db, "node2")})
	k.n2.Upload(t, "sample", "1.0", egg)
	schedule(t, k.n2, url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"c"}})
	k.pidC = int(waitState(t, k.n2, "c", "running")["pid"].(float64))
	t.Cleanup(func() { syscall.Kill(-k.pidC, syscall.SIGKILL) })
	schedule(t, k.n1, url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {"b"}})
	k.done = jobIn(t, k.n2, "finished", "done")
	k.n1.Kill()
	syscall.Kill(-k.pidA, syscall.SIGKILL)
	return k
}

// unchanged fails unless what the kill must not touch is as it was: c runs
// on node 2 with its pid, and done's history entry is the same.
func (k killedNode) unchanged(t *testing.T) {
	t.Helper()
	if c := jobIn(t, k.n2, "running", "c"); c == nil || int(c["pid"].(float64)) != k.pidC || c["node_name"] != "node2" {
		t.Fatalf("c after node 1 died: %v\n%s", c, k.n2.Logs())
	}
	if done := jobIn(t, k.n2, "finished", "done"); shape(t, done) != shape(t, k.done) || done["start_time"] != k.done["start_time"] || done["end_time"] != k.done["end_time"] {
		t.Fatalf("done after node 1 died: %v, before %v", done, k.done)
	}
}

// TestPostgresKilledNodeJobsLost: kill -9 of a node and its crawl: its
// running job ends lost within the lease plus 15 s (node 2 reaps it), the
// job it queued runs on node 2, and nothing else changes.
func TestPostgresKilledNodeJobsLost(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	k := killNode(t, "")
	var a map[string]any
	testkit.Eventually(t, lostWithin, "node 1's running job to be recorded lost", func() bool {
		a = jobIn(t, k.n2, "finished", "a")
		return a != nil
	})
	if a["outcome"] != "lost" || a["node_name"] != "node1" {
		t.Fatalf("a after node 1 died: %v\n%s", a, k.n2.Logs())
	}
	if !strings.Contains(k.n2.Logs(), "declared a node dead") {
		t.Errorf("node 2 does not log the reap:\n%s", k.n2.Logs())
	}
	k.unchanged(t)
	if b := jobIn(t, k.n2, "pending", "b"); b == nil {
		t.Fatal("b left the queue while node 2 was full")
	}
	cancelled(t, k.n2, "sample", "c")
	b := waitState(t, k.n2, "b", "finished")
	if b["outcome"] != "finished" || b["node_name"] != "node2" {
		t.Fatalf("b ended %v\n%s", b, k.n2.Logs())
	}
}

// TestPostgresKilledNodeJobsRequeued: the same with lost_jobs = requeue on
// the node that dies: its running job is pending again, ahead of the job
// queued after it, and runs on node 2.
func TestPostgresKilledNodeJobsRequeued(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	k := killNode(t, "lost_jobs = requeue\n")
	testkit.Eventually(t, lostWithin, "node 1's running job to be queued again", func() bool {
		return jobIn(t, k.n2, "pending", "a") != nil
	})
	var pending []string
	for _, e := range k.n2.Get(t, "listjobs.json", nil)["pending"].([]any) {
		pending = append(pending, e.(map[string]any)["id"].(string))
	}
	if strings.Join(pending, ",") != "a,b" {
		t.Fatalf("pending = %v, want a,b (original order)", pending)
	}
	if fin := jobIn(t, k.n2, "finished", "a"); fin != nil {
		t.Fatalf("a is also finished: %v", fin)
	}
	k.unchanged(t)
	cancelled(t, k.n2, "sample", "c")
	a := waitState(t, k.n2, "a", "running")
	pid := int(a["pid"].(float64))
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	if a["node_name"] != "node2" || pid == k.pidA {
		t.Fatalf("a runs again as %v", a)
	}
	if fin := cancelled(t, k.n2, "sample", "a"); fin["outcome"] != "cancelled" {
		t.Fatalf("a ended %v", fin)
	}
	if b := waitState(t, k.n2, "b", "finished"); b["outcome"] != "finished" || b["node_name"] != "node2" {
		t.Fatalf("b ended %v\n%s", b, k.n2.Logs())
	}
}

// TestPostgresRestartAdoptsNothingReaped: a node killed (its crawl left
// running) and restarted at once, then stopped and started again, adopts
// its crawl each time; the other node reaps nothing, even after a lease
// and more than the reaping margin. (The lease is longer than the other
// tests': a restart on a loaded machine must fit in it.)
func TestPostgresRestartAdoptsNothingReaped(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	db := pgtest.DB(t)
	const lease = 8 * time.Second
	conf := "max_proc = 1\nnode_lease = 8\n"
	n1 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf(conf, db, "node1")})
	n1.Upload(t, "sample", "1.0", testkit.SampleEgg(t))
	schedule(t, n1, url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"a"}})
	a := waitState(t, n1, "a", "running")
	pid := int(a["pid"].(float64))
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	// Node 2 joins once the crawl runs on node 1: with both up, whichever
	// claims first runs it (on a loaded machine often node 2, which then
	// has nothing of node 1's to adopt).
	n2 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf(conf, db, "node2")})
	for _, kill := range []bool{true, false} {
		if kill {
			n1.Kill()
		} else {
			n1.Stop()
		}
		n1 = testkit.StartDaemon(t, testkit.Options{Root: n1.Root, Conf: testkit.NodeConf(conf, db, "node1")})
		// Long enough for a reap, were there one: the lease, its margin
		// (a tenth and 1 s) and a reaper's tick (2 s).
		time.Sleep(lease + 4*time.Second)
		got := jobIn(t, n2, "running", "a")
		if got == nil || int(got["pid"].(float64)) != pid || got["start_time"] != a["start_time"] {
			t.Fatalf("a after node 1 restarted: %v (was %v)\n%s\n--- node 2 ---\n%s", got, a, n1.Logs(), n2.Logs())
		}
		if !strings.Contains(n1.Logs(), "adopted running crawl") {
			t.Fatalf("node 1 did not adopt its crawl:\n%s", n1.Logs())
		}
	}
	if strings.Contains(n2.Logs(), "declared a node dead") {
		t.Fatalf("node 2 reaped:\n%s", n2.Logs())
	}
	if fin := cancelled(t, n1, "sample", "a"); fin["outcome"] != "cancelled" {
		t.Fatalf("adopted crawl ended %v", fin)
	}
}

// TestPostgresDuplicateNodeNameRefused: a second daemon with the
// node_name of a live one exits at start with one clear line; the first
// goes on.
func TestPostgresDuplicateNodeNameRefused(t *testing.T) {
	t.Parallel()
	db := pgtest.DB(t)
	n1 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf("", db, "node1")})
	root := testkit.TraversableTempDir(t)
	confD := filepath.Join(root, "etc", "scrapyd", "conf.d")
	if err := os.MkdirAll(confD, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := "[scrapyd]\nhttp_port = 0\n" + testkit.NodeConf("", db, "node1")
	if err := os.WriteFile(filepath.Join(confD, "50-test.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(testkit.Binaries(t), "scrapyd"), "--root", root)
	cmd.Env = append(os.Environ(), "HOME="+root)
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("the second daemon did not exit with an error (%v):\n%s", err, out)
	}
	if !strings.Contains(string(out), `scrapyd: node_name "node1" is in use by another running daemon`) {
		t.Fatalf("the second daemon said:\n%s", out)
	}
	if r := n1.Get(t, "daemonstatus.json", nil); r["status"] != "ok" {
		t.Fatalf("the first daemon: %v", r)
	}
}
