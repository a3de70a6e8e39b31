// Package metrics is the daemon's Prometheus face (issue 17): it counts
// what happens (jobs ended, API requests, reloads) as it is told, and reads
// what is (jobs per state, slots, running crawls' stats) at each scrape.
// No label ever carries a job id: a series per job would grow without end.
//
// Counters start at zero with each daemon process (Prometheus's rate and
// increase handle the reset); only the last success per spider is seeded
// from the job history, because an alert on its age must survive a restart.
package metrics

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Jobs is the job store as /metrics reads it at each scrape: store.Store,
// or any store that passes appliance/store/storetest.
type Jobs interface {
	ActiveByProject(ctx context.Context) ([]store.ProjectCount, error)
	Counts() (pending, running, finished int)
}

// Options are what the scrape-time metrics read.
type Options struct {
	Version string
	// Node, in a cluster, is this node's name: Follow counts only the job
	// events it recorded, so that every node's counters add up to the
	// cluster's. "" (a single node) counts every event.
	Node string
	Jobs Jobs
	// Slots returns the slots of the configuration in force and how many
	// crawls hold one now.
	Slots func() (total, inUse int)
	// Running returns the running crawls with their live stats (those that
	// have not answered a poll yet may be left out).
	Running func(ctx context.Context) []Live
}

// Counts are the stats /metrics sums per spider: Scrapy's
// item_scraped_count, response_received_count and log_count/ERROR.
type Counts struct {
	Items, Responses, Errors int64
}

// Live is a running crawl's last polled stats.
type Live struct {
	Job             string // only to follow the crawl from live to final stats
	Project, Spider string
	Counts
}

// Started is what the metrics learn when a crawl starts.
type Started struct {
	Project, Spider string
	Scheduled       time.Time
	Started         time.Time
}

// Finished is what the metrics learn when a job ends: a crawl's end, or a
// start that failed.
type Finished struct {
	Job             string // only to follow the crawl from live to final stats
	Project, Spider string
	Outcome         job.Outcome
	Started, Ended  time.Time // Started is zero for a job that never ran
	Stats           Counts    // the final stats (zero when the crawl wrote none)
}

// Metrics is safe for concurrent use.
type Metrics struct {
	o   Options
	reg *prometheus.Registry

	finished    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	wait        *prometheus.HistogramVec
	lastSuccess *prometheus.GaugeVec
	requests    *prometheus.CounterVec
	reqDuration *prometheus.HistogramVec
	reloads     *prometheus.CounterVec
	reloadOK    prometheus.Gauge

	stats *spiderStats

	mu   sync.Mutex
	last map[spiderKey]time.Time // each spider's last success, as lastSuccess shows it
}

// Bucket bounds. Crawls run from seconds to days; jobs wait in the queue
// from milliseconds (a free slot) to hours (a full one); API calls from
// microseconds (listjobs) to seconds (an egg upload and its listing).
var (
	durationBuckets = []float64{10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400}
	waitBuckets     = []float64{0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400, 86400}
	requestBuckets  = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
)

// New registers every metric.
func New(o Options) *Metrics {
	m := &Metrics{o: o, reg: prometheus.NewRegistry(), stats: newSpiderStats(), last: map[spiderKey]time.Time{}}
	f := factory{m.reg}
	m.finished = f.counter("scrapyd_jobs_finished_total", "Jobs ended since the daemon started, by outcome (finished, failed, cancelled, lost).", "project", "spider", "outcome")
	m.duration = f.histogram("scrapyd_job_duration_seconds", "How long crawls ran, from start to end.", durationBuckets, "project", "spider")
	m.wait = f.histogram("scrapyd_job_queue_wait_seconds", "How long jobs waited in the queue before their crawl started.", waitBuckets, "project")
	m.lastSuccess = f.gauge("scrapyd_spider_last_success_timestamp_seconds", "When the spider's newest crawl with outcome finished ended (Unix time).", "project", "spider")
	m.requests = f.counter("scrapyd_http_requests_total", "HTTP requests answered, by route pattern and status code.", "endpoint", "code")
	m.reqDuration = f.histogram("scrapyd_http_request_duration_seconds", "How long HTTP requests took to answer, by route pattern.", requestBuckets, "endpoint")
	m.reloads = f.counter("scrapyd_config_reloads_total", "Configuration reloads tried, by result (success or error).", "result")
	m.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "scrapyd_config_last_reload_successful", Help: "1 when the last configuration reload was applied (or none was tried), 0 when the files are invalid."})
	m.reloadOK.Set(1)
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "scrapyd_build_info", Help: "Always 1; the labels say which release runs."}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(o.Version, runtime.Version()).Set(1)
	m.reg.MustRegister(m.reloadOK, buildInfo, &scrapeTime{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Seed gives each spider's last success as the history has it; a success
// recorded since (JobFinished) is newer and stays.
func (m *Metrics) Seed(last []store.SpiderSuccess) {
	for _, s := range last {
		m.succeeded(s.Project, s.Spider, s.Ended)
	}
}

// succeeded moves a spider's last success forward, never back.
func (m *Metrics) succeeded(project, spider string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := spiderKey{project, spider}
	if prev, ok := m.last[k]; ok && !at.After(prev) {
		return
	}
	m.last[k] = at
	m.lastSuccess.WithLabelValues(project, spider).Set(unix(at))
}

type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Handler serves the metrics in Prometheus's text format (gzipped for a
// scraper that asks).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// JobStarted records a crawl's wait in the queue.
func (m *Metrics) JobStarted(s Started) {
	if !s.Scheduled.IsZero() && !s.Started.IsZero() {
		m.wait.WithLabelValues(s.Project).Observe(s.Started.Sub(s.Scheduled).Seconds())
	}
}

// JobFinished records a job's end: its outcome, its crawl's duration, its
// final stats, and for a success the spider's last success.
func (m *Metrics) JobFinished(f Finished) {
	m.finished.WithLabelValues(f.Project, f.Spider, string(f.Outcome)).Inc()
	if !f.Started.IsZero() && !f.Ended.Before(f.Started) {
		m.duration.WithLabelValues(f.Project, f.Spider).Observe(f.Ended.Sub(f.Started).Seconds())
	}
	if f.Outcome == job.OutcomeFinished {
		m.succeeded(f.Project, f.Spider, f.Ended)
	}
	m.stats.finished(f)
}

// Request records one answered HTTP request. endpoint is the route's
// pattern, never the raw path: paths carry job ids and arbitrary input.
func (m *Metrics) Request(endpoint string, code int, d time.Duration) {
	m.requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
	m.reqDuration.WithLabelValues(endpoint).Observe(d.Seconds())
}

// Reloaded records a configuration reload's result (nil: applied).
func (m *Metrics) Reloaded(err error) {
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
		m.reloadOK.Set(0)
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.reloadOK.Set(1)
}

// scrapeTime is the collector of what is read at each scrape: jobs per
// state, slots, and the per-spider stats totals.
type scrapeTime struct{ m *Metrics }

var (
	jobsDesc      = prometheus.NewDesc("scrapyd_jobs", "Jobs per project in the queue (state pending) and running (state running).", []string{"project", "state"}, nil)
	historyDesc   = prometheus.NewDesc("scrapyd_history_jobs", "Finished jobs kept in the history (at most finished_to_keep).", nil, nil)
	slotsDesc     = prometheus.NewDesc("scrapyd_slots", "Crawl slots of the configuration in force (max_proc, or max_proc_per_cpu times the CPUs).", nil, nil)
	slotsUsedDesc = prometheus.NewDesc("scrapyd_slots_in_use", "Crawl slots held by running crawls.", nil, nil)
)

func (s *scrapeTime) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{jobsDesc, historyDesc, slotsDesc, slotsUsedDesc} {
		ch <- d
	}
	s.m.stats.describe(ch)
}

func (s *scrapeTime) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := s.m
	if m.o.Jobs != nil {
		// A database error leaves these gauges out of this scrape, and
		// only them; /readyz says the database is unreachable.
		counts, err := m.o.Jobs.ActiveByProject(ctx)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(jobsDesc, err)
		}
		for _, c := range counts {
			ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(c.Jobs), c.Project, string(c.State))
		}
		_, _, finished := m.o.Jobs.Counts()
		ch <- prometheus.MustNewConstMetric(historyDesc, prometheus.GaugeValue, float64(finished))
	}
	if m.o.Slots != nil {
		total, used := m.o.Slots()
		ch <- prometheus.MustNewConstMetric(slotsDesc, prometheus.GaugeValue, float64(total))
		ch <- prometheus.MustNewConstMetric(slotsUsedDesc, prometheus.GaugeValue, float64(used))
	}
	var live []Live
	if m.o.Running != nil {
		live = m.o.Running(ctx)
	}
	m.stats.collect(ch, live)
}

// spiderStats sums Scrapy's stats per spider as counters: the final stats
// of the crawls that ended, plus the live stats of those that run. A
// crawl's share never shrinks (its live stats are remembered at their
// highest until its end; its end adds the larger of those and its final
// stats), so the sums only grow.
type spiderStats struct {
	mu    sync.Mutex
	ended map[spiderKey]Counts // sums over ended crawls
	live  map[string]liveShare // running crawl id → its highest live stats seen
	done  map[string]time.Time // crawls ended lately: a scrape racing their end must not count them twice
	descs [3]*prometheus.Desc
}

type spiderKey struct{ project, spider string }

type liveShare struct {
	key spiderKey
	Counts
}

func newSpiderStats() *spiderStats {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"project", "spider"}, nil)
	}
	return &spiderStats{
		ended: map[spiderKey]Counts{}, live: map[string]liveShare{}, done: map[string]time.Time{},
		descs: [3]*prometheus.Desc{
			d("scrapyd_spider_items_scraped_total", "Items scraped (Scrapy's item_scraped_count), from the final stats of ended crawls and the live stats of running ones."),
			d("scrapyd_spider_responses_total", "Responses received (Scrapy's response_received_count), from final and live stats."),
			d("scrapyd_spider_errors_total", "Lines logged at ERROR level (Scrapy's log_count/ERROR), from final and live stats."),
		},
	}
}

func (s *spiderStats) describe(ch chan<- *prometheus.Desc) {
	for _, d := range s.descs {
		ch <- d
	}
}

func maxCounts(a, b Counts) Counts {
	return Counts{max(a.Items, b.Items), max(a.Responses, b.Responses), max(a.Errors, b.Errors)}
}

func (c Counts) plus(o Counts) Counts {
	return Counts{c.Items + o.Items, c.Responses + o.Responses, c.Errors + o.Errors}
}

func (s *spiderStats) finished(f Finished) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := spiderKey{f.Project, f.Spider}
	share := f.Stats
	if l, ok := s.live[f.Job]; ok {
		share = maxCounts(share, l.Counts)
		delete(s.live, f.Job)
	}
	s.ended[k] = s.ended[k].plus(share)
	s.done[f.Job] = time.Now()
}

// lateEnd is how long an ended crawl's live stats are ignored: longer than
// any scrape that read the running crawls before the end could take.
const lateEnd = time.Minute

func (s *spiderStats) collect(ch chan<- prometheus.Metric, running []Live) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for id, at := range s.done {
		if now.Sub(at) > lateEnd {
			delete(s.done, id)
		}
	}
	seen := make(map[string]bool, len(running))
	for _, l := range running {
		if _, ended := s.done[l.Job]; ended {
			continue
		}
		seen[l.Job] = true
		prev := s.live[l.Job]
		s.live[l.Job] = liveShare{spiderKey{l.Project, l.Spider}, maxCounts(prev.Counts, l.Counts)}
	}
	total := make(map[spiderKey]Counts, len(s.ended))
	for k, c := range s.ended {
		total[k] = c
	}
	// A crawl missing from one poll (it did not answer in time) keeps its
	// share: only its end, through finished, moves it to the ended sums.
	for _, l := range s.live {
		total[l.key] = total[l.key].plus(l.Counts)
	}
	for k, c := range total {
		for i, v := range []int64{c.Items, c.Responses, c.Errors} {
			ch <- prometheus.MustNewConstMetric(s.descs[i], prometheus.CounterValue, float64(v), k.project, k.spider)
		}
	}
}
