package e2e

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// get is a GET with these credentials ("" user: none): status and body.
func get(t testing.TB, rawURL, user, pass string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, rawURL, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// scrapeMetrics reads /metrics as Prometheus does: with its text parser.
func scrapeMetrics(t testing.TB, d *testkit.Daemon, user, pass string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	code, body := get(t, d.URL+"/metrics", user, pass)
	if code != 200 {
		t.Fatalf("GET /metrics = %d: %s", code, body)
	}
	return testkit.ParseMetrics(t, body), body
}

// sample is testkit.MetricValue.
var sample = testkit.MetricValue

// TestMetricsAndProbes (issue 17 points 1 and 2): with auth on, the
// probes answer anyone and every other path asks for credentials;
// /metrics parses with Prometheus's parser and its counters move with
// real crawls of the sample project: one that finishes, one that fails,
// one whose items count live and which is then cancelled. metrics_public
// opens /metrics at a live reload.
func TestMetricsAndProbes(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	const user, pass = "admin", "Secret-17"
	conf := "username = " + user + "\npassword = " + pass + "\nmax_proc = 3"
	d := testkit.StartDaemon(t, testkit.Options{Conf: conf})
	authed := *d
	authed.URL = strings.Replace(d.URL, "http://", "http://"+user+":"+pass+"@", 1)

	// A load balancer waits for /readyz before it sends work: the daemon
	// answers daemonstatus.json before its dispatcher has looked for
	// crawls to adopt.
	testkit.Eventually(t, 30*time.Second, "/readyz to say ok", func() bool {
		code, _ := get(t, d.URL+"/readyz", "", "")
		return code == 200
	})
	for _, p := range []string{"/healthz", "/readyz", "//healthz"} {
		if code, body := get(t, d.URL+p, "", ""); code != 200 || body != "ok\n" {
			t.Errorf("GET %s without credentials = %d %q, want 200 \"ok\\n\"", p, code, body)
		}
	}
	for _, p := range []string{"/metrics", "/daemonstatus.json", "/listprojects.json", "/listversions.json?project=sample",
		"/listspiders.json?project=sample", "/listjobs.json", "/status.json?job=x", "/schedule.json", "/cancel.json",
		"/addversion.json", "/delversion.json", "/delproject.json", "/diagnostics.json", "/", "/jobs", "/logs/", "/items/",
		"/events", "/dashboard", "/logs/stats.json", "/healthz/", "/readyz/x", "/HEALTHZ", "/nowhere"} {
		if code, body := get(t, d.URL+p, "", ""); code != http.StatusUnauthorized || strings.Contains(body, "ok") {
			t.Errorf("GET %s without credentials = %d %q, want 401", p, code, body)
		}
	}

	before, _ := scrapeMetrics(t, d, user, pass)
	if v, ok := sample(before, "scrapyd_slots"); !ok || v != 3 {
		t.Errorf("scrapyd_slots = %v (%v), want 3 (max_proc)", v, ok)
	}
	if _, ok := sample(before, "scrapyd_jobs_finished_total"); ok {
		t.Errorf("jobs ended before any crawl")
	}

	authed.Upload(t, "sample", "1.0", testkit.SampleEgg(t))
	started := time.Now()
	site := testkit.Site(t, 6)
	catalog := schedule(t, &authed, url.Values{"project": {"sample"}, "spider": {"catalog"}, "url": {site}})
	failing := schedule(t, &authed, url.Values{"project": {"sample"}, "spider": {"failing"}})
	slow := schedule(t, &authed, url.Values{"project": {"sample"}, "spider": {"slow"}})
	if fin := waitState(t, &authed, catalog, "finished"); fin["outcome"] != "finished" {
		t.Fatalf("catalog ended %v\n%s", fin, d.Logs())
	}
	if fin := waitState(t, &authed, failing, "finished"); fin["outcome"] != "failed" {
		t.Fatalf("failing ended %v\n%s", fin, d.Logs())
	}

	// The slow crawl's items count while it runs, from its live stats.
	var live float64
	testkit.Eventually(t, waitCrawl, "the running crawl's items in /metrics", func() bool {
		fams, _ := scrapeMetrics(t, d, user, pass)
		live, _ = sample(fams, "scrapyd_spider_items_scraped_total", "project", "sample", "spider", "slow")
		return live > 0
	})
	mid, _ := scrapeMetrics(t, d, user, pass)
	if v, _ := sample(mid, "scrapyd_jobs", "project", "sample", "state", "running"); v != 1 {
		t.Errorf("scrapyd_jobs{state=running} = %v while slow runs", v)
	}
	if v, _ := sample(mid, "scrapyd_slots_in_use"); v != 1 {
		t.Errorf("scrapyd_slots_in_use = %v while slow runs", v)
	}
	if r := authed.Post(t, "cancel.json", url.Values{"project": {"sample"}, "job": {slow}}); r["status"] != "ok" {
		t.Fatalf("cancel: %v", r)
	}
	waitState(t, &authed, slow, "finished")

	after, text := scrapeMetrics(t, d, user, pass)
	for _, id := range []string{catalog, failing, slow} {
		if strings.Contains(text, id) {
			t.Errorf("job id %s in /metrics", id)
		}
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"scrapyd_jobs_finished_total", []string{"project", "sample", "spider", "catalog", "outcome", "finished"}, 1},
		{"scrapyd_jobs_finished_total", []string{"project", "sample", "spider", "failing", "outcome", "failed"}, 1},
		{"scrapyd_jobs_finished_total", []string{"project", "sample", "spider", "slow", "outcome", "cancelled"}, 1},
		{"scrapyd_job_duration_seconds", []string{"project", "sample", "spider", "catalog"}, 1},
		{"scrapyd_job_queue_wait_seconds", []string{"project", "sample"}, 3},
		{"scrapyd_spider_items_scraped_total", []string{"project", "sample", "spider", "catalog"}, 6},
		{"scrapyd_history_jobs", nil, 3},
		{"scrapyd_http_requests_total", []string{"endpoint", "/schedule.json", "code", "200"}, 3},
		{"scrapyd_slots_in_use", nil, 0},
	} {
		if got, ok := sample(after, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if got, _ := sample(after, "scrapyd_spider_items_scraped_total", "project", "sample", "spider", "slow"); got < live {
		t.Errorf("the cancelled crawl's items went back from %v to %v", live, got)
	}
	// The failing spider dies in __init__, before Scrapy keeps stats: its
	// end counts, its stats are none.
	if got, ok := sample(after, "scrapyd_spider_errors_total", "project", "sample", "spider", "failing"); !ok || got != 0 {
		t.Errorf("the failed crawl's errors = %v (present %v), want 0", got, ok)
	}
	if last, ok := sample(after, "scrapyd_spider_last_success_timestamp_seconds", "project", "sample", "spider", "catalog"); !ok || last < float64(started.Unix()) {
		t.Errorf("catalog's last success = %v (present %v), want after %v", last, ok, started.Unix())
	}
	if _, ok := sample(after, "scrapyd_spider_last_success_timestamp_seconds", "project", "sample", "spider", "failing"); ok {
		t.Errorf("failing has a last success")
	}
	if got, _ := sample(after, "scrapyd_http_requests_total", "endpoint", "other", "code", "401"); got < 20 {
		t.Errorf("refused requests counted as %v, want one per refused path", got)
	}

	// metrics_public = on opens /metrics, and only it, at a live reload.
	if err := os.WriteFile(d.Path("etc/scrapyd/conf.d/60-metrics.conf"), []byte("[scrapyd]\nmetrics_public = on\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "/metrics public after the reload", func() bool {
		code, _ := get(t, d.URL+"/metrics", "", "")
		return code == 200
	})
	if code, _ := get(t, d.URL+"/listjobs.json", "", ""); code != http.StatusUnauthorized {
		t.Errorf("listjobs.json without credentials under metrics_public = %d", code)
	}
	open, _ := scrapeMetrics(t, d, "", "")
	if got, _ := sample(open, "scrapyd_config_reloads_total", "result", "success"); got < 1 {
		t.Errorf("the reload is not counted: %v", got)
	}

	// After a restart the counters start again from zero (documented),
	// but each spider's last success is read back from the history.
	lastCatalog, _ := sample(after, "scrapyd_spider_last_success_timestamp_seconds", "project", "sample", "spider", "catalog")
	d.Stop()
	d = testkit.StartDaemon(t, testkit.Options{Root: d.Root, Conf: conf})
	testkit.Eventually(t, 20*time.Second, "catalog's last success after the restart", func() bool {
		fams, _ := scrapeMetrics(t, d, "", "")
		v, _ := sample(fams, "scrapyd_spider_last_success_timestamp_seconds", "project", "sample", "spider", "catalog")
		return v == lastCatalog
	})
}
