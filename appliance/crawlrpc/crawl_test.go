package crawlrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/eggbuild"
)

// python is Debian 12's interpreter with python3-scrapy (Scrapy 2.8,
// Twisted 22.4). The python3 on a developer's PATH may lack Scrapy.
const python = "/usr/bin/python3"

// waitLimit bounds every wait for a crawl's state; it is a deadline for a
// condition, not a speed requirement.
const waitLimit = 60 * time.Second

// requireScrapy skips real-crawl tests where Scrapy is missing, except in
// CI, where a skip would hide a broken test machine.
func requireScrapy(tb testing.TB) {
	tb.Helper()
	out, err := exec.Command(python, "-c", "import scrapy").CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("real crawls need %s with Scrapy (Debian: apt install python3-scrapy): %v %s", python, err, out)
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// fixture runs real crawls of the sample project, with the service mounted
// in a fiber app.
type fixture struct {
	svc        *Service
	app        *fiber.App
	pythonPath string // the sample egg and testdata/site (a settings module with its own EXTENSIONS)
	dir        string

	env []string // added to every crawl's environment

	mu      sync.Mutex
	running map[string]bool
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	requireScrapy(tb)
	f := &fixture{dir: tb.TempDir(), running: map[string]bool{}}
	egg, err := eggbuild.Build(eggbuild.Options{Dir: "../e2e/testdata/sample", Settings: "sample.settings"})
	if err != nil {
		tb.Fatal(err)
	}
	eggPath := filepath.Join(f.dir, "sample.egg")
	if err := os.WriteFile(eggPath, egg, 0o644); err != nil {
		tb.Fatal(err)
	}
	site, err := filepath.Abs("testdata/site")
	if err != nil {
		tb.Fatal(err)
	}
	f.pythonPath = eggPath + ":" + site
	f.svc, f.app = newService(tb, DefaultConfig(), f.isRunning)
	return f
}

func (f *fixture) isRunning(job string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running[job]
}

func (f *fixture) setRunning(job string, running bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running[job] = running
}

type crawl struct {
	job  string
	proc *os.Process
	log  string // the crawl's stderr+stdout file
	done chan struct{}
	err  error // valid after done
}

// start runs `scrapy crawl <args>` for job as the daemon will: the
// project's settings module named by SCRAPY_SETTINGS_MODULE, the egg on
// PYTHONPATH, and (withService) Prepare's additions applied on top.
func (f *fixture) start(tb testing.TB, job, settingsModule string, withService bool, args ...string) *crawl {
	tb.Helper()
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"PYTHONDONTWRITEBYTECODE=1",
		"PYTHONPATH=" + f.pythonPath,
		"SCRAPY_SETTINGS_MODULE=" + settingsModule,
	}
	env = append(env, f.env...)
	if withService {
		add, err := f.svc.Prepare(job, settingsModule)
		if err != nil {
			tb.Fatal(err)
		}
		env = add.Apply(env)
	}
	c := &crawl{job: job, log: filepath.Join(f.dir, job+".log"), done: make(chan struct{})}
	out, err := os.Create(c.log)
	if err != nil {
		tb.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(python, append([]string{"-m", "scrapy", "crawl"}, args...)...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, f.dir, out, out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	c.proc = cmd.Process
	f.setRunning(job, true)
	go func() {
		c.err = cmd.Wait()
		f.setRunning(job, false)
		close(c.done)
	}()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-c.done
		f.svc.Cleanup(job)
	})
	return c
}

func (c *crawl) wait(tb testing.TB) {
	tb.Helper()
	select {
	case <-c.done:
	case <-time.After(waitLimit):
		tb.Fatalf("crawl %s did not end within %v", c.job, waitLimit)
	}
	if c.err != nil {
		b, _ := os.ReadFile(c.log)
		tb.Fatalf("crawl %s: %v\n%s", c.job, c.err, b)
	}
}

// eventually polls cond until it holds or waitLimit passes.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type rpcReply struct {
	Result json.RawMessage
	Error  *rpcError
	ID     json.RawMessage
}

// rpc posts a JSON-RPC body to /webservice/<job>/<path>.
func (f *fixture) rpc(tb testing.TB, job, path, body string) rpcReply {
	tb.Helper()
	status, _, out := do(tb, f.app, "POST", "/webservice/"+job+"/"+path, body)
	var r rpcReply
	if err := json.Unmarshal([]byte(out), &r); err != nil || status != 200 {
		tb.Fatalf("POST %s %s: %d %q %v", path, body, status, out, err)
	}
	return r
}

// call makes a successful call and decodes its result into out.
func (f *fixture) call(tb testing.TB, job, path, method string, out any, params ...any) {
	tb.Helper()
	if params == nil {
		params = []any{}
	}
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
	if err != nil {
		tb.Fatal(err)
	}
	r := f.rpc(tb, job, path, string(body))
	if r.Error != nil || string(r.ID) != "1" {
		tb.Fatalf("%s.%s%v: error %+v id %s", path, method, params, r.Error, r.ID)
	}
	if out != nil {
		if err := json.Unmarshal(r.Result, out); err != nil {
			tb.Fatalf("%s.%s: result %s: %v", path, method, r.Result, err)
		}
	}
}

func (f *fixture) get(tb testing.TB, job, path string, out any) int {
	tb.Helper()
	status, _, body := do(tb, f.app, "GET", "/webservice/"+job+"/"+path, "")
	if status == 200 {
		if err := json.Unmarshal([]byte(body), out); err != nil {
			tb.Fatalf("GET %s: %q: %v", path, body, err)
		}
	}
	return status
}

func (f *fixture) stat(tb testing.TB, job, key string) (v int64) {
	tb.Helper()
	f.call(tb, job, "stats", "get_value", &v, key, 0)
	return v
}

// engineStatus returns enginestatus as a map of expression to value.
func (f *fixture) engineStatus(tb testing.TB, job string) map[string]any {
	tb.Helper()
	var pairs [][2]any
	if status := f.get(tb, job, "enginestatus", &pairs); status != 200 {
		tb.Fatalf("enginestatus: HTTP %d", status)
	}
	m := map[string]any{}
	for _, p := range pairs {
		m[p[0].(string)] = p[1]
	}
	return m
}

// TestCrawl drives one real crawl through every resource: stats, engine
// status, spider references, pause and unpause, the JSON-RPC errors, and a
// close_spider that ends the crawl with reason "cancelled".
func TestCrawl(t *testing.T) {
	f := newFixture(t)
	const job = "run-crawl"
	c := f.start(t, job, "crawlrpctest_settings", true, "slow", "-a", "pages=1000")

	// The socket appears at engine_started, a second or so after the start.
	eventually(t, "the crawl's web service", func() bool {
		var v any
		return f.get(t, job, "enginestatus", &v) == 200
	})
	dirInfo, err := os.Stat(f.svc.SocketDir(job))
	if err != nil || dirInfo.Mode().Perm() != 0o700 {
		t.Errorf("job dir %v %v, want 0700", dirInfo.Mode(), err)
	}
	sockInfo, err := os.Stat(f.svc.socketPath(job))
	if err != nil || sockInfo.Mode().Perm() != 0o600 || sockInfo.Mode().Type() != os.ModeSocket {
		t.Errorf("socket %v %v, want a socket with mode 0600", sockInfo.Mode(), err)
	}

	t.Run("resources", func(t *testing.T) {
		var root map[string][]string
		f.get(t, job, "", &root)
		if got := strings.Join(root["resources"], ","); got != "crawler,enginestatus,stats" {
			t.Errorf("resources %q", got)
		}
		var spiders []string
		f.call(t, job, "crawler/spiders", "list", &spiders)
		if got := strings.Join(spiders, ","); got != "catalog,failing,params,slow" {
			t.Errorf("spiders.list() = %q", got)
		}
	})

	t.Run("stats grow", func(t *testing.T) {
		first := f.stat(t, job, "item_scraped_count")
		eventually(t, "more items", func() bool { return f.stat(t, job, "item_scraped_count") > first })
		if f.stat(t, job, "crawlrpctest/marker") != 1 {
			t.Error("the project's own extension (EXTENSIONS) did not run")
		}
		live, err := f.svc.LiveStats(context.Background(), job)
		if err != nil {
			t.Fatal(err)
		}
		if sum, err := Summarize(live); err != nil || sum.ItemsScraped < first || sum.Responses < sum.ItemsScraped {
			t.Errorf("LiveStats summary %+v %v", sum, err)
		}
	})

	t.Run("enginestatus", func(t *testing.T) {
		st := f.engineStatus(t, job)
		if st["engine.spider.name"] != "slow" || st["engine.slot.closing"] != nil {
			t.Errorf("enginestatus %v", st)
		}
		if v, ok := st["time()-engine.start_time"].(float64); !ok || v <= 0 {
			t.Errorf("time()-engine.start_time = %v", st["time()-engine.start_time"])
		}
	})

	t.Run("spider references", func(t *testing.T) {
		var open []string
		f.get(t, job, "crawler/engine/open_spiders", &open)
		if len(open) != 1 || !strings.HasPrefix(open[0], "spider:") || !strings.HasSuffix(open[0], ":slow") {
			t.Fatalf("open_spiders %q", open)
		}
		var stats map[string]any
		f.call(t, job, "stats", "get_stats", &stats, open[0])
		if _, ok := stats["start_time"].(string); !ok {
			t.Errorf("get_stats(spider): start_time %v", stats["start_time"])
		}
		r := f.rpc(t, job, "stats", `{"jsonrpc":"2.0","method":"get_stats","params":["spider:0:nope"],"id":5}`)
		if r.Error == nil || r.Error.Code != codeInternalError || r.Error.Message != "Spider not running: spider:0:nope" {
			t.Errorf("unknown spider reference: %+v", r.Error)
		}
	})

	t.Run("stats methods", func(t *testing.T) {
		var v int64
		f.call(t, job, "stats", "set_value", nil, "test/x", 5)
		f.call(t, job, "stats", "inc_value", nil, "test/x", 2)
		f.call(t, job, "stats", "get_value", &v, "test/x")
		if v != 7 {
			t.Errorf("after set 5, inc 2: %d", v)
		}
		f.call(t, job, "stats", "max_value", nil, "test/x", 10)
		// Keyword params (an object), as jsonrpc_server_call allowed.
		if r := f.rpc(t, job, "stats", `{"method":"min_value","params":{"key":"test/x","value":3},"id":2}`); r.Error != nil {
			t.Errorf("min_value with keyword params: %+v", r.Error)
		}
		if f.stat(t, job, "test/x") != 3 {
			t.Errorf("after max 10, min 3: %d", f.stat(t, job, "test/x"))
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tt := range []struct {
			body string
			code int
		}{
			{`{"jsonrpc": "2.0", "method": `, codeParseError},
			{`{"jsonrpc":"2.0","method":"get_stats"}`, codeInvalidRequest},
			{`[{"jsonrpc":"2.0","method":"get_stats","id":1}]`, codeInvalidRequest},
			{`{"jsonrpc":"2.0","method":"_stats","id":1}`, codeMethodNotFound},
			{`{"jsonrpc":"2.0","method":"get_value","id":1}`, codeInternalError}, // missing key argument
		} {
			if r := f.rpc(t, job, "stats", tt.body); r.Error == nil || r.Error.Code != tt.code {
				t.Errorf("%s: %+v, want code %d", tt.body, r.Error, tt.code)
			}
		}
		r := f.rpc(t, job, "stats", `{"jsonrpc":"2.0","method":"get_value","id":1}`)
		if data, _ := r.Error.Data.(string); !strings.Contains(r.Error.Message, "missing 1 required positional argument") ||
			!strings.Contains(data, "Traceback") {
			t.Errorf("wrong arguments: %+v", r.Error)
		}
	})

	t.Run("python whitelist", func(t *testing.T) {
		// Straight to the socket, past the Go checks: the crawl refuses too.
		for _, req := range []channelRequest{
			{Op: "call", Path: "crawler", Method: "stop"},
			{Op: "call", Path: "stats", Method: "_persist_stats"},
			{Op: "call", Path: "crawler/settings", Method: "get"},
			{Op: "get", Path: "crawler/settings"},
			{Op: "exec", Path: "stats"},
		} {
			r, err := f.svc.exchange(context.Background(), job, req, callTimeout)
			if err != nil || r.Error == nil || r.Error.Code != codeMethodNotFound {
				t.Errorf("%+v: %+v %v", req, r.Error, err)
			}
		}
	})

	t.Run("pause and unpause", func(t *testing.T) {
		f.call(t, job, "crawler/engine", "pause", nil)
		// Paused, the engine takes no new request; the one in flight finishes.
		eventually(t, "the engine to settle", func() bool {
			st := f.engineStatus(t, job)
			return st["len(engine.downloader.active)"] == 0.0 && st["len(engine.scraper.slot.active)"] == 0.0
		})
		paused := f.stat(t, job, "item_scraped_count")
		// Five of the spider's download delays: unpaused, items would arrive.
		time.Sleep(time.Second)
		if got := f.stat(t, job, "item_scraped_count"); got != paused {
			t.Errorf("items went from %d to %d while paused", paused, got)
		}
		f.call(t, job, "crawler/engine", "unpause", nil)
		eventually(t, "items after unpause", func() bool { return f.stat(t, job, "item_scraped_count") > paused })
	})

	t.Run("clear_stats", func(t *testing.T) {
		var v any
		f.call(t, job, "stats", "clear_stats", nil)
		f.call(t, job, "stats", "get_value", &v, "test/x")
		if v != nil {
			t.Errorf("after clear_stats: %v", v)
		}
	})

	t.Run("close_spider", func(t *testing.T) {
		var open []string
		f.get(t, job, "crawler/engine/open_spiders", &open)
		var d string
		f.call(t, job, "crawler/engine", "close_spider", &d, open[0])
		if !strings.Contains(d, "Deferred") {
			t.Errorf("close_spider returned %q, want the Deferred as a string", d)
		}
		c.wait(t)
		log, _ := os.ReadFile(c.log)
		if !strings.Contains(string(log), "Closing spider (cancelled)") {
			t.Errorf("log lacks the cancel:\n%s", log)
		}
		final, err := f.svc.FinalStats(job)
		if err != nil {
			t.Fatal(err)
		}
		if sum, err := Summarize(final); err != nil || sum.FinishReason != "cancelled" || sum.ItemsScraped == 0 {
			t.Errorf("final stats %+v %v: %s", sum, err, final)
		}
		if _, err := os.Stat(f.svc.socketPath(job)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket after the crawl: %v", err)
		}
		status, _, body := do(t, f.app, "POST", "/webservice/"+job+"/stats", `{"method":"get_stats","id":1}`)
		if status != 404 || !strings.Contains(body, `"code":-32000`) {
			t.Errorf("finished job: %d %s", status, body)
		}
	})
}

// TestCrawlExtensionsSetting: a `-s EXTENSIONS=...` from schedule.json
// replaces the project's EXTENSIONS dict, but the web service stays; and
// close_spider without a spider closes the crawl's own.
func TestCrawlExtensionsSetting(t *testing.T) {
	f := newFixture(t)
	const job = "run-setting"
	c := f.start(t, job, "crawlrpctest_settings", true, "slow", "-s", "EXTENSIONS={}")
	eventually(t, "an item", func() bool {
		_, err := f.svc.LiveStats(context.Background(), job)
		return err == nil && f.stat(t, job, "item_scraped_count") > 0
	})
	f.call(t, job, "crawler/engine", "close_spider", nil)
	c.wait(t)
	final, err := f.svc.FinalStats(job)
	if err != nil {
		t.Fatal(err)
	}
	var stats map[string]any
	if err := json.Unmarshal(final, &stats); err != nil {
		t.Fatal(err)
	}
	if stats["finish_reason"] != "cancelled" || stats["crawlrpctest/marker"] != nil {
		t.Errorf("final stats %s", final)
	}
}

// BenchmarkCrawl200 measures the extension's cost: the same 200-page crawl
// without it, with it, and with it while the daemon polls LiveStats every
// 10 ms (far more often than any listjobs.json client would).
func BenchmarkCrawl200(b *testing.B) {
	f := newFixture(b)
	args := []string{"slow", "-a", "pages=200", "-s", "DOWNLOAD_DELAY=0"}
	// The crawl's own elapsed_time_seconds, from the stats dump in its log:
	// wall time per op is mostly Python's start-up.
	elapsed := regexp.MustCompile(`'elapsed_time_seconds': ([0-9.]+)`)
	for _, bm := range []struct {
		name          string
		service, poll bool
	}{{"plain", false, false}, {"webservice", true, false}, {"webservice-polled", true, true}} {
		b.Run(bm.name, func(b *testing.B) {
			var polls atomic.Int64
			var crawlSeconds float64
			for i := range b.N {
				job := fmt.Sprintf("run-bench-%s-%d", bm.name, i)
				c := f.start(b, job, "sample.settings", bm.service, args...)
				if bm.poll {
					go func() {
						for {
							select {
							case <-c.done:
								return
							case <-time.After(10 * time.Millisecond):
								if _, err := f.svc.LiveStats(context.Background(), job); err == nil {
									polls.Add(1)
								}
							}
						}
					}()
				}
				c.wait(b)
				log, _ := os.ReadFile(c.log)
				m := elapsed.FindSubmatch(log)
				if m == nil {
					b.Fatalf("no elapsed_time_seconds in the log:\n%s", log)
				}
				v, _ := strconv.ParseFloat(string(m[1]), 64)
				crawlSeconds += v
			}
			b.ReportMetric(crawlSeconds/float64(b.N), "crawl-s/op")
			if bm.poll {
				b.ReportMetric(float64(polls.Load())/float64(b.N), "polls/op")
			}
		})
	}
}
