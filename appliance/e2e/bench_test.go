package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// BenchmarkDaemonStatus16Conns: daemonstatus.json requests per second
// against the real binary over 16 keep-alive connections (today's Scrapyd
// serves about 3,000 per second on one). The load generator shares the
// machine's two cores with the daemon.
func BenchmarkDaemonStatus16Conns(b *testing.B) {
	d := testkit.StartDaemon(b, testkit.Options{})
	hc := &fasthttp.HostClient{Addr: fmt.Sprintf("127.0.0.1:%d", d.Port), MaxConns: 16}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	t0 := time.Now()
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(d.URL + "/daemonstatus.json")
			for next.Add(1) <= int64(b.N) {
				if err := hc.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Error(err, resp.StatusCode())
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "req/s")
}

// BenchmarkListJobs1000Finished: listjobs.json from the real binary over
// one keep-alive connection, with 1,000 finished jobs that each have a log
// file (a history written straight into the daemon's database before it
// starts, since a thousand real crawls would take minutes).
func BenchmarkListJobs1000Finished(b *testing.B) {
	// A root daemon's crawl user must reach its root (TestPrivateDataDirectory).
	root := testkit.TraversableTempDir(b)
	st, err := store.Open(filepath.Join(root, "var", "lib", "scrapyd", "dbs"))
	if err != nil {
		b.Fatal(err)
	}
	logs := filepath.Join(root, "var", "log", "scrapyd", "sample", "catalog")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		b.Fatal(err)
	}
	// A root daemon's crawls write their logs here as the crawl user, and
	// the daemon refuses to start when that user could not.
	if err := os.Chmod(logs, 0o777); err != nil {
		b.Fatal(err)
	}
	for range 1000 {
		j, err := st.Enqueue(job.Spec{ID: job.NewID(), Project: "sample", Spider: "catalog"}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		st.Claim(time.Now(), nil)
		code := 0
		if err := st.End(j.Seq, time.Now(), &code, job.OutcomeFinished, "", 1000); err != nil {
			b.Fatal(err)
		}
		os.WriteFile(filepath.Join(logs, j.ID+".log"), nil, 0o644)
	}
	st.Close()
	d := testkit.StartDaemon(b, testkit.Options{Root: root, Conf: "finished_to_keep = 1000\njobs_to_keep = 1000"})
	hc := &fasthttp.HostClient{Addr: fmt.Sprintf("127.0.0.1:%d", d.Port), MaxConns: 1, MaxResponseBodySize: 8 << 20}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(d.URL + "/listjobs.json")
	testkit.Latencies(b, func() {
		if err := hc.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			b.Fatal(err, resp.StatusCode())
		}
	})
	if n := strings.Count(string(resp.Body()), `"log_url": "/logs/`); n != 1000 {
		b.Fatalf("%d finished jobs with a log link, want 1000", n)
	}
}

// BenchmarkDaemonRSS reports the daemon's resident memory idle and with
// 10,000 pending jobs (Scrapyd uses about 62 MiB idle). It measures once,
// whatever b.N is.
func BenchmarkDaemonRSS(b *testing.B) {
	testkit.RequireScrapy(b)
	d := testkit.StartDaemon(b, testkit.Options{Conf: "max_proc = 1"})
	time.Sleep(time.Second)
	idle := rssMiB(b, d.PID())
	d.Upload(b, "sample", "1.0", testkit.SampleEgg(b))
	// One lingering crawl holds the only slot, so everything else stays pending.
	hold := schedule(b, d, url.Values{"project": {"sample"}, "spider": {"slow"}, "linger": {"600"}})
	run := waitState(b, d, hold, "running")
	defer syscall.Kill(-int(run["pid"].(float64)), syscall.SIGKILL)
	hc := &fasthttp.HostClient{Addr: fmt.Sprintf("127.0.0.1:%d", d.Port), MaxConns: 8}
	var wg sync.WaitGroup
	var next atomic.Int64
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			req.Header.SetMethod("POST")
			req.Header.SetContentType("application/x-www-form-urlencoded")
			req.SetRequestURI(d.URL + "/schedule.json")
			for next.Add(1) <= 10000 {
				req.SetBodyString("project=sample&spider=params&limit=1&category=c")
				if err := hc.Do(req, resp); err != nil || !strings.Contains(string(resp.Body()), `"ok"`) {
					b.Error(err, string(resp.Body()))
					return
				}
			}
		}()
	}
	wg.Wait()
	if r := d.Get(b, "daemonstatus.json", nil); r["pending"] != 10000.0 {
		b.Fatalf("daemonstatus: %v", r)
	}
	b.ReportMetric(rssMiB(b, d.PID()), "10k-scheduled-RSS-MiB")
	d.Get(b, "listjobs.json", nil)
	b.ReportMetric(idle, "idle-RSS-MiB")
	b.ReportMetric(rssMiB(b, d.PID()), "10k-pending-RSS-MiB")
}

func rssMiB(b testing.TB, pid int) float64 { return procStatusMiB(b, pid, "VmRSS") }
