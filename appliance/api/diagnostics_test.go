package api

import (
	"net/http"
	"slices"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/service"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// scrapydDaemonStatus is how Scrapyd 1.6 builds daemonstatus.json
// (scrapyd/webservice.py, tag 1.6.0): the resource's three counts, then
// WsResource.render adds "status", then "node_name".
//
//	class DaemonStatus(WsResource):
//	    def render_GET(self, txrequest):
//	        return {
//	            "pending": sum(queue.count() for queue in self.root.poller.queues.values()),
//	            "running": len(self.root.launcher.processes),
//	            "finished": len(self.root.launcher.finished),
//	        }
//
//	class WsResource(resource.Resource):
//	    def render(self, txrequest):
//	        ...
//	            if data is not None:
//	                data["status"] = "ok"
//	        ...
//	            data["node_name"] = self.root.node_name
//
// Its integration suite (integration_tests/test_webservice.py) compares the
// whole answer, so one more key fails it:
//
//	def test_daemonstatus():
//	    assert_response("get", "/daemonstatus.json", {"status": "ok", "running": 0, "pending": 0, "finished": 0})
var scrapydDaemonStatus = []string{"pending", "running", "finished", "status", "node_name"}

// TestDaemonStatusIsScrapyds: daemonstatus.json answers Scrapyd's keys in
// Scrapyd's order and nothing else, even while the daemon has diagnostics
// to report; those are on diagnostics.json, in the same envelope and
// behind the same auth.
func TestDaemonStatusIsScrapyds(t *testing.T) {
	h := newHarness(t, "username = hello12345\npassword = 67890world\n")
	h.svc.Diagnose = func() service.Diagnostics {
		return service.Diagnostics{Launcher: "process", Version: "1.2.3", ConfigError: `scrapyd.conf:3: unknown option "pasword"`,
			RestartNeeded: []string{"dbs_dir"}, Warnings: []string{"w1"}}
	}
	good := map[string]string{"Authorization": "Basic aGVsbG8xMjM0NTo2Nzg5MHdvcmxk"}

	r := h.do(t, request{method: http.MethodGet, path: "/daemonstatus.json", header: good})
	if got := testkit.JSONKeys(t, r.body); !slices.Equal(got, scrapydDaemonStatus) {
		t.Errorf("daemonstatus.json keys = %q, want Scrapyd's %q", got, scrapydDaemonStatus)
	}
	if want := `{"pending": 0, "running": 0, "finished": 0, "status": "ok", "node_name": "vm"}` + "\n"; r.body != want {
		t.Errorf("daemonstatus.json = %q, want %q", r.body, want)
	}

	r = h.do(t, request{method: http.MethodGet, path: "/diagnostics.json", header: good})
	want := `{"launcher": "process", "version": "1.2.3", "config_error": "scrapyd.conf:3: unknown option \"pasword\"", ` +
		`"restart_needed": ["dbs_dir"], "warnings": ["w1"], "status": "ok", "node_name": "vm"}` + "\n"
	if r.status != 200 || r.body != want || r.headers["Content-Type"] != "application/json" || r.headers["Access-Control-Allow-Origin"] != "*" {
		t.Errorf("diagnostics.json: %d %q %v\nwant %q", r.status, r.body, r.headers, want)
	}

	h.svc.Diagnose = func() service.Diagnostics { return service.Diagnostics{Launcher: "systemd", Version: "dev"} }
	r = h.do(t, request{method: http.MethodGet, path: "/diagnostics.json", header: good})
	want = `{"launcher": "systemd", "version": "dev", "config_error": null, "restart_needed": [], "warnings": [], "status": "ok", "node_name": "vm"}` + "\n"
	if r.body != want {
		t.Errorf("diagnostics.json, all well: %q, want %q", r.body, want)
	}

	if r = h.do(t, request{method: http.MethodGet, path: "/diagnostics.json"}); r.status != 401 {
		t.Errorf("diagnostics.json without credentials: %d %q", r.status, r.body)
	}
	r = h.do(t, request{method: http.MethodOptions, path: "/diagnostics.json", header: good})
	if r.status != 204 || r.headers["Allow"] != "OPTIONS, HEAD, GET" {
		t.Errorf("OPTIONS diagnostics.json: %d %v", r.status, r.headers)
	}
}
