package web_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestNodesPageOnlyInCluster: a single node has no nodes page and links
// none; in cluster mode every page links it, and it lists each node with
// its names escaped.
func TestNodesPageOnlyInCluster(t *testing.T) {
	f := newFixture(t)
	if resp, _ := f.get(t, "/nodes"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/nodes on a single node: %d", resp.StatusCode)
	}
	if _, body := f.get(t, "/"); strings.Contains(body, "/nodes") {
		t.Fatalf("a single node's home links the nodes page:\n%s", body)
	}
	f.svc.ListNodes = func(context.Context) ([]service.Node, error) {
		return []service.Node{{Name: "n<1>", Slots: 4, Running: 3, Lease: 30 * time.Second, LeaseUntil: time.Now(), Version: "1.0", Alive: true},
			{Name: "n2", Slots: 2, Stopped: true}}, nil
	}
	resp, body := f.get(t, "/nodes", "X-Forwarded-Prefix", "/p")
	for _, s := range []string{`<a href="/p/nodes">Nodes</a>`, `<tr id="node-n&lt;1&gt;">`, `<span class="badge active">alive</span>`,
		`<td data-label="Slots" class="num">4</td>`, `<td data-label="Running" class="num">3</td>`, "(30s lease)", `<span class="badge paused">stopped</span>`} {
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, s) {
			t.Errorf("nodes page (%d) has no %s:\n%s", resp.StatusCode, s, body)
		}
	}
	if _, body := f.get(t, "/"); !strings.Contains(body, `<li><a href="/nodes">Nodes</a>`) {
		t.Errorf("home in cluster mode does not link the nodes page:\n%s", body)
	}
}

// TestJobPageNode: a single node's job page names no node (in cluster
// mode it does: e2e TestClusterListJobsNodes).
func TestJobPageNode(t *testing.T) {
	f := newFixture(t)
	f.project(t, "p", "s")
	f.job(t, job.Spec{ID: "j", Project: "p", Spider: "s"}, job.Running, "")
	if _, body := f.get(t, "/jobs/p/j"); strings.Contains(body, "<dt>Node</dt>") {
		t.Errorf("a single node's job page names a node:\n%s", body)
	}
}

// TestBrowserNodes: in Chromium, node 1's home page leads to the nodes
// page, which shows both nodes alive with their slots; once node 2 stops
// cleanly it shows it stopped.
func TestBrowserNodes(t *testing.T) {
	testkit.RequireScrapy(t)
	ctx := newBrowser(t)
	db := pgtest.DB(t)
	conf := "poll_interval = 60\ndatabase = " + db + "\nnode_name = "
	n1 := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 3\n" + conf + "node1"})
	n2 := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 2\n" + conf + "node2"})
	err := chromedp.Do(ctx,
		chromedp.Navigate(n1.URL+"/"),
		chromedp.Click(`//main//a[text()="Nodes"]`),
		chromedp.WaitVisible(chromedp.ID("nodes")),
	)
	if err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "nodes.png")
	row := func(name string) string {
		return text(t, ctx, `document.getElementById("node-`+name+`").innerText.replace(/\s+/g, " ")`)
	}
	if r := row("node1"); !strings.Contains(r, "node1 (this node) alive 3") {
		t.Errorf("node 1's row: %q", r)
	}
	if r := row("node2"); !strings.Contains(r, "node2 alive 2") {
		t.Errorf("node 2's row: %q", r)
	}
	n2.Stop()
	testkit.Eventually(t, time.Minute, "node 2 shown stopped", func() bool {
		chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("nodes")))
		return strings.Contains(row("node2"), "stopped")
	})
}
