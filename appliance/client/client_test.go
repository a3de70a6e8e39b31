package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// seen is what the fake server recorded of one request.
type seen struct {
	method, path string
	form         map[string][]string
	header       http.Header
	body         []byte
}

// fakeScrapyd answers every request with answer and records it.
func fakeScrapyd(t *testing.T, answer string) (*Client, *seen) {
	t.Helper()
	var s seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.method, s.path, s.header = r.Method, r.URL.EscapedPath(), r.Header.Clone()
		if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/") {
			if err := r.ParseMultipartForm(1 << 20); err != nil {
				t.Errorf("multipart: %v", err)
			}
		} else if r.Header.Get("Content-Type") == "application/json" {
			s.body, _ = io.ReadAll(r.Body)
		} else if err := r.ParseForm(); err != nil {
			t.Errorf("form: %v", err)
		}
		s.form = r.Form
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, answer+"\n")
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL+"/prefix", Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, &s
}

func TestEndpoints(t *testing.T) {
	ctx := context.Background()
	exit1 := 1
	tests := []struct {
		name     string
		answer   string
		call     func(*Client) (any, error)
		want     any
		method   string
		path     string
		wantForm map[string][]string
	}{{
		name:   "daemonstatus",
		answer: `{"pending": 1, "running": 2, "finished": 3, "status": "ok", "node_name": "vm"}`,
		call:   func(c *Client) (any, error) { return c.DaemonStatus(ctx) },
		want:   DaemonStatus{NodeName: "vm", Pending: 1, Running: 2, Finished: 3},
		method: "GET", path: "/prefix/daemonstatus.json", wantForm: map[string][]string{},
	}, {
		name: "diagnostics",
		answer: `{"launcher": "process", "version": "1.2.3", "config_error": "scrapyd.conf:3: bad", "restart_needed": ["dbs_dir"], ` +
			`"warnings": ["w"], "status": "ok", "node_name": "vm"}`,
		call: func(c *Client) (any, error) { return c.Diagnostics(ctx) },
		want: Diagnostics{Launcher: "process", Version: "1.2.3", ConfigError: "scrapyd.conf:3: bad",
			RestartNeeded: []string{"dbs_dir"}, Warnings: []string{"w"}},
		method: "GET", path: "/prefix/diagnostics.json", wantForm: map[string][]string{},
	}, {
		name:   "listprojects",
		answer: `{"projects": ["b", "a"], "status": "ok", "node_name": "vm"}`,
		call:   func(c *Client) (any, error) { return c.ListProjects(ctx) },
		want:   []string{"b", "a"},
		method: "GET", path: "/prefix/listprojects.json", wantForm: map[string][]string{},
	}, {
		name:   "listversions",
		answer: `{"versions": ["1.0", "r10"], "status": "ok", "node_name": "vm"}`,
		call:   func(c *Client) (any, error) { return c.ListVersions(ctx, "sample") },
		want:   []string{"1.0", "r10"},
		method: "GET", path: "/prefix/listversions.json", wantForm: map[string][]string{"project": {"sample"}},
	}, {
		name:   "listspiders with version",
		answer: `{"spiders": ["catalog", "params"], "status": "ok", "node_name": "vm"}`,
		call:   func(c *Client) (any, error) { return c.ListSpiders(ctx, "sample", "1.0") },
		want:   []string{"catalog", "params"},
		method: "GET", path: "/prefix/listspiders.json", wantForm: map[string][]string{"project": {"sample"}, "_version": {"1.0"}},
	}, {
		name: "listjobs",
		answer: `{"pending": [{"id": "j1", "project": "p", "spider": "s", "version": null, "settings": {"A": "1"}, "args": {"k": "v"}}],
			"running": [{"id": "j2", "project": "p", "spider": "s", "pid": null, "start_time": "2026-11-20 23:37:49.150078", "log_url": null, "items_url": null}],
			"finished": [{"id": "j3", "project": "p", "spider": "s", "start_time": "a", "end_time": "b", "log_url": "/logs/p/s/j3.log", "items_url": "/items/p/s/j3.jl", "outcome": "failed", "exit_code": 1}],
			"status": "ok", "node_name": "vm"}`,
		call: func(c *Client) (any, error) { return c.ListJobs(ctx, "p") },
		want: Jobs{
			Pending:  []Job{{State: job.Pending, ID: "j1", Project: "p", Spider: "s", Settings: map[string]string{"A": "1"}, Args: map[string]string{"k": "v"}}},
			Running:  []Job{{State: job.Running, ID: "j2", Project: "p", Spider: "s", StartTime: "2026-11-20 23:37:49.150078"}},
			Finished: []Job{{State: job.Finished, ID: "j3", Project: "p", Spider: "s", StartTime: "a", EndTime: "b", LogURL: "/logs/p/s/j3.log", ItemsURL: "/items/p/s/j3.jl", Outcome: job.OutcomeFailed, ExitCode: &exit1}},
		},
		method: "GET", path: "/prefix/listjobs.json", wantForm: map[string][]string{"project": {"p"}},
	}, {
		name:   "find job",
		answer: `{"pending": [], "running": [{"id": "j2", "project": "p", "spider": "s", "pid": 7}], "finished": [], "status": "ok", "node_name": "vm"}`,
		call:   func(c *Client) (any, error) { return c.FindJob(ctx, "", "j2") },
		want:   Job{State: job.Running, ID: "j2", Project: "p", Spider: "s", PID: 7},
		method: "GET", path: "/prefix/listjobs.json", wantForm: map[string][]string{},
	}, {
		name:   "status",
		answer: `{"currstate": "finished", "outcome": "failed", "exit_code": 1, "status": "ok", "node_name": "vm"}`,
		call:   func(c *Client) (any, error) { return c.Status(ctx, "j3", "") },
		want:   JobStatus{State: job.Finished, Outcome: job.OutcomeFailed, ExitCode: &exit1},
		method: "GET", path: "/prefix/status.json", wantForm: map[string][]string{"job": {"j3"}},
	}, {
		name:   "status of an unknown job",
		answer: `{"currstate": null, "status": "ok", "node_name": "vm"}`,
		call:   func(c *Client) (any, error) { return c.Status(ctx, "nope", "p") },
		want:   JobStatus{},
		method: "GET", path: "/prefix/status.json", wantForm: map[string][]string{"job": {"nope"}, "project": {"p"}},
	}, {
		name:   "schedule",
		answer: `{"jobid": "abc", "status": "ok", "node_name": "vm"}`,
		call: func(c *Client) (any, error) {
			return c.Schedule(ctx, job.Spec{
				Project: "p", Spider: "s", Version: "1.0", ID: "abc", Priority: 2.5,
				Settings: []job.Pair{{Name: "A", Value: "1"}, {Name: "B", Value: "x=y"}},
				Args:     []job.Pair{{Name: "limit", Value: "2"}},
			})
		},
		want:   "abc",
		method: "POST", path: "/prefix/schedule.json",
		wantForm: map[string][]string{
			"project": {"p"}, "spider": {"s"}, "_version": {"1.0"}, "jobid": {"abc"}, "priority": {"2.5"},
			"setting": {"A=1", "B=x=y"}, "limit": {"2"},
		},
	}, {
		name:   "cancel with signal",
		answer: `{"prevstate": "running", "status": "ok", "node_name": "vm"}`,
		call:   func(c *Client) (any, error) { return c.Cancel(ctx, "p", "j2", "KILL") },
		want:   job.Running,
		method: "POST", path: "/prefix/cancel.json", wantForm: map[string][]string{"project": {"p"}, "job": {"j2"}, "signal": {"KILL"}},
	}, {
		name:   "cancel of a finished job",
		answer: `{"prevstate": null, "status": "ok", "node_name": "vm"}`,
		call:   func(c *Client) (any, error) { return c.Cancel(ctx, "p", "j3", "") },
		want:   job.State(""),
		method: "POST", path: "/prefix/cancel.json", wantForm: map[string][]string{"project": {"p"}, "job": {"j3"}},
	}, {
		name:   "delversion",
		answer: `{"status": "ok", "node_name": "vm"}`,
		call:   func(c *Client) (any, error) { return nil, c.DelVersion(ctx, "p", "1.0") },
		method: "POST", path: "/prefix/delversion.json", wantForm: map[string][]string{"project": {"p"}, "version": {"1.0"}},
	}, {
		name:   "delproject",
		answer: `{"status": "ok", "node_name": "vm"}`,
		call:   func(c *Client) (any, error) { return nil, c.DelProject(ctx, "p") },
		method: "POST", path: "/prefix/delproject.json", wantForm: map[string][]string{"project": {"p"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := fakeScrapyd(t, tt.answer)
			got, err := tt.call(c)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
			if s.method != tt.method || s.path != tt.path {
				t.Errorf("request %s %s, want %s %s", s.method, s.path, tt.method, tt.path)
			}
			if !reflect.DeepEqual(map[string][]string(s.form), tt.wantForm) {
				t.Errorf("params %v, want %v", s.form, tt.wantForm)
			}
			if ua := s.header.Get("User-Agent"); ua != "scrapydctl" {
				t.Errorf("User-Agent %q", ua)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		answer  string
		call    func(*Client) error
		wantMsg string
		check   func(error) bool
	}{{
		name:    "status error carries Scrapyd's message",
		answer:  `{"status": "error", "message": "spider 'nope' not found", "node_name": "vm"}`,
		call:    func(c *Client) error { _, err := c.Schedule(ctx, job.Spec{Project: "p", Spider: "nope"}); return err },
		wantMsg: "spider 'nope' not found",
		check:   func(err error) bool { var ae *APIError; return errors.As(err, &ae) && ae.Endpoint == "schedule.json" },
	}, {
		name:    "not JSON",
		answer:  `Traceback (most recent call last):`,
		call:    func(c *Client) error { _, err := c.ListProjects(ctx); return err },
		wantMsg: `listprojects.json: malformed answer: "Traceback (most recent call last):"`,
		check:   func(err error) bool { return errors.Is(err, ErrMalformed) },
	}, {
		name:   "reserved spider argument",
		answer: `{"status": "ok"}`,
		call: func(c *Client) error {
			_, err := c.Schedule(ctx, job.Spec{Args: []job.Pair{{Name: "jobid", Value: "x"}}})
			return err
		},
		wantMsg: `client: "jobid" cannot be a spider argument: schedule.json uses that name`,
		check:   func(err error) bool { return true },
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := fakeScrapyd(t, tt.answer)
			err := tt.call(c)
			if err == nil || err.Error() != tt.wantMsg || !tt.check(err) {
				t.Fatalf("error = %v (%T), want %s", err, err, tt.wantMsg)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "john" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `basic realm="Scrapyd"`)
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, "Unauthorized")
			return
		}
		io.WriteString(w, `{"projects": [], "status": "ok", "node_name": "vm"}`)
	}))
	defer srv.Close()
	withUserinfo := strings.Replace(srv.URL, "http://", "http://john:secret@", 1)
	tests := []struct {
		name    string
		url     string
		opts    Options
		wantErr string
	}{
		{"no credentials", srv.URL, Options{}, "the server refused the credentials (HTTP 401)"},
		{"wrong password", srv.URL, Options{Username: "john", Password: "nope"}, "the server refused the credentials (HTTP 401)"},
		{"right credentials", srv.URL, Options{Username: "john", Password: "secret"}, ""},
		{"credentials in the URL", withUserinfo, Options{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.url, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.ListProjects(context.Background())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("error = %v, want %s", err, tt.wantErr)
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	// A port that was just free: nothing listens there any more.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := New("http://"+addr+"/", Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.DaemonStatus(context.Background())
	want := "cannot reach http://" + addr + ": connection refused"
	if err == nil || err.Error() != want || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("error = %v, want %s", err, want)
	}
}

func TestNewRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"localhost:6800", "ftp://h/", "http://", "://x"} {
		if _, err := New(u, Options{}); err == nil {
			t.Errorf("New(%q) succeeded", u)
		}
	}
}

func TestAddVersion(t *testing.T) {
	egg := bytes.Repeat([]byte("egg!"), 1000)
	var got struct {
		project, version, filename string
		egg                        []byte
		length                     int64
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.length = r.ContentLength
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			t.Error(err)
		}
		got.project, got.version = r.FormValue("project"), r.FormValue("version")
		f, h, err := r.FormFile("egg")
		if err != nil {
			t.Error(err)
			return
		}
		got.filename = h.Filename
		got.egg, _ = io.ReadAll(f)
		io.WriteString(w, `{"project": "sample", "version": "r1", "spiders": 4, "status": "ok", "node_name": "vm"}`)
	}))
	defer srv.Close()
	var answers []string
	c, err := New(srv.URL, Options{OnAnswer: func(b []byte) { answers = append(answers, string(b)) }})
	if err != nil {
		t.Fatal(err)
	}
	added, err := c.AddVersion(context.Background(), "sample", "r1", bytes.NewReader(egg), int64(len(egg)))
	if err != nil {
		t.Fatal(err)
	}
	if added != (Added{Project: "sample", Version: "r1", Spiders: 4}) {
		t.Errorf("answer %+v", added)
	}
	if got.project != "sample" || got.version != "r1" || got.filename != "project.egg" || !bytes.Equal(got.egg, egg) {
		t.Errorf("server got project=%q version=%q filename=%q egg %d bytes", got.project, got.version, got.filename, len(got.egg))
	}
	if got.length <= int64(len(egg)) {
		t.Errorf("Content-Length %d: the upload must not be chunked", got.length)
	}
	if len(answers) != 1 || !strings.Contains(answers[0], `"spiders": 4`) {
		t.Errorf("OnAnswer got %q", answers)
	}
}

func TestFetch(t *testing.T) {
	content := "line one\nline two\n"
	mux := http.NewServeMux()
	mux.HandleFunc("/api/logs/p/s/j.log", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "j.log", time.Time{}, strings.NewReader(content))
	})
	mux.HandleFunc("/api/norange.log", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, content)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c, err := New(srv.URL+"/api/", Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path   string
		offset int64
		want   string
	}{
		{"/logs/p/s/j.log", 0, content},
		{"/logs/p/s/j.log", 9, "line two\n"},
		{"/logs/p/s/j.log", int64(len(content)), ""},
		{"/norange.log", 9, "line two\n"},
		{srv.URL + "/api/logs/p/s/j.log", 5, content[5:]},
	}
	for _, tt := range tests {
		got, err := c.Fetch(context.Background(), tt.path, tt.offset)
		if err != nil || string(got) != tt.want {
			t.Errorf("Fetch(%s, %d) = %q, %v; want %q", tt.path, tt.offset, got, err, tt.want)
		}
	}
	_, err = c.Fetch(context.Background(), "/logs/none.log", 0)
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
		t.Errorf("missing file: error %v, want HTTP 404", err)
	}
}

func TestWebService(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		answer   string
		call     func(*WebService) (any, error)
		want     any
		wantErr  string
		method   string
		path     string
		wantBody string
	}{{
		name:   "resources",
		answer: `{"resources": ["crawler", "enginestatus", "stats"]}`,
		call:   func(w *WebService) (any, error) { return w.Resources(ctx) },
		want:   []string{"crawler", "enginestatus", "stats"},
		method: "GET", path: "/prefix/webservice/j%201/",
	}, {
		name:   "open spiders",
		answer: `["spider:7f3a:slow"]`,
		call:   func(w *WebService) (any, error) { return w.OpenSpiders(ctx) },
		want:   []string{"spider:7f3a:slow"},
		method: "GET", path: "/prefix/webservice/j%201/crawler/engine/open_spiders",
	}, {
		name:   "list spiders",
		answer: `{"jsonrpc": "2.0", "result": ["catalog", "slow"], "id": 1}`,
		call:   func(w *WebService) (any, error) { return w.Spiders(ctx) },
		want:   []string{"catalog", "slow"},
		method: "POST", path: "/prefix/webservice/j%201/crawler/spiders",
		wantBody: `{"id":1,"jsonrpc":"2.0","method":"list","params":[]}`,
	}, {
		name:   "spider stats",
		answer: `{"jsonrpc": "2.0", "result": {"item_scraped_count": 3, "memusage/max": 70578176}, "id": 1}`,
		call:   func(w *WebService) (any, error) { return w.Stats(ctx, "spider:7f3a:slow") },
		want:   map[string]any{"item_scraped_count": json.Number("3"), "memusage/max": json.Number("70578176")},
		method: "POST", path: "/prefix/webservice/j%201/stats",
		wantBody: `{"id":1,"jsonrpc":"2.0","method":"get_stats","params":["spider:7f3a:slow"]}`,
	}, {
		name:   "close spider",
		answer: `{"jsonrpc": "2.0", "result": null, "id": 1}`,
		call:   func(w *WebService) (any, error) { return nil, w.CloseSpider(ctx, "spider:7f3a:slow") },
		method: "POST", path: "/prefix/webservice/j%201/crawler/engine",
		wantBody: `{"id":1,"jsonrpc":"2.0","method":"close_spider","params":["spider:7f3a:slow"]}`,
	}, {
		name:    "JSON-RPC error",
		answer:  `{"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found", "data": null}, "id": 1}`,
		call:    func(w *WebService) (any, error) { return nil, w.Pause(ctx) },
		wantErr: "JSON-RPC error -32601: Method not found",
		method:  "POST", path: "/prefix/webservice/j%201/crawler/engine",
		wantBody: `{"id":1,"jsonrpc":"2.0","method":"pause","params":[]}`,
	}, {
		name:    "the daemon's envelope error",
		answer:  `{"status": "error", "message": "job 'j 1' is not running", "node_name": "vm"}`,
		call:    func(w *WebService) (any, error) { return w.Resources(ctx) },
		wantErr: "job 'j 1' is not running",
		method:  "GET", path: "/prefix/webservice/j%201/",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := fakeScrapyd(t, tt.answer)
			got, err := tt.call(c.WebService("j 1"))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %s", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
			if s.method != tt.method || s.path != tt.path {
				t.Errorf("request %s %s, want %s %s", s.method, s.path, tt.method, tt.path)
			}
			if tt.wantBody != "" {
				var a, b any
				json.Unmarshal(s.body, &a)
				json.Unmarshal([]byte(tt.wantBody), &b)
				if !reflect.DeepEqual(a, b) {
					t.Errorf("request body %s, want %s", s.body, tt.wantBody)
				}
			}
		})
	}
}

// TestWebServiceNotRunning: the daemon answers 404 with a JSON-RPC error
// that says why; the caller gets that reason, not a bare status.
func TestWebServiceNotRunning(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"jsonrpc":"2.0","error":{"code":-32000,"message":"job \"done1\" is not running","data":null},"id":null}`)
	}))
	defer srv.Close()
	c, err := New(srv.URL, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ws := c.WebService("done1")
	for name, call := range map[string]func() error{
		"get":  func() error { _, err := ws.Resources(context.Background()); return err },
		"call": func() error { _, err := ws.Stats(context.Background(), ""); return err },
	} {
		var rpcErr *RPCError
		if err := call(); !errors.As(err, &rpcErr) || rpcErr.Code != -32000 || err.Error() != `JSON-RPC error -32000: job "done1" is not running` {
			t.Errorf("%s: error %v", name, err)
		}
	}
}
