package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// BenchmarkMetrics1000Spiders is /metrics on the real binary over a
// history of 100,000 finished jobs of 1,000 spiders in ten projects: what
// each scrape reads from the database (active jobs per project and state:
// none of the history) and what the daemon reads once after its start
// (each spider's last success, so 1,000 last-success series). The per-spider counters and histograms of 1,000
// spiders are in appliance/metrics's BenchmarkScrape1000Spiders, which
// the real crawls this would need cannot seed here:
//
//	go test -run '^$' -bench Metrics1000Spiders ./appliance/e2e
func BenchmarkMetrics1000Spiders(b *testing.B) {
	const jobs, spiders = 100_000, 1000
	root := testkit.TraversableTempDir(b)
	dbs := filepath.Join(root, "var", "lib", "scrapyd", "dbs")
	writeHistory(b, dbs, jobs, spiders)
	st, err := store.Open(dbs)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("store-LastSuccesses-once-at-start", func(b *testing.B) {
		for range b.N {
			if l, err := st.LastSuccesses(ctx); err != nil || len(l) != spiders {
				b.Fatal(len(l), err)
			}
		}
	})
	b.Run("store-ActiveByProject-each-scrape", func(b *testing.B) {
		for range b.N {
			if c, err := st.ActiveByProject(ctx); err != nil || len(c) != 0 {
				b.Fatal(c, err)
			}
		}
	})
	st.Close()
	d := testkit.StartDaemon(b, testkit.Options{Root: root, Conf: fmt.Sprintf("finished_to_keep = %d", 2*jobs)})
	hc := &fasthttp.HostClient{Addr: fmt.Sprintf("127.0.0.1:%d", d.Port), MaxConns: 1, MaxResponseBodySize: 64 << 20}
	// The daemon reads the last successes after it starts serving.
	testkit.Eventually(b, time.Minute, "the last successes read from the history", func() bool {
		_, body, err := hc.Get(nil, d.URL+"/metrics")
		return err == nil && strings.Count(string(body), "scrapyd_spider_last_success_timestamp_seconds{") == spiders
	})
	b.Run("scrape", func(b *testing.B) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(d.URL + "/metrics")
		testkit.Latencies(b, func() {
			if err := hc.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Fatal(err, resp.StatusCode())
			}
		})
		if n := strings.Count(string(resp.Body()), "scrapyd_spider_last_success_timestamp_seconds{"); n != spiders {
			b.Fatalf("%d last-success series, want %d", n, spiders)
		}
		b.ReportMetric(float64(len(resp.Body())), "bytes/scrape")
	})
}
