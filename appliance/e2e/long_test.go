package e2e

import (
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// Long tests run when SCRAPYD_LONG_TESTS=1 (packaging/run-tests.sh sets it
// for its long pass; CI runs it). They use a stand-in interpreter so that
// thousands of crawls start and end within CI's time.
func requireLong(t *testing.T) {
	if os.Getenv("SCRAPYD_LONG_TESTS") != "1" {
		t.Skip("a long test: set SCRAPYD_LONG_TESTS=1")
	}
}

func fakePython(t testing.TB) string {
	p, err := filepath.Abs("testdata/fakepython")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLongLoad: 50 concurrent clients schedule 20,000 jobs while crawls
// start and finish. Every acknowledged job is accounted for exactly once,
// ids never repeat, no slot leaks, memory stays bounded, and a page of
// listjobs.json stays fast throughout.
func TestLongLoad(t *testing.T) {
	requireLong(t)
	const clients, total = 50, 20000
	d := testkit.StartDaemon(t, testkit.Options{
		Conf: fmt.Sprintf("python = %s\nmax_proc = 8\nfinished_to_keep = %d\njobs_to_keep = 0\nlogs_dir =\nitems_dir =", fakePython(t), total),
		Env:  []string{"FAKE_CRAWL_SECONDS=0.01"},
	})
	if r := d.Upload(t, "load", "1", testkit.SampleEgg(t)); r["status"] != "ok" {
		t.Fatalf("upload: %v", r)
	}
	hc := &fasthttp.HostClient{Addr: fmt.Sprintf("127.0.0.1:%d", d.Port), MaxConns: clients}
	ids := make(chan string, total)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	stop := make(chan struct{})
	// A watcher pages listjobs.json while the load runs.
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			t0 := time.Now()
			resp, err := http.Get(d.URL + "/listjobs.json?state=finished&limit=100")
			if err == nil {
				resp.Body.Close()
			}
			if el := time.Since(t0); el > slowest {
				mu.Lock()
				slowest = el
				mu.Unlock()
			}
		}
	}()
	t0 := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			req.Header.SetMethod("POST")
			req.Header.SetContentType("application/x-www-form-urlencoded")
			req.SetRequestURI(d.URL + "/schedule.json")
			for i := c; i < total; i += clients {
				req.SetBodyString(fmt.Sprintf("project=load&spider=params&n=%d&priority=%d", i, i%3))
				if err := hc.Do(req, resp); err != nil {
					t.Error(err)
					return
				}
				body := string(resp.Body())
				if !strings.Contains(body, `"status": "ok"`) {
					t.Errorf("schedule: %s", body)
					return
				}
				ids <- body[strings.Index(body, `"jobid": "`)+10 : strings.Index(body, `", "status"`)]
			}
		}(c)
	}
	wg.Wait()
	close(ids)
	scheduled := time.Since(t0)
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Fatalf("job id %s given twice", id)
		}
		seen[id] = true
	}
	if len(seen) != total {
		t.Fatalf("%d jobs acknowledged, want %d", len(seen), total)
	}
	st := d.Get(t, "daemonstatus.json", nil)
	if n := st["pending"].(float64) + st["running"].(float64) + st["finished"].(float64); n != total {
		t.Fatalf("accounted for %v jobs, want %d: %v", n, total, st)
	}
	if st["running"].(float64) > 8 {
		t.Fatalf("more crawls than slots: %v", st)
	}
	testkit.Eventually(t, 10*time.Minute, "every job to finish", func() bool {
		st = d.Get(t, "daemonstatus.json", nil)
		return st["finished"] == float64(total)
	})
	close(stop)
	finished := d.Get(t, "listjobs.json", url.Values{"state": {"finished"}})["finished"].([]any)
	for _, e := range finished {
		m := e.(map[string]any)
		if !seen[m["id"].(string)] || m["outcome"] != "finished" {
			t.Fatalf("unexpected finished entry %v", m)
		}
		delete(seen, m["id"].(string))
	}
	if len(seen) != 0 || st["running"] != 0.0 || st["pending"] != 0.0 {
		t.Fatalf("%d acknowledged jobs never finished; status %v", len(seen), st)
	}
	rss := rssMiB(t, d.PID())
	t.Logf("scheduled %d jobs from %d clients in %s (%.0f/s); all finished after %s; RSS %.1f MiB; slowest listjobs page during load %s",
		total, clients, scheduled.Round(time.Millisecond), total/scheduled.Seconds(), time.Since(t0).Round(time.Second), rss, slowest.Round(time.Millisecond))
	if rss > 100 {
		t.Errorf("daemon RSS %.1f MiB after 20,000 jobs: memory is not bounded", rss)
	}
}

// TestLongKillAtRandomMoments kills the daemon with SIGKILL at seeded random
// moments while uploads, schedules, dispatch and crawl ends are in flight,
// restarts it, and checks that nothing acknowledged was lost: every
// acknowledged upload is listed and whole, every acknowledged schedule is
// pending, running or finished exactly once, and no upload is half written.
func TestLongKillAtRandomMoments(t *testing.T) {
	requireLong(t)
	seed := time.Now().UnixNano()
	if s := os.Getenv("SCRAPYD_FAULT_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (SCRAPYD_FAULT_SEED reproduces)", seed)
	rng := rand.New(rand.NewSource(seed))
	conf := fmt.Sprintf("python = %s\nmax_proc = 4\nfinished_to_keep = 100000\nlogs_dir =\nitems_dir =", fakePython(t))
	env := []string{"FAKE_CRAWL_SECONDS=0.05"}
	d := testkit.StartDaemon(t, testkit.Options{Conf: conf, Env: env})
	egg := testkit.SampleEgg(t)
	d.Upload(t, "fault", "0", egg)
	ackedJobs := map[string]bool{}
	ackedVersions := map[string]bool{"0": true}
	for iter := 0; iter < 25; iter++ {
		var mu sync.Mutex
		var wg sync.WaitGroup
		done := make(chan struct{})
		for c := 0; c < 4; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				for n := 0; ; n++ {
					select {
					case <-done:
						return
					default:
					}
					if c == 0 && n%5 == 0 {
						v := fmt.Sprintf("%d.%d", iter, n)
						body, ct := testkit.Multipart(t, map[string]string{"project": "fault", "version": v}, "egg", egg)
						resp, err := http.Post(d.URL+"/addversion.json", ct, body)
						if err != nil {
							return // the daemon died under us: not acknowledged
						}
						ok := readOK(resp)
						if ok {
							mu.Lock()
							ackedVersions[v] = true
							mu.Unlock()
						}
						continue
					}
					id := fmt.Sprintf("i%d-c%d-n%d", iter, c, n)
					resp, err := http.PostForm(d.URL+"/schedule.json", url.Values{"project": {"fault"}, "spider": {"params"}, "jobid": {id}})
					if err != nil {
						return
					}
					if readOK(resp) {
						mu.Lock()
						ackedJobs[id] = true
						mu.Unlock()
					}
				}
			}(c)
		}
		time.Sleep(time.Duration(rng.Intn(400)) * time.Millisecond)
		d.Kill()
		close(done)
		wg.Wait()
		d = testkit.StartDaemon(t, testkit.Options{Root: d.Root, Conf: conf, Env: env})
		checkNothingLost(t, d, ackedJobs, ackedVersions)
	}
	testkit.Eventually(t, 5*time.Minute, "every job to finish after the last restart", func() bool {
		st := d.Get(t, "daemonstatus.json", nil)
		return st["pending"] == 0.0 && st["running"] == 0.0
	})
	checkNothingLost(t, d, ackedJobs, ackedVersions)
	t.Logf("%d kills; %d acknowledged schedules and %d uploads all kept", 25, len(ackedJobs), len(ackedVersions))
}

// readOK reads a whole answer and says whether it was acknowledged.
func readOK(resp *http.Response) bool {
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return err == nil && strings.Contains(string(body), `"status": "ok"`)
}

func checkNothingLost(t *testing.T, d *testkit.Daemon, jobs, versions map[string]bool) {
	t.Helper()
	l := d.Get(t, "listjobs.json", nil)
	states := map[string]string{}
	for _, state := range []string{"pending", "running", "finished"} {
		for _, e := range l[state].([]any) {
			id := e.(map[string]any)["id"].(string)
			if prev, dup := states[id]; dup {
				t.Fatalf("job %s is both %s and %s", id, prev, state)
			}
			states[id] = state
		}
	}
	for id := range jobs {
		if states[id] == "" {
			t.Fatalf("acknowledged job %s was lost", id)
		}
	}
	vs := map[string]bool{}
	for _, v := range d.Get(t, "listversions.json", url.Values{"project": {"fault"}})["versions"].([]any) {
		vs[v.(string)] = true
	}
	for v := range versions {
		if !vs[v] {
			t.Fatalf("acknowledged upload %s was lost", v)
		}
	}
	// No half-written egg: every stored egg is complete, and no staging
	// file survives a restart.
	eggs, _ := filepath.Glob(d.Path("var/lib/scrapyd/eggs/fault/*.egg"))
	want := testkit.SampleEgg(t)
	for _, e := range eggs {
		if data, _ := os.ReadFile(e); string(data) != string(want) {
			t.Fatalf("egg %s is not the uploaded egg (%d bytes)", e, len(data))
		}
	}
	if left, _ := os.ReadDir(d.Path("var/lib/scrapyd/eggs/.staging")); len(left) != 0 {
		t.Fatalf("staging files left after restart: %v", left)
	}
}
