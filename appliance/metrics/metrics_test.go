package metrics

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

type fakeJobs []store.ProjectCount

func (f fakeJobs) ActiveByProject(context.Context) ([]store.ProjectCount, error) { return f, nil }

func (f fakeJobs) Counts() (pending, running, finished int) { return 0, 0, 77 }

// scrape serves /metrics once and parses it with Prometheus's own text
// parser, as a Prometheus server does.
func scrape(t testing.TB, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics = %d: %s", rec.Code, rec.Body)
	}
	return testkit.ParseMetrics(t, rec.Body.String())
}

// value is the sample of a family whose labels include want.
func value(t testing.TB, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	v, ok := testkit.MetricValue(fams, name, want...)
	if !ok {
		t.Fatalf("no %s%v", name, want)
	}
	return v
}

func TestJobsAndSlotsAtScrapeTime(t *testing.T) {
	m := New(Options{
		Version: "1.2.3",
		Jobs:    fakeJobs{{Project: "p", State: job.Pending, Jobs: 4}, {Project: "q", State: job.Running, Jobs: 9}},
		Slots:   func() (int, int) { return 8, 3 },
	})
	// The seed from the history moves a spider's last success forward,
	// never back past one recorded since.
	m.JobFinished(Finished{Project: "q", Spider: "s", Outcome: job.OutcomeFinished, Ended: time.Unix(1700000500, 0)})
	m.Seed([]store.SpiderSuccess{{Project: "p", Spider: "s", Ended: time.Unix(1700000000, 0)}, {Project: "q", Spider: "s", Ended: time.Unix(1600000000, 0)}})
	fams := scrape(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"scrapyd_jobs", []string{"project", "p", "state", "pending"}, 4},
		{"scrapyd_jobs", []string{"project", "q", "state", "running"}, 9},
		{"scrapyd_history_jobs", nil, 77},
		{"scrapyd_spider_last_success_timestamp_seconds", []string{"project", "q", "spider", "s"}, 1700000500},
		{"scrapyd_slots", nil, 8},
		{"scrapyd_slots_in_use", nil, 3},
		{"scrapyd_spider_last_success_timestamp_seconds", []string{"project", "p", "spider", "s"}, 1700000000},
		{"scrapyd_build_info", []string{"version", "1.2.3"}, 1},
		{"scrapyd_config_last_reload_successful", nil, 1},
	} {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// A crawl's items count live while it runs and then by its final stats;
// the per-spider counter never goes back, even when the final stats are
// missing (a crash) or a scrape races the end.
func TestSpiderStatsOnlyGrow(t *testing.T) {
	var running []Live
	m := New(Options{Running: func(context.Context) []Live { return running }})
	items := func() float64 {
		return value(t, scrape(t, m), "scrapyd_spider_items_scraped_total", "project", "p", "spider", "s")
	}
	t0 := time.Unix(1700000000, 0)
	m.JobFinished(Finished{Job: "a", Project: "p", Spider: "s", Outcome: job.OutcomeFinished, Started: t0, Ended: t0.Add(time.Minute), Stats: Counts{Items: 10}})
	running = []Live{{Job: "b", Project: "p", Spider: "s", Counts: Counts{Items: 5}}}
	if got := items(); got != 15 {
		t.Fatalf("ended 10 + live 5 = %v", got)
	}
	// b ends without final stats (killed): its last live count stays.
	m.JobFinished(Finished{Job: "b", Project: "p", Spider: "s", Outcome: job.OutcomeFailed})
	if got := items(); got != 15 {
		t.Fatalf("after b's end without stats = %v, want 15", got)
	}
	// A scrape that listed b as running before its end counts it once.
	if got := items(); got != 15 {
		t.Fatalf("b counted twice: %v", got)
	}
	running = nil
	fams := scrape(t, m)
	if got := value(t, fams, "scrapyd_jobs_finished_total", "project", "p", "spider", "s", "outcome", "failed"); got != 1 {
		t.Errorf("failed = %v", got)
	}
	if got := value(t, fams, "scrapyd_job_duration_seconds", "project", "p", "spider", "s"); got != 1 {
		t.Errorf("durations observed = %v, want 1 (b never started)", got)
	}
	if got := value(t, fams, "scrapyd_spider_last_success_timestamp_seconds", "project", "p", "spider", "s"); got != float64(t0.Add(time.Minute).Unix()) {
		t.Errorf("last success = %v", got)
	}
}

// No label carries a job id, and the names follow Prometheus's guide
// (promlint: units in names, _total on counters, help on every metric).
func TestNamingAndLabels(t *testing.T) {
	m := New(Options{Jobs: fakeJobs{{Project: "p", State: job.Running, Jobs: 1}}, Slots: func() (int, int) { return 1, 1 },
		Running: func(context.Context) []Live { return []Live{{Job: "jobid-live", Project: "p", Spider: "s"}} }})
	t0 := time.Now()
	m.JobStarted(Started{Project: "p", Spider: "s", Scheduled: t0, Started: t0.Add(time.Second)})
	m.JobFinished(Finished{Job: "jobid-ended", Project: "p", Spider: "s", Outcome: job.OutcomeFinished, Started: t0, Ended: t0.Add(time.Second)})
	m.Request("/schedule.json", 200, time.Millisecond)
	m.Reloaded(fmt.Errorf("bad"))
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	text := rec.Body.String()
	if strings.Contains(text, "jobid") {
		t.Fatalf("a job id in /metrics:\n%s", text)
	}
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "scrapyd_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	fams := scrape(t, m)
	if value(t, fams, "scrapyd_config_reloads_total", "result", "error") != 1 || value(t, fams, "scrapyd_config_last_reload_successful") != 0 {
		t.Error("a failed reload is not counted")
	}
	if value(t, fams, "scrapyd_http_requests_total", "endpoint", "/schedule.json", "code", "200") != 1 {
		t.Error("the request is not counted")
	}
	if value(t, fams, "scrapyd_job_queue_wait_seconds", "project", "p") != 1 {
		t.Error("the queue wait is not observed")
	}
}

// BenchmarkScrape1000Spiders: one /metrics scrape with 1,000 spiders in
// 10 projects, each with finished and failed crawls, durations, queue
// waits, a last success and stats, and 20 crawls running.
func BenchmarkScrape1000Spiders(b *testing.B) {
	var counts fakeJobs
	var running []Live
	for p := 0; p < 10; p++ {
		project := fmt.Sprintf("project%d", p)
		counts = append(counts, store.ProjectCount{Project: project, State: job.Pending, Jobs: 5}, store.ProjectCount{Project: project, State: job.Running, Jobs: 2})
		running = append(running, Live{Job: project + "-a", Project: project, Spider: "spider0", Counts: Counts{Items: 7}},
			Live{Job: project + "-b", Project: project, Spider: "spider1", Counts: Counts{Items: 7}})
	}
	m := New(Options{Jobs: counts, Slots: func() (int, int) { return 20, 20 }, Running: func(context.Context) []Live { return running }})
	t0 := time.Now()
	n := 0
	for p := 0; p < 10; p++ {
		for s := 0; s < 100; s++ {
			project, spider := fmt.Sprintf("project%d", p), fmt.Sprintf("spider%d", s)
			m.JobStarted(Started{Project: project, Spider: spider, Scheduled: t0, Started: t0.Add(time.Duration(s) * time.Second)})
			for _, o := range []job.Outcome{job.OutcomeFinished, job.OutcomeFailed} {
				n++
				m.JobFinished(Finished{Job: fmt.Sprint(n), Project: project, Spider: spider, Outcome: o,
					Started: t0, Ended: t0.Add(time.Duration(s) * time.Minute), Stats: Counts{Items: 100, Responses: 120, Errors: 1}})
			}
		}
	}
	for i := 0; i < 1000; i++ {
		m.Request(fmt.Sprintf("/route%d", i%12), 200, time.Millisecond)
	}
	h := m.Handler()
	b.ResetTimer()
	var rec *httptest.ResponseRecorder
	for i := 0; i < b.N; i++ {
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
	b.ReportMetric(float64(rec.Body.Len()), "bytes/scrape")
	b.ReportMetric(float64(strings.Count(rec.Body.String(), "\n")), "lines/scrape")
}
