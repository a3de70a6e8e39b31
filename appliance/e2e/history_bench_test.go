package e2e

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// historySize is the finished history BenchmarkHistory1M runs on: a year
// of a busy node (issue 14 point 5).
const historySize = 1_000_000

// BenchmarkHistory1M runs the real binary on a database holding a million
// finished jobs in ten projects and reports what the history costs: the
// daemon's resident memory (VmRSS after the requests, VmHWM its peak),
// listjobs.json's finished page of 100 and the /browse page (p50 and p99).
// The history is written with SQL straight into a database the store made,
// in one transaction (a few seconds), so only this benchmark pays for it:
//
//	go test -run '^$' -bench History1M ./appliance/e2e
func BenchmarkHistory1M(b *testing.B) {
	// A root daemon's crawl user must reach its root (TestPrivateDataDirectory).
	root := testkit.TraversableTempDir(b)
	dbs := filepath.Join(root, "var", "lib", "scrapyd", "dbs")
	writeHistory(b, dbs, historySize, 3)
	var conf strings.Builder
	fmt.Fprintf(&conf, "finished_to_keep = %d\n[settings]\n", 2*historySize)
	for p := range 10 {
		fmt.Fprintf(&conf, "p%d = p%d.settings\n", p, p)
	}
	d := testkit.StartDaemon(b, testkit.Options{Root: root, Conf: conf.String()})
	started := rssMiB(b, d.PID())
	hc := &fasthttp.HostClient{Addr: fmt.Sprintf("127.0.0.1:%d", d.Port), MaxConns: 1, MaxResponseBodySize: 8 << 20}
	get := func(b *testing.B, path, want string, count int) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(d.URL + path)
		testkit.Latencies(b, func() {
			if err := hc.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Fatal(err, resp.StatusCode())
			}
		})
		if n := strings.Count(string(resp.Body()), want); n != count {
			b.Fatalf("%s: %d times %q, want %d:\n%.2000s", path, n, want, count, resp.Body())
		}
	}
	if r := d.Get(b, "daemonstatus.json", nil); r["finished"] != float64(historySize) {
		b.Fatalf("daemonstatus: %v", r)
	}
	b.Run("listjobs-finished-limit100", func(b *testing.B) {
		get(b, "/listjobs.json?state=finished&limit=100", `"outcome": "finished"`, 100)
	})
	b.Run("listjobs-project-finished-limit100", func(b *testing.B) {
		get(b, "/listjobs.json?project=p3&state=finished&limit=100&offset=5000", `"project": "p3"`, 100)
	})
	b.Run("browse", func(b *testing.B) {
		get(b, "/browse", `data-label="Job"`, 50) // a page of 50
	})
	b.Run("status", func(b *testing.B) {
		get(b, "/status.json?job="+fmt.Sprintf("%032x", historySize/2), `"currstate": "finished"`, 1)
	})
	// A benchmark with sub-benchmarks reports nothing itself.
	b.Run("memory", func(b *testing.B) {
		b.ReportMetric(started, "started-VmRSS-MiB")
		b.ReportMetric(rssMiB(b, d.PID()), "VmRSS-MiB")
		b.ReportMetric(procStatusMiB(b, d.PID(), "VmHWM"), "VmHWM-MiB")
	})
}

// writeHistory makes the store's database in dir, then adds n finished
// jobs, one ended every second, in ten projects and the given number of
// spiders (job n runs spider s<n % spiders> of project p<n % 10>).
func writeHistory(b *testing.B, dir string, n, spiders int) {
	st, err := store.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	st.Close()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, store.FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	t0 := time.Now()
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	_, err = db.Exec(`WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < ?)
		INSERT INTO jobs (id, project, spider, state, scheduled, started, ended, pid, handle, exit_code, outcome)
		SELECT printf('%032x', n), 'p' || (n % 10), 's' || (n % ?), 'finished', ? + n * 1000000000 - 5000000000,
			? + n * 1000000000 - 4000000000, ? + n * 1000000000, 1000 + n % 30000, '{}', 0, 'finished' FROM c`,
		n, spiders, start, start, start)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d finished jobs written in %v", n, time.Since(t0))
}
