package crawlrpc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
)

// newService returns a Service over a temporary runtime directory and a
// fiber app serving it. Jobs named "run*" count as running.
func newService(t testing.TB, cfg Config, running Resolver) (*Service, *fiber.App) {
	t.Helper()
	if running == nil {
		running = func(job string) bool { return strings.HasPrefix(job, "run") }
	}
	s, err := New(Options{RuntimeDir: t.TempDir(), Running: running, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	app := fiber.New(fiber.Config{Immutable: true})
	s.Register(app)
	return s, app
}

// do sends one request through the fiber app and returns status and body.
func do(t testing.TB, app *fiber.App, method, target, body string) (int, http.Header, string) {
	t.Helper()
	resp, err := app.Test(httptest.NewRequest(method, target, strings.NewReader(body)), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// TestWire checks the exact bytes of every answer the daemon gives without
// asking the crawl: the JSON-RPC envelope errors of scrapy/utils/jsonrpc.py
// and the routing errors in front of them.
func TestWire(t *testing.T) {
	_, app := newService(t, DefaultConfig(), nil)
	_, statsOnly := newService(t, Config{Enabled: true, Resources: []string{"stats"}}, nil)
	_, disabled := newService(t, Config{Enabled: false, Resources: TopResources}, nil)
	tests := []struct {
		name         string
		app          *fiber.App
		method, path string
		body         string
		status       int
		want         string
	}{
		{"parse error", app, "POST", "/webservice/run1/stats", `{"id": 1,`, 200,
			`{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error","data":"unexpected end of JSON input"},"id":null}`},
		{"empty body", app, "POST", "/webservice/run1/stats", ``, 200,
			`{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error","data":"unexpected end of JSON input"},"id":null}`},
		{"batch", app, "POST", "/webservice/run1/stats", `[{"jsonrpc":"2.0","method":"get_stats","id":1}]`, 200,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request","data":null},"id":null}`},
		{"missing id", app, "POST", "/webservice/run1/stats", `{"jsonrpc":"2.0","method":"get_stats"}`, 200,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request","data":null},"id":null}`},
		{"missing method", app, "POST", "/webservice/run1/stats", `{"jsonrpc":"2.0","id":3}`, 200,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request","data":null},"id":null}`},
		{"method not a string", app, "POST", "/webservice/run1/stats", `{"id":3,"method":7}`, 200,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request","data":null},"id":3}`},
		{"unknown method", app, "POST", "/webservice/run1/stats", `{"jsonrpc":"2.0","method":"_persist_stats","id":7}`, 200,
			`{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found","data":null},"id":7}`},
		{"no methods on crawler", app, "POST", "/webservice/run1/crawler", `{"method":"stop","id":"a"}`, 200,
			`{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found","data":null},"id":"a"}`},
		{"scalar params", app, "POST", "/webservice/run1/crawler/engine", `{"method":"pause","params":"x","id":[1]}`, 200,
			`{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params","data":"params must be an array or an object"},"id":[1]}`},
		{"too large", app, "POST", "/webservice/run1/stats", `{"id":1,"method":"set_value","params":["k","` + strings.Repeat("x", maxRequest) + `"]}`, 200,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request","data":"request larger than 1048576 bytes"},"id":null}`},
		{"not running", app, "POST", "/webservice/done1/stats", `{"method":"get_stats","id":1}`, 404,
			`{"jsonrpc":"2.0","error":{"code":-32000,"message":"job \"done1\" is not running","data":null},"id":null}`},
		{"not running, get", app, "GET", "/webservice/done1/", ``, 404,
			`{"jsonrpc":"2.0","error":{"code":-32000,"message":"job \"done1\" is not running","data":null},"id":null}`},
		{"no such resource", app, "GET", "/webservice/run1/crawler/settings", ``, 404,
			`{"jsonrpc":"2.0","error":{"code":-32002,"message":"no such resource: \"/crawler/settings\"","data":null},"id":null}`},
		{"post to read-only", app, "POST", "/webservice/run1/enginestatus", `{}`, 405,
			`{"jsonrpc":"2.0","error":{"code":-32003,"message":"POST is not allowed on \"/enginestatus\"","data":null},"id":null}`},
		{"put", app, "PUT", "/webservice/run1/stats", `{}`, 405,
			`{"jsonrpc":"2.0","error":{"code":-32003,"message":"PUT is not allowed on \"/stats\"","data":null},"id":null}`},
		{"root", app, "GET", "/webservice/run1/", ``, 200, `{"resources":["crawler","enginestatus","stats"]}`},
		{"root without slash", app, "GET", "/webservice/run1", ``, 200, `{"resources":["crawler","enginestatus","stats"]}`},
		{"describe crawler", app, "GET", "/webservice/run1/crawler", ``, 200, `{"methods":[],"resources":["engine","spiders"]}`},
		{"describe engine", app, "GET", "/webservice/run1/crawler/engine/", ``, 200,
			`{"methods":["close_spider","pause","unpause"],"resources":["open_spiders"]}`},
		{"resource set", statsOnly, "GET", "/webservice/run1/", ``, 200, `{"resources":["stats"]}`},
		{"resource off", statsOnly, "POST", "/webservice/run1/crawler/engine", `{"method":"pause","id":1}`, 404,
			`{"jsonrpc":"2.0","error":{"code":-32002,"message":"no such resource: \"/crawler/engine\"","data":null},"id":null}`},
		{"disabled", disabled, "GET", "/webservice/run1/", ``, 404,
			`{"jsonrpc":"2.0","error":{"code":-32004,"message":"the crawl web service is disabled (webservice_enabled)","data":null},"id":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := do(t, tt.app, tt.method, tt.path, tt.body)
			if status != tt.status || body != tt.want+"\n" {
				t.Errorf("%s %s %s\n got %d %s\nwant %d %s", tt.method, tt.path, tt.body, status, body, tt.status, tt.want)
			}
			checkHeaders(t, h)
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func checkHeaders(t *testing.T, h http.Header) {
	t.Helper()
	for k, v := range map[string]string{
		"Access-Control-Allow-Origin":  "*",
		"Access-Control-Allow-Methods": "GET, POST, PATCH, PUT, DELETE",
		"Access-Control-Allow-Headers": "X-Requested-With", // net/http trims the original's leading space
	} {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
}

func TestOptions(t *testing.T) {
	_, app := newService(t, DefaultConfig(), nil)
	status, h, body := do(t, app, "OPTIONS", "/webservice/any/stats", "")
	if status != 204 || body != "" || h.Get("Allow") != "OPTIONS, HEAD, GET, POST" {
		t.Errorf("got %d %q Allow %q", status, body, h.Get("Allow"))
	}
	checkHeaders(t, h)
}

// TestUnavailable: a running job whose crawl has no socket yet (Python still
// starting) is told apart from a finished one.
func TestUnavailable(t *testing.T) {
	s, app := newService(t, DefaultConfig(), nil)
	if _, err := s.Prepare("run1", "sample.settings"); err != nil {
		t.Fatal(err)
	}
	status, _, body := do(t, app, "POST", "/webservice/run1/stats", `{"method":"get_stats","id":1}`)
	var resp struct{ Error rpcError }
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	if status != 503 || resp.Error.Code != codeUnavailable {
		t.Errorf("got %d %s", status, body)
	}
	if _, err := s.LiveStats(context.Background(), "run1"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("LiveStats: %v, want ErrUnavailable", err)
	}
	if _, err := s.FinalStats("run1"); !errors.Is(err, ErrNoStats) {
		t.Errorf("FinalStats: %v, want ErrNoStats", err)
	}
}

func TestPrepare(t *testing.T) {
	s, _ := newService(t, DefaultConfig(), nil)
	add, err := s.Prepare("job1", "sample.settings")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.SocketDir("job1"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("job dir: %v %v, want mode 0700", fi.Mode(), err)
	}
	for _, name := range []string{"__init__.py", "settings.py", "extension.py", "whitelist.json"} {
		if _, err := os.Stat(filepath.Join(add.PythonPath[0], "scrapyd_crawlrpc", name)); err != nil {
			t.Errorf("extension file: %v", err)
		}
	}
	env := add.Apply([]string{"PATH=/usr/bin", "PYTHONPATH=/eggs/p.egg", "SCRAPY_SETTINGS_MODULE=sample.settings"})
	want := []string{
		"PATH=/usr/bin",
		"SCRAPY_SETTINGS_MODULE=scrapyd_crawlrpc.settings",
		"SCRAPYD_CRAWLRPC_SETTINGS=sample.settings",
		"SCRAPYD_CRAWLRPC_SOCKET=" + filepath.Join(s.SocketDir("job1"), "rpc.sock"),
		"SCRAPYD_CRAWLRPC_STATS=" + filepath.Join(s.SocketDir("job1"), "stats.json"),
		"PYTHONPATH=/eggs/p.egg:" + add.PythonPath[0],
	}
	if !slices.Equal(env, want) {
		t.Errorf("Apply:\n got %q\nwant %q", env, want)
	}
	if err := s.Cleanup("job1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.SocketDir("job1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Cleanup: %v", err)
	}
	for _, bad := range []struct{ job, module string }{{"", "a.settings"}, {"j", "a settings"}, {"j", "a..b"}, {"j", ""}} {
		if _, err := s.Prepare(bad.job, bad.module); err == nil {
			t.Errorf("Prepare(%q, %q) succeeded", bad.job, bad.module)
		}
	}
}

func TestConfig(t *testing.T) {
	if err := Check(DefaultConfig()); err != nil {
		t.Error(err)
	}
	err := Check(Config{Enabled: true, Resources: []string{"stats", "extensions"}})
	if err == nil || err.Error() != `webservice_resources: unknown resource "extensions" (known: crawler, stats, enginestatus)` {
		t.Errorf("got %v", err)
	}
	s, _ := newService(t, DefaultConfig(), nil)
	if err := s.Reload(Config{Resources: []string{"nope"}}); err == nil || !s.state.Load().cfg.Enabled {
		t.Errorf("bad reload: %v, and the old config must stay", err)
	}
	logFile := filepath.Join(t.TempDir(), "ws.log")
	if err := s.Reload(Config{Enabled: true, Resources: TopResources, LogFile: logFile}); err != nil {
		t.Fatal(err)
	}
	app := fiber.New()
	s.Register(app)
	do(t, app, "GET", "/webservice/run7/", "")
	if b, _ := os.ReadFile(logFile); !strings.Contains(string(b), "job=run7") || !strings.Contains(string(b), "status=200") {
		t.Errorf("request log: %q", b)
	}
}

func TestSummarize(t *testing.T) {
	got, err := Summarize([]byte(`{"item_scraped_count":5,"downloader/request_count":7,"response_received_count":6,
		"log_count/ERROR":2,"finish_reason":"cancelled","start_time":"2024-01-02 03:04:05"}`))
	want := Summary{ItemsScraped: 5, Requests: 7, Responses: 6, Errors: 2, FinishReason: "cancelled"}
	if err != nil || got != want {
		t.Errorf("got %+v %v, want %+v", got, err, want)
	}
}

// TestRuntimeDirTooLong: a runtime directory too deep for a Unix socket is
// said at start, with the option to change (the Scrapyd way puts it below
// whatever folder the daemon was started in).
func TestRuntimeDirTooLong(t *testing.T) {
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 80))
	var log strings.Builder
	s, err := New(Options{RuntimeDir: deep, Running: func(string) bool { return true }, Log: slog.New(slog.NewTextHandler(&log, nil))}, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(log.String(), "set runtime_dir to a shorter directory") {
		t.Errorf("no warning at start:\n%s", log.String())
	}
	if _, err := s.Prepare("run1", "sample.settings"); err == nil {
		t.Error("Prepare succeeded with a socket path too long")
	}
}
