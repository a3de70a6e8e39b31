package web_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// scrapydWebReads runs, under Debian's Python, the lines ScrapydWeb
// (my8100/scrapydweb) reads LogParser's files with, on stats.json
// (argv[1]) and one job's JSON (argv[2]), and prints what they found. A
// missing key or a wrong type fails the script as it would fail
// ScrapydWeb's page.
const scrapydWebReads = `
import json, sys
from collections import OrderedDict
LOGPARSER_VERSION = '0.8.4'   # ScrapydWeb's setup.py: "logparser>=0.8.4"
NA = 'N/A'
ALERT_TRIGGER_KEYS = ['CRITICAL', 'ERROR', 'WARNING', 'REDIRECT', 'RETRY', 'IGNORE']  # vars.py
REPORT_KEYS_SET = {'from_memory', 'status', 'pages', 'items', 'shutdown_reason', 'finish_reason', 'runtime',
                   'first_log_time', 'latest_log_time', 'log_categories', 'latest_matches'}  # views/files/log.py
out = {}

# views/api.py handle_result (liststats) and extract_pages_items:
js = json.loads(open(sys.argv[1]).read())
assert js['status'] == 'ok'
assert not (js.get('logparser_version') != LOGPARSER_VERSION)
out['jobs'] = {}
for project in js['datas']:
    for spider in js['datas'][project]:
        for jobid in js['datas'][project][spider]:
            details = js['datas'][project][spider][jobid]
            # views/dashboard/jobs.py: record.pages = data['pages']  # Logparser: None or non-negative int
            assert details['pages'] is None or (type(details['pages']) is int and details['pages'] >= 0)
            assert details['items'] is None or (type(details['items']) is int and details['items'] >= 0)
            out['jobs'][jobid] = [project, spider, details['pages'], details['items'], details['finish_reason']]

# views/files/log.py request_stats_by_logparser and update_kwargs:
js = json.loads(open(sys.argv[2]).read())
assert not (js.get('logparser_version') != LOGPARSER_VERSION)
msg = "LogParser v%s, last updated at %s, %s" % (js['logparser_version'], js['last_update_time'], 'url')
stats = js
for d in stats['datas']:
    d[0] = str(d[0])
def get_ordered_dict(adict):
    # 'source', 'last_update_time', 'last_update_timestamp', other keys in order
    odict = OrderedDict()
    for k in ['source', 'last_update_time', 'last_update_timestamp']:
        odict[k] = adict.pop(k)
    for k in sorted(adict.keys()):
        odict[k] = adict[k]
    return odict
for k in ['crawler_stats', 'crawler_engine']:
    if stats[k]:
        stats[k] = get_ordered_dict(stats[k])
kwargs = dict(stats)
# monitor_alert and set_email_content_kwargs:
job_stats = [kwargs['log_categories'][k.lower() + '_logs']['count'] for k in ALERT_TRIGGER_KEYS]
job_stats.extend([kwargs['pages'] or 0, kwargs['items'] or 0])  # May be None by LogParser
for k in ['first_log_time', 'latest_log_time', 'runtime', 'shutdown_reason', 'finish_reason']:
    assert isinstance(kwargs[k], str), k
for k in ['latest_crawl', 'latest_scrape', 'latest_log']:
    ts = kwargs['%s_timestamp' % k]
    assert isinstance(ts, int)
latest_item = kwargs['latest_matches']['latest_item'] or NA
# simplify_stats_for_report:
for key in list(stats.keys()):
    if key not in REPORT_KEYS_SET:
        stats.pop(key)
for key in stats['log_categories']:
    stats['log_categories'][key] = dict(count=stats['log_categories'][key]['count'])
assert set(stats.keys()) | {'from_memory'} == REPORT_KEYS_SET, set(stats.keys()) ^ REPORT_KEYS_SET
out['job'] = {'alert_counts': job_stats, 'crawler_stats_first': list(kwargs['crawler_stats'].keys())[:4],
              'finish_reason': kwargs['finish_reason'], 'runtime': kwargs['runtime']}
json.dump(out, sys.stdout)
`

// readAsScrapydWeb runs scrapydWebReads on two answers.
func readAsScrapydWeb(t *testing.T, statsJSON, jobJSON string) map[string]any {
	t.Helper()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "stats.json"), filepath.Join(dir, "job.json")
	os.WriteFile(a, []byte(statsJSON), 0o644)
	os.WriteFile(b, []byte(jobJSON), 0o644)
	out, err := exec.Command(testkit.Python, "-c", scrapydWebReads, a, b).CombinedOutput()
	if err != nil {
		t.Fatalf("ScrapydWeb's reading in %s: %v\n%s\nstats.json: %s\njob: %s", testkit.Python, err, out, statsJSON, jobJSON)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return got
}

func TestLogParserFilesReadByScrapydWeb(t *testing.T) {
	f := newFixture(t)
	f.project(t, "sample", "catalog", "slow")
	stats := `{"finish_reason": "finished", "item_scraped_count": 7, "response_received_count": 9, "log_count/ERROR": 2,
		"downloader/response_status_count/301": 1, "downloader/response_status_count/302": 2,
		"scrapyd/log_count/critical": 0, "scrapyd/log_count/error": 2, "scrapyd/log_count/warning": 4,
		"scrapyd/log_count/redirect": 1, "scrapyd/log_count/retry": 5, "scrapyd/log_count/ignore": 6}`
	f.jobWithStats(t, job.Spec{ID: "done1", Project: "sample", Spider: "catalog"}, job.Finished, job.OutcomeFinished, stats)
	f.job(t, job.Spec{ID: "run1", Project: "sample", Spider: "slow"}, job.Running, "")
	f.job(t, job.Spec{ID: "nolog", Project: "sample", Spider: "slow"}, job.Finished, job.OutcomeFailed)
	f.stats["run1"] = map[string]any{"item_scraped_count": json.Number("3")}
	writeFile(t, filepath.Join(f.cfg.LogsDir, "sample", "catalog", "done1.log"), "log\n")
	writeFile(t, filepath.Join(f.cfg.LogsDir, "sample", "slow", "run1.log"), "log\n")

	resp, statsBody := f.get(t, "/logs/stats.json?project=sample&_version=run1") // ScrapydWeb's liststats URL
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("stats.json: HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp, jobBody := f.get(t, "/logs/sample/catalog/done1.json")
	if resp.StatusCode != 200 {
		t.Fatalf("done1.json: HTTP %d", resp.StatusCode)
	}
	got := readAsScrapydWeb(t, statsBody, jobBody)
	jobs, _ := json.Marshal(got["jobs"])
	// The job without a log is not listed, as LogParser lists log files.
	if want := `{"done1":["sample","catalog",9,7,"finished"],"run1":["sample","slow",null,3,"N/A"]}`; string(jobs) != want {
		t.Errorf("ScrapydWeb's Jobs page reads %s, want %s", jobs, want)
	}
	one, _ := json.Marshal(got["job"])
	// Counts: CRITICAL from the scan (the stats have none), ERROR from
	// log_count/ERROR, REDIRECT the 3xx responses, then pages and items.
	if want := `{"alert_counts":[0,2,4,3,5,6,9,7],"crawler_stats_first":["source","last_update_time","last_update_timestamp","downloader/response_status_count/301"],"finish_reason":"finished","runtime":"0:01:05"}`; string(one) != want {
		t.Errorf("ScrapydWeb's Stats page reads %s, want %s", one, want)
	}
	if strings.Contains(jobBody, "scrapyd/log_count") {
		t.Errorf("our stored counts leak into crawler_stats:\n%s", jobBody)
	}

	// A running job's JSON carries its live stats.
	if resp, body := f.get(t, "/logs/sample/slow/run1.json"); resp.StatusCode != 200 || !strings.Contains(body, `"source": "telnet"`) || !strings.Contains(body, `"items": 3`) {
		t.Errorf("run1.json: HTTP %d\n%s", resp.StatusCode, body)
	}
	for _, path := range []string{"/logs/sample/slow/nolog.json", "/logs/sample/slow/done1.json", "/logs/sample/catalog/ghost.json", "/logs/other/catalog/done1.json"} {
		if resp, _ := f.get(t, path); resp.StatusCode != 404 {
			t.Errorf("%s: HTTP %d, want 404", path, resp.StatusCode)
		}
	}
	// A file LogParser wrote is served as it is.
	writeFile(t, filepath.Join(f.cfg.LogsDir, "stats.json"), `{"from": "logparser"}`)
	if _, body := f.get(t, "/logs/stats.json"); body != `{"from": "logparser"}` {
		t.Errorf("a real stats.json is not served: %s", body)
	}
}

func TestLogParserFilesNeedAuth(t *testing.T) {
	f := newFixture(t, "SCRAPYD_USERNAME=u", "SCRAPYD_PASSWORD=p")
	for _, path := range []string{"/logs/stats.json", "/logs/p/s/j.json"} {
		if resp, _ := f.get(t, path); resp.StatusCode != 401 {
			t.Errorf("%s without credentials: HTTP %d", path, resp.StatusCode)
		}
	}
}

// gzipped is data compressed as the archiver does (with the plain size in
// the header comment when sized).
func gzipped(t *testing.T, data string, sized bool) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if sized {
		zw.Comment = jobfiles.SizeComment(int64(len(data)))
	}
	zw.Write([]byte(data))
	zw.Close()
	return b.Bytes()
}

func TestCompressedLogServedAtPlainURL(t *testing.T) {
	f := newFixture(t)
	f.project(t, "p", "s")
	f.job(t, job.Spec{ID: "j", Project: "p", Spider: "s"}, job.Finished, job.OutcomeFinished)
	content := strings.Repeat("2026-01-01 00:00:00 [demo] INFO: line\n", 2000)
	for _, sized := range []bool{true, false} {
		gz := gzipped(t, content, sized)
		writeFile(t, filepath.Join(f.cfg.LogsDir, "p", "s", "j.log.gz"), string(gz))
		n := len(content)
		tests := []struct {
			name, accept, rng string
			status            int
			body              string
			header            map[string]string
		}{
			{"plain to a client without gzip", "", "", 200, content, map[string]string{"Content-Encoding": "", "Content-Type": "text/plain", "Content-Length": itoa(n)}},
			{"gzip to a client that takes it", "gzip, deflate", "", 200, string(gz), map[string]string{"Content-Encoding": "gzip", "Content-Type": "text/plain", "Vary": "Accept-Encoding"}},
			{"gzip refused by q=0", "gzip;q=0", "", 200, content, map[string]string{"Content-Encoding": ""}},
			{"range", "gzip", "bytes=100-199", 206, content[100:200], map[string]string{"Content-Encoding": "", "Content-Range": "bytes 100-199/" + itoa(n)}},
			{"suffix range", "", "bytes=-500", 206, content[n-500:], map[string]string{"Content-Range": "bytes " + itoa(n-500) + "-" + itoa(n-1) + "/" + itoa(n)}},
			{"unsatisfiable", "", "bytes=" + itoa(n) + "-", 416, "", map[string]string{"Content-Range": "bytes */" + itoa(n)}},
		}
		for _, tc := range tests {
			req := httptest.NewRequest(http.MethodGet, "/logs/p/s/j.log", nil)
			if tc.accept != "" {
				req.Header.Set("Accept-Encoding", tc.accept)
			}
			if tc.rng != "" {
				req.Header.Set("Range", tc.rng)
			}
			resp, body := f.do(t, req)
			if resp.StatusCode != tc.status || tc.status < 300 && body != tc.body {
				t.Errorf("sized=%v %s: HTTP %d, %d bytes (want %d, %d bytes)", sized, tc.name, resp.StatusCode, len(body), tc.status, len(tc.body))
			}
			for k, v := range tc.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("sized=%v %s: %s = %q, want %q", sized, tc.name, k, got, v)
				}
			}
		}
	}
	// The compressed file is listed under its own name, and the job keeps
	// its plain log link.
	_, listing := f.get(t, "/logs/p/s/")
	if rows := pythonRows(t, listing); len(rows) != 1 || rows[0]["filename"] != "j.log.gz" || rows[0]["content_encoding"] != "[gzip]" {
		t.Errorf("listing rows %v", rows)
	}
	if _, body := f.get(t, "/listjobs.json?project=p"); !strings.Contains(body, `"log_url": "/logs/p/s/j.log"`) {
		t.Errorf("listjobs lost the compressed log's link: %s", body)
	}
	// The job page shows its end.
	if _, body := f.get(t, "/jobs/p/j"); !strings.Contains(body, "INFO: line") {
		t.Errorf("job page without the compressed log's tail")
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
