package web_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// errorSite is the catalog spider's site (testkit.Site) behind an index
// with the trouble real sites have: a product behind a redirect and one
// that is gone (404).
func errorSite(t *testing.T) string {
	site := testkit.Site(t, 2)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<html><body><a class="product" href="%[1]sproducts/p0.html">p0</a><a class="product" href="/moved">p1</a><a class="product" href="%[1]sproducts/p9.html">gone</a></body></html>`, site)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, site+"products/p1.html", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// get fetches a URL of the daemon with request headers; the transport's
// own gzip handling is off, so the test sees what is sent.
func rawGet(t *testing.T, u string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// TestFinishedLogsAfterRealCrawls: real crawls on the real daemon, then
// what ScrapydWeb reads of /logs/stats.json and a job's JSON (its own
// lines, in Python), the finished log compressed and still served whole
// and by range at its URL, and old logs pruned by age and by size.
func TestFinishedLogsAfterRealCrawls(t *testing.T) {
	testkit.RequireScrapy(t)
	d := testkit.StartDaemon(t, testkit.Options{Conf: "compress_finished = on\nlogs_max_age = 2d\nlogs_max_bytes_per_spider = 100K\n"})
	// Files older than the crawls: one past logs_max_age, and two of a
	// spider over logs_max_bytes_per_spider (the older one goes). They are
	// in spiders' directories the crawls do not use: the crawl user could
	// not write into a directory the test (root) made.
	logs := d.Path("var", "log", "scrapyd")
	old := func(rel string, size int, age time.Duration) string {
		p := filepath.Join(logs, filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, bytes.Repeat([]byte("x"), size), 0o644)
		os.Chtimes(p, time.Now().Add(-age), time.Now().Add(-age))
		return p
	}
	ancient := old("sample/retired/ancient.log.gz", 10, 72*time.Hour)
	bigNew := old("sample/archived/big-new.log.gz", 60<<10, time.Hour)
	bigOld := old("sample/archived/big-old.log.gz", 60<<10, 2*time.Hour)

	if r := d.Upload(t, "sample", "1.0", testkit.SampleEgg(t)); r["status"] != "ok" {
		t.Fatalf("upload: %v", r)
	}
	ids := map[string]url.Values{
		"catalog-run": {"project": {"sample"}, "spider": {"catalog"}, "url": {errorSite(t)}, "jobid": {"catalog-run"}},
		"params-run":  {"project": {"sample"}, "spider": {"params"}, "limit": {"3"}, "jobid": {"params-run"}},
	}
	for id, form := range ids {
		if r := d.Post(t, "schedule.json", form); r["status"] != "ok" {
			t.Fatalf("schedule %s: %v", id, r)
		}
	}
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.Logs())
			filepath.WalkDir(logs, func(p string, _ os.DirEntry, _ error) error { t.Log(p); return nil })
		}
	}()
	testkit.Eventually(t, 3*time.Minute, "both crawls finished and their logs compressed", func() bool {
		for id, form := range ids {
			if _, err := os.Stat(filepath.Join(logs, "sample", form.Get("spider"), id+".log.gz")); err != nil {
				return false
			}
		}
		return true
	})
	r := d.Get(t, "listjobs.json", url.Values{"project": {"sample"}})
	if fin, _ := r["finished"].([]any); len(fin) != 2 {
		t.Fatalf("listjobs: %v\n%s", r, d.Logs())
	}
	for _, e := range r["finished"].([]any) {
		e := e.(map[string]any)
		if e["outcome"] != "finished" || e["log_url"] != "/logs/sample/"+e["spider"].(string)+"/"+e["id"].(string)+".log" {
			t.Errorf("finished entry %v", e)
		}
	}

	// ScrapydWeb's reading of stats.json and the catalog job's JSON.
	_, statsBody := rawGet(t, d.URL+"/logs/stats.json")
	_, jobBody := rawGet(t, d.URL+"/logs/sample/catalog/catalog-run.json")
	got := readAsScrapydWeb(t, string(statsBody), string(jobBody))
	jobs := got["jobs"].(map[string]any)
	// catalog: the index, the redirect target, two products and the 404
	// are responses; two items. params: one response, three items.
	if c, p := fmt.Sprint(jobs["catalog-run"]), fmt.Sprint(jobs["params-run"]); c != "[sample catalog 4 2 finished]" || p != "[sample params 1 3 finished]" {
		t.Errorf("ScrapydWeb's Jobs page reads catalog %s, params %s\n%s", c, p, statsBody)
	}
	// ALERT_TRIGGER_KEYS order: CRITICAL ERROR WARNING REDIRECT RETRY IGNORE, then pages, items.
	if a := fmt.Sprint(got["job"].(map[string]any)["alert_counts"]); a != "[0 0 0 1 0 1 4 2]" {
		t.Errorf("ScrapydWeb's alert counts %s\n%s", a, jobBody)
	}
	// ScrapydWeb's Stats page shows the log's head and tail.
	var jf struct{ Head, Tail string }
	json.Unmarshal(jobBody, &jf)
	if !strings.Contains(jf.Head, "Scrapy 2.") || !strings.HasSuffix(jf.Tail, "Spider closed (finished)") {
		t.Errorf("head %q\ntail %q", jf.Head, jf.Tail)
	}
	// The counts the scan stored are on the job's page too.
	if _, page := rawGet(t, d.URL+"/jobs/sample/catalog-run"); !strings.Contains(string(page), "scrapyd/<wbr>log_count/<wbr>ignore") {
		t.Errorf("the job page shows no stored log counts")
	}

	// The compressed log at its plain URL: whole, by range, and as gzip.
	logURL := d.URL + "/logs/sample/catalog/catalog-run.log"
	resp, whole := rawGet(t, logURL, "Accept-Encoding", "identity")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || !bytes.Contains(whole, []byte("Spider closed (finished)")) ||
		resp.ContentLength != int64(len(whole)) {
		t.Fatalf("whole log: HTTP %d %v\n%.300s", resp.StatusCode, resp.Header, whole)
	}
	resp, part := rawGet(t, logURL, "Range", "bytes=10-109")
	if resp.StatusCode != 206 || !bytes.Equal(part, whole[10:110]) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-109/%d", len(whole)) {
		t.Errorf("range: HTTP %d %q %q", resp.StatusCode, resp.Header.Get("Content-Range"), part)
	}
	resp, tail := rawGet(t, logURL, "Range", "bytes=-200")
	if resp.StatusCode != 206 || !bytes.Equal(tail, whole[len(whole)-200:]) {
		t.Errorf("suffix range: HTTP %d %q", resp.StatusCode, tail)
	}
	resp, gz := rawGet(t, logURL, "Accept-Encoding", "gzip")
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if resp.Header.Get("Content-Encoding") != "gzip" || err != nil {
		t.Fatalf("gzip: %v %v", resp.Header, err)
	}
	if plain, _ := io.ReadAll(zr); !bytes.Equal(plain, whole) {
		t.Error("the gzip answer is not the log")
	}
	// The listing names the file as it is on disk.
	if _, listing := rawGet(t, d.URL+"/logs/sample/catalog/"); !strings.Contains(string(listing), `href="catalog-run.log.gz"`) {
		t.Errorf("listing:\n%s", listing)
	}

	// Pruned by age and by size; the newer archived file stays.
	for _, p := range []string{ancient, bigOld} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was not pruned\n%s", p, d.Logs())
		}
	}
	if _, err := os.Stat(bigNew); err != nil {
		t.Errorf("%s was pruned: %v", bigNew, err)
	}
}
