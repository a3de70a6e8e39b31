package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

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
	n1 = withCreds(testkit.StartDaemon(t, testkit.Options{Conf: conf + "node1"}), extra)
	n1.Upload(t, "sample", "1.0", egg)
	schedule(t, n1, url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"on1"}})
	killAtEnd(t, waitState(t, n1, "on1", "running"))
	n2 = withCreds(testkit.StartDaemon(t, testkit.Options{Conf: conf + "node2"}), extra)
	n2.Upload(t, "sample", "1.0", egg)
	form := url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"on2"}}
	for k, v := range args2 {
		form[k] = v
	}
	schedule(t, n1, form)
	killAtEnd(t, waitState(t, n2, "on2", "running"))
	return n1, n2
}

// withCreds makes d's calls carry the credentials when extra sets them
// (username = u, password = p).
func withCreds(d *testkit.Daemon, extra string) *testkit.Daemon {
	if strings.Contains(extra, "username = u") {
		d.URL = strings.Replace(d.URL, "http://", "http://u:p@", 1)
	}
	return d
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
// crawls, the answer's own node_name is the answering node,
// daemonstatus.json counts the cluster with exactly Scrapyd's keys, and
// diagnostics.json details each node.
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
	// diagnostics.json details each node (daemonstatus.json keeps
	// Scrapyd's keys, with the cluster's totals).
	for _, d := range []*testkit.Daemon{n1, n2} {
		diag := d.Get(t, "diagnostics.json", nil)
		nodes, _ := diag["nodes"].([]any)
		if len(nodes) != 2 {
			t.Fatalf("diagnostics.json nodes: %v", diag)
		}
		for i, e := range nodes {
			n := e.(map[string]any)
			if n["name"] != []string{"node1", "node2"}[i] || n["slots"] != 1.0 || n["running"] != 1.0 || n["alive"] != true ||
				n["version"] != diag["version"] || n["lease"] != 30.0 || n["lease_until"] == nil || !strings.HasPrefix(n["advertise_url"].(string), "http://127.0.0.1:") {
				t.Errorf("diagnostics.json from %s, node %d: %v", diag["node_name"], i+1, n)
			}
		}
	}
	// The job page names the node too.
	if _, _, page := fetch(t, "GET", n1.URL+"/jobs/sample/on2", nil, ""); !strings.Contains(page, "<dt>Node</dt><dd>node2</dd>") {
		t.Errorf("node 1's page of a job on node 2 does not name node 2:\n%s", page)
	}
	if l := n1.Get(t, "listjobs.json", url.Values{"node": {"node3"}}); l["status"] != "error" || l["message"] != "node 'node3' not found" {
		t.Errorf("listjobs.json?node=node3: %v", l)
	}
	for node, want := range map[string]string{"node1": "on1", "node2": "on2"} {
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

// fetch sends a request and returns its status, headers and body.
func fetch(t *testing.T, method, u string, header http.Header, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(data)
}

// clusterSecret reads the cluster's secret from the database, as a node
// does.
func clusterSecret(t *testing.T, db string) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var secret string
	if err := conn.QueryRow(context.Background(), `SELECT secret FROM cluster_secret`).Scan(&secret); err != nil {
		t.Fatal(err)
	}
	return secret
}

// TestClusterForwardsItemsAndWebService: a crawl's items file and its web
// service, asked of node 1 for a crawl on node 2, answer as node 2 does
// (and node 1's listjobs.json links the items file once the crawl ended):
// node 1 forwards them with the cluster's secret instead of the user's
// credentials. Node 2 refuses a wrong secret whatever credentials come
// with it, asks a request without one for credentials, and serves the
// right one without. A node that cannot be reached gets a clear error.
func TestClusterForwardsItemsAndWebService(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	n1, n2 := twoBusyNodes(t, "username = u\npassword = p", nil)
	db := dbOf(t, n1)
	waitLog(t, n2, "slow", "on2", "slow page 3")
	// A JSON-RPC write through node 1 is read back from node 2: the call
	// reached the crawl on node 2.
	rpc := func(d *testkit.Daemon, path, call string) map[string]any {
		t.Helper()
		code, _, body := fetch(t, "POST", d.URL+"/webservice/on2/"+path, nil, call)
		var out map[string]any
		if err := json.Unmarshal([]byte(body), &out); err != nil || code != http.StatusOK {
			t.Fatalf("%s %s: HTTP %d %s", path, call, code, body)
		}
		return out
	}
	if r := rpc(n1, "stats", `{"jsonrpc": "2.0", "method": "set_value", "params": ["cluster_probe", 42], "id": 1}`); r["error"] != nil {
		t.Fatalf("set_value through node 1: %v", r)
	}
	if r := rpc(n2, "stats", `{"jsonrpc": "2.0", "method": "get_value", "params": ["cluster_probe"], "id": 2}`); r["result"] != 42.0 {
		t.Fatalf("get_value on node 2 after a set_value through node 1: %v", r)
	}
	via1 := rpc(n1, "crawler/spiders", `{"jsonrpc": "2.0", "method": "list", "id": 3}`)
	if via2 := rpc(n2, "crawler/spiders", `{"jsonrpc": "2.0", "method": "list", "id": 3}`); !reflect.DeepEqual(via1, via2) {
		t.Fatalf("spiders list through node 1: %v; on node 2: %v", via1, via2)
	}

	// Items: Scrapy writes them in blocks while it runs; once the crawl
	// ended, its file is whole, the same through node 1, whole or a range.
	n1.Post(t, "cancel.json", url.Values{"project": {"sample"}, "job": {"on2"}})
	if fin := waitState(t, n1, "on2", "finished"); fin["outcome"] != "cancelled" {
		t.Fatalf("on2 ended %v", fin)
	}
	items := "/items/sample/slow/on2.jl"
	// Every node links it, once node 2 recorded it at the crawl's end.
	testkit.Eventually(t, waitCrawl, "node 1 to link node 2's items file", func() bool {
		fin := jobIn(t, n1, "finished", "on2")
		return fin != nil && fin["items_url"] == items
	})
	if fin := jobIn(t, n2, "finished", "on2"); fin["items_url"] != items {
		t.Fatalf("node 2 links its items file as %v", fin["items_url"])
	}
	_, _, whole1 := fetch(t, "GET", n1.URL+items, nil, "")
	_, _, whole2 := fetch(t, "GET", n2.URL+items, nil, "")
	if whole1 != whole2 || !strings.Contains(whole1, `{"page": 3}`) {
		t.Fatalf("the finished crawl's items through node 1 (%d bytes) and on node 2 (%d bytes) differ", len(whole1), len(whole2))
	}
	rng := http.Header{"Range": {"bytes=5-20"}}
	code1, h1, body1 := fetch(t, "GET", n1.URL+items, rng, "")
	code2, h2, body2 := fetch(t, "GET", n2.URL+items, rng, "")
	if code1 != http.StatusPartialContent || code1 != code2 || body1 != body2 || h1.Get("Content-Range") == "" || h1.Get("Content-Range") != h2.Get("Content-Range") {
		t.Fatalf("a range of the items through node 1: %d %q %q; from node 2: %d %q %q", code1, h1.Get("Content-Range"), body1, code2, h2.Get("Content-Range"), body2)
	}

	// The secret, straight to node 2 (without the user's credentials).
	plain := strings.Replace(n2.URL, "u:p@", "", 1)
	secret := clusterSecret(t, db)
	for _, c := range []struct {
		what   string
		header http.Header
		creds  bool
		want   int
	}{
		{"a forged secret", http.Header{"X-Scrapyd-Cluster-Secret": {"forged"}}, false, http.StatusUnauthorized},
		{"a forged secret with the user's credentials", http.Header{"X-Scrapyd-Cluster-Secret": {secret[:63] + "x"}}, true, http.StatusUnauthorized},
		{"no secret and no credentials", nil, false, http.StatusUnauthorized},
		{"the cluster's secret", http.Header{"X-Scrapyd-Cluster-Secret": {secret}}, false, http.StatusPartialContent},
	} {
		base := plain
		if c.creds {
			base = n2.URL
		}
		h := http.Header{"Range": {"bytes=5-20"}}
		for k, v := range c.header {
			h[k] = v
		}
		if code, _, body := fetch(t, "GET", base+items, h, ""); code != c.want || (c.want == http.StatusUnauthorized && body != "Unauthorized") {
			t.Errorf("node 2 given %s: HTTP %d %q, want %d", c.what, code, body, c.want)
		}
	}

	// With node 2 down, node 1 says so.
	n2.Stop()
	testkit.Eventually(t, waitCrawl, "node 2 to stop", func() bool {
		_, err := http.Get(plain + "/daemonstatus.json")
		return err != nil
	})
	code, _, body := fetch(t, "GET", n1.URL+items, nil, "")
	if code != http.StatusBadGateway || !strings.Contains(body, "on node node2, which cannot be reached at http://127.0.0.1:") {
		t.Fatalf("items of a node that is down: HTTP %d %s", code, body)
	}
}

// dbOf is a node's database URL, from its configuration.
func dbOf(t *testing.T, d *testkit.Daemon) string {
	t.Helper()
	raw, err := os.ReadFile(d.Path("etc", "scrapyd", "conf.d", "50-test.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "database = "); ok {
			return v
		}
	}
	t.Fatal("no database in the node's configuration")
	return ""
}
