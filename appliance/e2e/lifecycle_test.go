package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

const waitCrawl = 60 * time.Second

// jobIn returns the job with this id from listjobs.json's state section.
func jobIn(t testing.TB, d *testkit.Daemon, state, id string) map[string]any {
	t.Helper()
	l := d.Get(t, "listjobs.json", nil)
	list, _ := l[state].([]any)
	for _, e := range list {
		if m := e.(map[string]any); m["id"] == id {
			return m
		}
	}
	return nil
}

// waitState waits until the job is listed in state; a running job must
// also show its pid (it is null for the moment between claim and launch).
func waitState(t testing.TB, d *testkit.Daemon, id, state string) map[string]any {
	t.Helper()
	var m map[string]any
	testkit.Eventually(t, waitCrawl, "job "+id+" "+state, func() bool {
		m = jobIn(t, d, state, id)
		return m != nil && (state != "running" || m["pid"] != nil)
	})
	return m
}

// cancelled cancels a running crawl and waits for its end, as a user
// would: a crawl told to stop while Scrapy is still starting its engine can
// miss the signal (Scrapy's Crawler.stop finds no running engine and the
// crawl goes on), so one still running 15 s later is cancelled again, which
// kills it. The job ends cancelled either way.
func cancelled(t testing.TB, d *testkit.Daemon, project, id string) map[string]any {
	t.Helper()
	form := url.Values{"project": {project}, "job": {id}}
	d.Post(t, "cancel.json", form)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if fin := jobIn(t, d, "finished", id); fin != nil {
			return fin
		}
	}
	t.Logf("crawl %s still running 15 s after its cancel: cancelling again", id)
	d.Post(t, "cancel.json", form)
	return waitState(t, d, id, "finished")
}

func schedule(t testing.TB, d *testkit.Daemon, form url.Values) string {
	t.Helper()
	r := d.Post(t, "schedule.json", form)
	if r["status"] != "ok" {
		t.Fatalf("schedule %v: %v", form, r)
	}
	return r["jobid"].(string)
}

func readItems(t testing.TB, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("items file: %v", err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("items line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// TestCrawlLifecycle is what a Scrapy user does: upload, schedule with
// arguments and settings, watch, read logs and items, cancel, delete.
func TestCrawlLifecycle(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 2"})
	egg := testkit.SampleEgg(t)

	if r := d.Upload(t, "sample", "1.0", egg); r["status"] != "ok" || r["spiders"] != 4.0 {
		t.Fatalf("addversion: %v", r)
	}
	if r := d.Upload(t, "sample", "1.1", egg); r["status"] != "ok" {
		t.Fatalf("addversion 1.1: %v", r)
	}
	if r := d.Get(t, "listspiders.json", url.Values{"project": {"sample"}}); strings.Join(toStrings(r["spiders"]), ",") != "catalog,failing,params,slow" {
		t.Fatalf("listspiders: %v", r)
	}

	// A crawl of a real local site, its items and its log.
	site := testkit.Site(t, 6)
	catalog := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"catalog"}, "url": {site}})
	fin := waitState(t, d, catalog, "finished")
	if fin["outcome"] != "finished" || fin["exit_code"] != 0.0 {
		t.Fatalf("catalog ended %v\n%s", fin, d.Logs())
	}
	if fin["log_url"] != "/logs/sample/catalog/"+catalog+".log" || fin["items_url"] != "/items/sample/catalog/"+catalog+".jl" {
		t.Fatalf("catalog urls: %v", fin)
	}
	items := readItems(t, d.Path("var/lib/scrapyd/items/sample/catalog", catalog+".jl"))
	var skus []string
	for _, it := range items {
		skus = append(skus, it["sku"].(string))
		if it["job"] != catalog {
			t.Errorf("item without -a _job=%s: %v", catalog, it)
		}
	}
	sort.Strings(skus)
	if strings.Join(skus, ",") != "SKU-00000,SKU-00001,SKU-00002,SKU-00003,SKU-00004,SKU-00005" {
		t.Fatalf("catalog items: %v", skus)
	}
	logData, err := os.ReadFile(d.Path("var/log/scrapyd/sample/catalog", catalog+".log"))
	if err != nil || !strings.Contains(string(logData), "'item_scraped_count': 6") {
		t.Fatalf("catalog log (%v): %s", err, logData)
	}
	if r := d.Get(t, "status.json", url.Values{"job": {catalog}}); r["currstate"] != "finished" || r["outcome"] != "finished" {
		t.Fatalf("status.json: %v", r)
	}

	// Spider arguments, settings, an explicit job id and version, package data.
	schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "category": {"books"}, "limit": {"3"},
		"setting": {"SAMPLE_GREETING=hello-from-scrapyd"}, "jobid": {"params-1"}, "_version": {"1.0"}})
	if fin := waitState(t, d, "params-1", "finished"); fin["outcome"] != "finished" {
		t.Fatalf("params ended %v", fin)
	}
	items = readItems(t, d.Path("var/lib/scrapyd/items/sample/params/params-1.jl"))
	if len(items) != 3 {
		t.Fatalf("params items: %v", items)
	}
	for _, it := range items {
		if it["category"] != "books" || it["greeting"] != "hello-from-scrapyd" || it["package_data"] != "greetings-from-package-data" ||
			it["job"] != "params-1" || it["version"] != "1.0" {
			t.Fatalf("params item: %v", it)
		}
	}

	// A spider that fails is recorded as failed, with its exit code.
	failing := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"failing"}})
	if fin := waitState(t, d, failing, "finished"); fin["outcome"] != "failed" || fin["exit_code"] == 0.0 || fin["exit_code"] == nil {
		t.Fatalf("failing ended %v", fin)
	}

	// Cancel: graceful (SIGINT) ...
	slow := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"slow"}})
	run := waitState(t, d, slow, "running")
	pid := int(run["pid"].(float64))
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("running job's pid %d is not a live process: %v", pid, err)
	}
	if uid := procUID(pid); uid < 0 || os.Geteuid() == 0 && uid == 0 {
		t.Fatalf("the crawl runs with uid %d; a root daemon must run crawls as crawl_user", uid)
	}
	if run["start_time"] == nil {
		t.Fatalf("running entry: %v", run)
	}
	waitCrawling(t, d, slow)
	if r := d.Post(t, "cancel.json", url.Values{"project": {"sample"}, "job": {slow}}); r["prevstate"] != "running" {
		t.Fatalf("cancel: %v", r)
	}
	fin = waitState(t, d, slow, "finished")
	if fin["outcome"] != "cancelled" || fin["exit_code"] != 0.0 {
		t.Fatalf("gracefully cancelled crawl ended %v", fin)
	}
	if data, _ := os.ReadFile(d.Path("var/log/scrapyd/sample/slow", slow+".log")); !strings.Contains(string(data), "'finish_reason': 'shutdown'") {
		t.Fatalf("graceful cancel did not shut Scrapy down cleanly:\n%s", data)
	}

	// ... and forced: a crawl that hangs while closing ends only by the
	// second cancel, which escalates to SIGKILL.
	stuck := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"slow"}, "linger": {"600"}})
	waitCrawling(t, d, stuck)
	d.Post(t, "cancel.json", url.Values{"project": {"sample"}, "job": {stuck}})
	time.Sleep(time.Second) // give the graceful stop a chance it cannot take
	if jobIn(t, d, "running", stuck) == nil {
		t.Fatal("the lingering crawl ended on the first cancel; the test proves nothing")
	}
	if r := d.Post(t, "cancel.json", url.Values{"project": {"sample"}, "job": {stuck}}); r["prevstate"] != "running" {
		t.Fatalf("second cancel: %v", r)
	}
	fin = waitState(t, d, stuck, "finished")
	if fin["outcome"] != "cancelled" || fin["exit_code"] != float64(128+9) {
		t.Fatalf("force-cancelled crawl ended %v", fin)
	}

	// Deleting versions and projects; job history stays.
	if r := d.Post(t, "delversion.json", url.Values{"project": {"sample"}, "version": {"1.1"}}); r["status"] != "ok" {
		t.Fatalf("delversion: %v", r)
	}
	if r := d.Get(t, "listversions.json", url.Values{"project": {"sample"}}); strings.Join(toStrings(r["versions"]), ",") != "1.0" {
		t.Fatalf("listversions after delversion: %v", r)
	}
	if r := d.Post(t, "delproject.json", url.Values{"project": {"sample"}}); r["status"] != "ok" {
		t.Fatalf("delproject: %v", r)
	}
	if r := d.Get(t, "listprojects.json", nil); len(toStrings(r["projects"])) != 0 {
		t.Fatalf("listprojects after delproject: %v", r)
	}
	if _, err := os.Stat(d.Path("var/lib/scrapyd/eggs/sample")); !os.IsNotExist(err) {
		t.Fatalf("project directory still there: %v", err)
	}
	if r := d.Get(t, "daemonstatus.json", nil); r["finished"] != 5.0 || r["running"] != 0.0 || r["pending"] != 0.0 {
		t.Fatalf("daemonstatus: %v", r)
	}
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, len(list))
	for i, x := range list {
		out[i], _ = x.(string)
	}
	return out
}

func readFile(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// waitCrawling waits until a slow crawl logs its pages: Scrapy has then
// installed its signal handlers, so SIGINT means a graceful stop. (The feed
// is buffered until the crawl closes; the log is written per line.)
func waitCrawling(t testing.TB, d *testkit.Daemon, id string) {
	t.Helper()
	testkit.Eventually(t, waitCrawl, "crawl "+id+" scraping", func() bool {
		return strings.Contains(readFile(d.Path("var/log/scrapyd/sample/slow", id+".log")), "slow page 1")
	})
}

// procUID is the real uid of a process, -1 if unknown.
func procUID(pid int) int {
	for _, line := range strings.Split(readFile(fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			var uid int
			fmt.Sscan(f[1], &uid)
			return uid
		}
	}
	return -1
}
