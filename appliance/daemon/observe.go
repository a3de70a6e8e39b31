package daemon

import (
	"context"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/health"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/metrics"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// metricsPath is where Prometheus scrapes.
const metricsPath = "/metrics"

// newMetrics builds the metrics over the store, the dispatcher and the
// crawl web service.
func (d *daemon) newMetrics() *metrics.Metrics {
	st, rpc := d.store, d.rpc
	return metrics.New(metrics.Options{
		Version: d.opts.Version,
		Jobs:    st,
		Slots:   func() (int, int) { return d.conf().Slots(), d.disp.Running() },
		Running: func(ctx context.Context) []metrics.Live {
			running, _ := st.List(ctx, job.Running, store.Filter{})
			var out []metrics.Live
			for _, j := range running {
				if sum, ok := rpc.LiveSummary(j.ID); ok {
					out = append(out, metrics.Live{Job: j.ID, Project: j.Project, Spider: j.Spider, Counts: metrics.FromSummary(sum)})
				}
			}
			return out
		},
	})
}

// seedMetrics gives the metrics each spider's last success from the
// history. It reads the whole history, so the daemon serves meanwhile.
func (d *daemon) seedMetrics(ctx context.Context) {
	last, err := d.store.LastSuccesses(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error("cannot read the spiders' last successes; /metrics has each from its next success on", "err", err)
		}
		return
	}
	d.metrics.Seed(last)
}

// open says which paths need no credentials: the health probes always,
// /metrics when metrics_public is on (read per request: the option is live).
func (d *daemon) open(path string) bool {
	return health.Open(path) || (path == metricsPath && d.conf().MetricsPublic)
}

// observeRoutes adds /metrics and the health probes.
func (d *daemon) observeRoutes(m *metrics.Metrics) func(fiber.Router) {
	probes := health.Register(health.Options{
		Ping:       d.store.Ping,
		Configured: func() bool { return d.conf() != nil },
		Slots:      func() int { return d.conf().Slots() },
	})
	h := adaptor.HTTPHandler(m.Handler())
	return func(r fiber.Router) {
		probes(r)
		r.Get(metricsPath, h)
	}
}

// observedJobs is the job store as the dispatcher uses it, telling the
// metrics of every crawl it records as started or ended: the one place
// every end passes, a failed start included. It serves until the job
// events (h17-events) give the metrics their own feed.
type observedJobs struct {
	dispatch.Jobs
	m *metrics.Metrics

	mu      sync.Mutex
	running map[int64]job.Job // by seq: End knows only the seq
}

func observeJobs(jobs dispatch.Jobs, m *metrics.Metrics) *observedJobs {
	return &observedJobs{Jobs: jobs, m: m, running: map[int64]job.Job{}}
}

func (o *observedJobs) remember(j job.Job) {
	o.mu.Lock()
	o.running[j.Seq] = j
	o.mu.Unlock()
}

func (o *observedJobs) forget(seq int64) (job.Job, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	j, ok := o.running[seq]
	delete(o.running, seq)
	return j, ok
}

// List learns the crawls a previous daemon left running (adoption).
func (o *observedJobs) List(ctx context.Context, state job.State, f store.Filter) ([]job.Job, error) {
	jobs, err := o.Jobs.List(ctx, state, f)
	if state == job.Running {
		for _, j := range jobs {
			o.remember(j)
		}
	}
	return jobs, err
}

func (o *observedJobs) Claim(now time.Time, caps store.Caps) (*job.Job, error) {
	j, err := o.Jobs.Claim(now, caps)
	if j != nil {
		o.remember(*j)
		o.m.JobStarted(metrics.Started{Project: j.Project, Spider: j.Spider, Scheduled: j.Scheduled, Started: j.Started})
	}
	return j, err
}

func (o *observedJobs) Requeue(seq int64) error {
	err := o.Jobs.Requeue(seq)
	if err == nil {
		o.forget(seq)
	}
	return err
}

func (o *observedJobs) End(seq int64, ended time.Time, exit *int, outcome job.Outcome, stats string, keep int) error {
	err := o.Jobs.End(seq, ended, exit, outcome, stats, keep)
	if err != nil {
		return err
	}
	if j, ok := o.forget(seq); ok {
		j.Stats = stats
		o.m.JobFinished(metrics.Finished{Job: j.ID, Project: j.Project, Spider: j.Spider, Outcome: outcome,
			Started: j.Started, Ended: ended, Stats: metrics.FinalCounts(j)})
	}
	return nil
}
