package logstats

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// A job with no stats and no start (a crawl that could not start) still
// has every key ScrapydWeb reads, with LogParser's "nothing parsed yet"
// values: N/A times, null pages and items, zero counts.
func TestJobWithoutStats(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.Local)
	f := Of(Job{Job: job.Job{Spec: job.Spec{ID: "j", Project: "p", Spider: "s"}, State: job.Finished}, LogPath: "/var/log/scrapyd/p/s/j.log.gz"}, now)
	raw, _ := json.Marshal(f)
	var m map[string]any
	json.Unmarshal(raw, &m)
	for k, want := range map[string]any{"first_log_time": NA, "runtime": NA, "finish_reason": NA, "pages": nil, "items": nil,
		"json_path": "/var/log/scrapyd/p/s/j.json", "logparser_version": "0.8.4", "last_update_time": "2026-11-29 12:00:00"} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if s := string(raw); !strings.Contains(s, `"crawler_stats":{}`) || !strings.Contains(s, `"critical_logs":{"count":0,"details":[]}`) || !strings.Contains(s, `"latest_item":""`) {
		t.Errorf("shape: %s", s)
	}
}

// TestEntryIsTheJobFilesPart: a job's stats.json entry says what its own
// JSON says under the same keys (LogParser's SIMPLIFIED_KEYS are a subset
// of the job's data), for a running job with live stats, a finished one
// and one that never started.
func TestEntryIsTheJobFilesPart(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.Local)
	stats := map[string]any{"finish_reason": "finished", "item_scraped_count": json.Number("3"), "response_received_count": json.Number("4")}
	for _, j := range []Job{
		{Job: job.Job{Spec: job.Spec{ID: "r"}, State: job.Running, Started: t0}, Stats: stats, Runtime: "0:00:10", LogPath: "/l/p/s/r.log", LogSize: 10, JSONURL: "http://h/logs/p/s/r.json"},
		{Job: job.Job{Spec: job.Spec{ID: "f"}, State: job.Finished, Started: t0, Ended: t0.Add(time.Minute)}, Stats: stats, Runtime: "0:01:00", LogPath: "/l/p/s/f.log.gz", LogSize: 20},
		{Job: job.Job{Spec: job.Spec{ID: "n"}, State: job.Finished}, LogPath: "/l/p/s/n.log"},
	} {
		var whole, part map[string]any
		raw, _ := json.Marshal(Of(j, t0.Add(time.Hour)))
		json.Unmarshal(raw, &whole)
		raw, _ = json.Marshal(Stats([]Job{j}, t0.Add(time.Hour)).Datas[""][""][j.ID])
		json.Unmarshal(raw, &part)
		if len(part) != 14 {
			t.Errorf("%s: stats.json entry has %d keys, want LogParser's 14: %v", j.ID, len(part), part)
		}
		for k, v := range part {
			if w, ok := whole[k]; !ok || w != v {
				t.Errorf("%s: %s = %v in stats.json, %v in the job's JSON", j.ID, k, v, w)
			}
		}
	}
}

// BenchmarkStats1000 is stats.json's work for a thousand finished jobs
// with Scrapy's usual forty-odd final stats (ScrapydWeb asks for it on
// every Stats page and poll).
func BenchmarkStats1000(b *testing.B) {
	stats := map[string]any{"finish_reason": "finished", "item_scraped_count": json.Number("120"), "response_received_count": json.Number("130"),
		"scrapyd/log_count/error": json.Number("2"), "log_count/ERROR": json.Number("2")}
	for i := range 40 {
		stats["downloader/some_stat_"+string(rune('a'+i%26))+string(rune('a'+i/26))] = json.Number("12345")
	}
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.Local)
	jobs := make([]Job, 1000)
	for i := range jobs {
		jobs[i] = Job{Job: job.Job{Spec: job.Spec{ID: "j" + string(rune('a'+i%26)), Project: "p", Spider: "s"}, State: job.Finished, Started: t0, Ended: t0.Add(time.Minute)},
			Stats: stats, Runtime: "0:01:00", LogPath: "/var/log/scrapyd/p/s/j.log", LogSize: 1 << 20}
	}
	b.ReportAllocs()
	for b.Loop() {
		Stats(jobs, t0)
	}
}
