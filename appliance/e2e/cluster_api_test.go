package e2e

import (
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// twoBusyNodes starts two nodes with one slot each on a fresh database and
// a slow crawl on each: "on1" on node 1 (started before node 2 exists),
// then "on2", which only node 2 has a slot for. It returns the nodes and
// the crawls' pids; the crawls are killed when the test ends. Extra is
// more configuration for both nodes.
func twoBusyNodes(t *testing.T, extra string, args2 url.Values) (n1, n2 *testkit.Daemon) {
	t.Helper()
	db := pgtest.DB(t)
	egg := testkit.SampleEgg(t)
	conf := "max_proc = 1\npoll_interval = 60\ndatabase = " + db + "\n" + extra + "\nnode_name = "
	n1 = testkit.StartDaemon(t, testkit.Options{Conf: conf + "node1"})
	n1.Upload(t, "sample", "1.0", egg)
	schedule(t, n1, url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"on1"}})
	killAtEnd(t, waitState(t, n1, "on1", "running"))
	n2 = testkit.StartDaemon(t, testkit.Options{Conf: conf + "node2"})
	n2.Upload(t, "sample", "1.0", egg)
	form := url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"on2"}}
	for k, v := range args2 {
		form[k] = v
	}
	schedule(t, n1, form)
	killAtEnd(t, waitState(t, n2, "on2", "running"))
	return n1, n2
}

// killAtEnd kills a running entry's crawl (its process group) when the
// test ends, whatever became of it.
func killAtEnd(t *testing.T, running map[string]any) {
	pid := int(running["pid"].(float64))
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
}

// entryIDs lists a listjobs.json section's job ids.
func entryIDs(l map[string]any, state string) []string {
	var out []string
	for _, e := range l[state].([]any) {
		out = append(out, e.(map[string]any)["id"].(string))
	}
	return out
}

// TestClusterListJobsNodes: in cluster mode every node lists the whole
// cluster, each running and finished entry naming the node that runs or
// ran it (pending ones none), ?node= narrows the listing to one node's
// crawls, the answer's own node_name is the answering node, and
// daemonstatus.json counts the cluster with exactly Scrapyd's keys.
func TestClusterListJobsNodes(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	n1, n2 := twoBusyNodes(t, "", nil)
	schedule(t, n2, url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {"waits"}})
	for _, d := range []*testkit.Daemon{n1, n2} {
		l := d.Get(t, "listjobs.json", nil)
		if want := map[*testkit.Daemon]string{n1: "node1", n2: "node2"}[d]; l["node_name"] != want {
			t.Errorf("listjobs.json answered by %s names %v", want, l["node_name"])
		}
		nodes := map[string]any{}
		for _, e := range l["running"].([]any) {
			m := e.(map[string]any)
			nodes[m["id"].(string)] = m["node_name"]
		}
		if nodes["on1"] != "node1" || nodes["on2"] != "node2" || len(nodes) != 2 {
			t.Errorf("running entries' nodes from %s: %v", l["node_name"], nodes)
		}
		pending := l["pending"].([]any)
		if len(pending) != 1 {
			t.Fatalf("pending from %s: %v", l["node_name"], pending)
		}
		if _, ok := pending[0].(map[string]any)["node_name"]; ok {
			t.Errorf("a pending entry names a node: %v", pending[0])
		}
		if st := d.Get(t, "daemonstatus.json", nil); st["pending"] != 1.0 || st["running"] != 2.0 || len(st) != 5 {
			t.Errorf("daemonstatus.json from %s: %v", l["node_name"], st)
		}
	}
	for node, want := range map[string]string{"node1": "on1", "node2": "on2", "node3": ""} {
		l := n1.Get(t, "listjobs.json", url.Values{"node": {node}})
		if got := strings.Join(entryIDs(l, "running"), ","); got != want || len(entryIDs(l, "pending")) != 0 {
			t.Errorf("listjobs.json?node=%s: running %q, pending %v; want running %q and no pending", node, got, l["pending"], want)
		}
		if !slices.Equal(keys(l), []string{"finished", "node_name", "pending", "running", "status"}) {
			t.Errorf("listjobs.json?node=%s keys: %v", node, keys(l))
		}
	}
	// The crawl node 2 is named for runs there: its log is in node 2's logs_dir.
	testkit.Eventually(t, waitCrawl, "node 2's crawl to write its log", func() bool {
		_, err := os.Stat(n2.Path("var", "log", "scrapyd", "sample", "slow", "on2.log"))
		return err == nil
	})
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// waitLog waits until a crawl's log holds text.
func waitLog(t *testing.T, d *testkit.Daemon, spider, id, text string) {
	t.Helper()
	path := d.Path("var", "log", "scrapyd", "sample", spider, id+".log")
	testkit.Eventually(t, waitCrawl, "the log of "+id+" to say "+strconv.Quote(text), func() bool {
		raw, _ := os.ReadFile(path)
		return strings.Contains(string(raw), text)
	})
}

// TestClusterCancelAcrossNodes: cancel.json on one node reaches a crawl on
// another through the database: the first cancel stops it gracefully
// (Scrapy's own shutdown, outcome cancelled); a crawl that hangs in its
// graceful shutdown is killed by a second cancel, sent to the other node
// too. Each answer is Scrapyd's, prevstate "running".
func TestClusterCancelAcrossNodes(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	// on2 hangs for ten minutes while closing: only a kill ends it.
	n1, n2 := twoBusyNodes(t, "", url.Values{"linger": {"600"}})
	cancel := func(d *testkit.Daemon, id string) {
		t.Helper()
		r := d.Post(t, "cancel.json", url.Values{"project": {"sample"}, "job": {id}})
		if r["status"] != "ok" || r["prevstate"] != "running" || len(r) != 3 {
			t.Fatalf("cancel.json for %s: %v", id, r)
		}
	}
	// Graceful: node 2 cancels node 1's crawl once its engine runs (a
	// signal sent before Scrapy's engine starts can be missed).
	waitLog(t, n1, "slow", "on1", "slow page")
	cancel(n2, "on1")
	fin := waitState(t, n2, "on1", "finished")
	if fin["outcome"] != "cancelled" || fin["exit_code"] == 137.0 || fin["node_name"] != "node1" {
		t.Fatalf("on1 ended %v\n%s", fin, n1.Logs())
	}
	waitLog(t, n1, "slow", "on1", "shutting down gracefully")

	// Forced: node 1 cancels node 2's stubborn crawl; Scrapy starts its
	// graceful shutdown and hangs in it; the second cancel kills it.
	waitLog(t, n2, "slow", "on2", "slow page")
	cancel(n1, "on2")
	waitLog(t, n2, "slow", "on2", "shutting down gracefully")
	if jobIn(t, n1, "running", "on2") == nil {
		t.Fatalf("on2 ended at its first cancel: %v", jobIn(t, n1, "finished", "on2"))
	}
	cancel(n1, "on2")
	fin = waitState(t, n1, "on2", "finished")
	if fin["outcome"] != "cancelled" || fin["exit_code"] != 137.0 {
		t.Fatalf("on2 ended %v, want cancelled by SIGKILL (exit_code 137)\n%s", fin, n2.Logs())
	}
	if !strings.Contains(n2.Logs(), "as another node asked") {
		t.Errorf("node 2's log does not say another node asked for the cancels:\n%s", n2.Logs())
	}
}
