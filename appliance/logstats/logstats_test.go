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
