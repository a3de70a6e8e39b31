package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestWebServiceThroughTheDaemon: while a crawl runs, its stats show in
// listjobs.json, JSON-RPC reaches it through the daemon's port behind the
// daemon's auth, and stopping it there is recorded as cancelled.
func TestWebServiceThroughTheDaemon(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{Conf: "username = u\npassword = p"})
	rpc := func(path, body string, auth bool) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, d.URL+"/webservice/"+path, strings.NewReader(body))
		if auth {
			req.SetBasicAuth("u", "p")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var out map[string]any
		json.Unmarshal(data, &out)
		return resp.StatusCode, out
	}
	authed := *d
	authed.URL = strings.Replace(d.URL, "http://", "http://u:p@", 1)
	authed.Upload(t, "sample", "1.0", testkit.SampleEgg(t))
	id := schedule(t, &authed, url.Values{"project": {"sample"}, "spider": {"slow"}})
	waitCrawling(t, &authed, id)

	if code, _ := rpc(id+"/stats", `{"jsonrpc": "2.0", "method": "get_stats", "id": 1}`, false); code != http.StatusUnauthorized {
		t.Fatalf("the web service without credentials: HTTP %d", code)
	}
	var items float64
	testkit.Eventually(t, waitCrawl, "live stats in listjobs.json", func() bool {
		run := jobIn(t, &authed, "running", id)
		items, _ = run["items_scraped"].(float64)
		return items > 0
	})
	_, res := rpc(id+"/stats", `{"jsonrpc": "2.0", "method": "get_value", "params": ["item_scraped_count"], "id": 7}`, true)
	if res["id"] != 7.0 || res["result"] == nil || res["result"].(float64) < items {
		t.Fatalf("get_value through the daemon: %v", res)
	}
	if _, res := rpc(id+"/stats", `{"jsonrpc": "2.0", "method": "__class__", "id": 8}`, true); res["error"].(map[string]any)["code"] != -32601.0 {
		t.Fatalf("a method outside the list: %v", res)
	}
	if _, res := rpc(id+"/crawler/engine", `{"jsonrpc": "2.0", "method": "close_spider", "id": 9}`, true); res["error"] != nil {
		t.Fatalf("close_spider: %v", res)
	}
	fin := waitState(t, &authed, id, "finished")
	if fin["outcome"] != "cancelled" {
		t.Fatalf("a crawl stopped through the web service ended %v", fin)
	}
	if code, res := rpc(id+"/stats", `{"jsonrpc": "2.0", "method": "get_stats", "id": 10}`, true); code != http.StatusNotFound || res["error"] == nil {
		t.Fatalf("a finished job: HTTP %d %v", code, res)
	}
}
