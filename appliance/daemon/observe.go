package daemon

import (
	"context"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

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
	node := ""
	if d.db.nodes != nil {
		// Cluster mode: the feed carries every node's events; this
		// node's counters count its own.
		node = d.conf().NodeName
	}
	return metrics.New(metrics.Options{
		Version: d.opts.Version,
		Node:    node,
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
		Adopted: func() bool {
			select {
			case <-d.disp.Adopted():
				return true
			default:
				return false
			}
		},
	})
	h := adaptor.HTTPHandler(m.Handler())
	return func(r fiber.Router) {
		probes(r)
		r.Get(metricsPath, h)
	}
}
