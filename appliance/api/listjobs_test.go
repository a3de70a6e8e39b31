package api

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// finish records a job that ran from start to end, straight in the store.
func (h *harness) finish(t *testing.T, spec job.Spec, start, end time.Time, exit *int, outcome job.Outcome) {
	t.Helper()
	j, err := h.st.Enqueue(spec, start)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.st.Claim(start, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.st.End(j.Seq, end, exit, outcome, "", 100); err != nil {
		t.Fatal(err)
	}
}

// TestListJobsFinished pins the finished section byte for byte, and shows
// that a finished job's links are not frozen: a log that appears later is
// linked.
func TestListJobsFinished(t *testing.T) {
	h := newHarness(t, "[settings]\nother = other.settings\n")
	at := func(sec, nsec int) time.Time { return time.Date(2024, 5, 6, 7, 8, sec, nsec, time.Local) }
	zero, two := 0, 2
	h.finish(t, job.Spec{ID: "a", Project: "other", Spider: "s1"}, at(1, 0), at(2, 250_000_000), &zero, job.OutcomeFinished)
	h.finish(t, job.Spec{ID: "b", Project: "other", Spider: "s2"}, at(3, 123_456_789), at(4, 0), nil, job.OutcomeLost)
	h.finish(t, job.Spec{ID: "c", Project: "other", Spider: "s1"}, at(5, 0), at(6, 0), &two, job.OutcomeFailed)
	h.finish(t, job.Spec{ID: "d", Project: "gone", Spider: "s1"}, at(7, 0), at(8, 0), &zero, job.OutcomeFinished)
	a := `{"id": "a", "project": "other", "spider": "s1", "start_time": "2024-05-06 07:08:01", "end_time": "2024-05-06 07:08:02.250000", "log_url": LOG, "items_url": null, "outcome": "finished", "exit_code": 0}`
	b := `{"id": "b", "project": "other", "spider": "s2", "start_time": "2024-05-06 07:08:03.123456", "end_time": "2024-05-06 07:08:04", "log_url": null, "items_url": null, "outcome": "lost", "exit_code": null}`
	c := `{"id": "c", "project": "other", "spider": "s1", "start_time": "2024-05-06 07:08:05", "end_time": "2024-05-06 07:08:06", "log_url": null, "items_url": null, "outcome": "failed", "exit_code": 2}`
	list := func(query string, want ...string) {
		t.Helper()
		body := `{"pending": [], "running": [], "finished": [` + strings.Join(want, ", ") + `], "status": "ok", "node_name": "vm"}` + "\n"
		if r := h.do(t, request{method: http.MethodGet, path: "/listjobs.json" + query}); r.body != body {
			t.Errorf("%s:\n got %s\nwant %s", query, r.body, body)
		}
	}
	d := `{"id": "d", "project": "gone", "spider": "s1", "start_time": "2024-05-06 07:08:07", "end_time": "2024-05-06 07:08:08", "log_url": null, "items_url": null, "outcome": "finished", "exit_code": 0}`
	noLog := strings.Replace(a, "LOG", "null", 1)
	list("", d, c, b, noLog)
	logs := filepath.Join(h.root, "var", "log", "scrapyd", "other", "s1")
	os.MkdirAll(logs, 0o755)
	if err := os.WriteFile(filepath.Join(logs, "a.log"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	withLog := strings.Replace(a, "LOG", `"/logs/other/s1/a.log"`, 1)
	list("", d, c, b, withLog)
	list("?state=finished&limit=2&offset=1", c, b)
	list("?project=other", c, b, withLog)
	list("?project=other&offset=2", withLog)
	list("?limit=5&offset=4")
	if r := h.do(t, request{method: http.MethodGet, path: "/listjobs.json?project=nosuch"}); !strings.Contains(r.body, `"status": "error"`) {
		t.Errorf("unknown project: %s", r.body)
	}
}
