package main

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// fake is a scripted Scrapyd: answers per path, and what it was sent.
type fake struct {
	mu      sync.Mutex
	answers map[string]string // path → JSON answer
	forms   map[string]map[string][]string
	eggs    map[string][]byte            // version → uploaded egg
	deps    map[string]map[string][]byte // version → "requirements"/"wheels" → uploaded file
	srv     *httptest.Server
}

func newFake(t *testing.T, answers map[string]string) *fake {
	t.Helper()
	f := &fake{answers: answers, forms: map[string]map[string][]string{}, eggs: map[string][]byte{}, deps: map[string]map[string][]byte{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/addversion.json" {
			if err := r.ParseMultipartForm(32 << 20); err != nil {
				t.Error(err)
			}
			if file, _, err := r.FormFile("egg"); err == nil {
				b, _ := io.ReadAll(file)
				f.mu.Lock()
				f.eggs[r.FormValue("version")] = b
				f.mu.Unlock()
			}
			for _, field := range []string{"requirements", "wheels"} {
				if file, _, err := r.FormFile(field); err == nil {
					b, _ := io.ReadAll(file)
					f.mu.Lock()
					if f.deps[r.FormValue("version")] == nil {
						f.deps[r.FormValue("version")] = map[string][]byte{}
					}
					f.deps[r.FormValue("version")][field] = b
					f.mu.Unlock()
				}
			}
		} else if r.Header.Get("Content-Type") != "application/json" {
			r.ParseForm()
		}
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		form := map[string][]string(r.Form)
		if len(body) > 0 {
			form = map[string][]string{"body": {string(body)}}
		}
		f.forms[r.URL.Path] = form
		answer, ok := f.answers[r.URL.Path]
		f.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, answer+"\n")
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) form(path string) map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.forms[path]
}

const jobsAnswer = `{"pending": [{"id": "j1", "project": "sample", "spider": "params", "version": null, "settings": {}, "args": {}}],
 "running": [{"id": "j2", "project": "sample", "spider": "slow", "pid": 42, "start_time": "2026-11-20 23:37:49.150078", "log_url": "/logs/sample/slow/j2.log", "items_url": null}],
 "finished": [{"id": "j3", "project": "sample", "spider": "failing", "start_time": "2026-11-20 23:37:49.1", "end_time": "2026-11-20 23:37:50.2", "log_url": null, "items_url": null, "outcome": "failed", "exit_code": 1}],
 "status": "ok", "node_name": "vm"}`

// TestDaemonStatusNodes: against a cluster node, daemonstatus lists the
// cluster's nodes below the diagnostics.
func TestDaemonStatusNodes(t *testing.T) {
	f := newFake(t, map[string]string{
		"/daemonstatus.json": `{"pending": 0, "running": 3, "finished": 9, "status": "ok", "node_name": "n1"}`,
		"/diagnostics.json": `{"launcher": "systemd", "version": "1.2.3", "config_error": null, "restart_needed": [], "warnings": [], "nodes": [` +
			`{"name": "n1", "slots": 4, "running": 3, "alive": true, "lease": 30.0, "lease_until": "2026-11-29 10:00:00.5", "version": "1.2.3", "advertise_url": "http://a:6800", "started": "2026-11-29 09:00:00", "stopped": false, "reaped": false}, ` +
			`{"name": "n2", "slots": 2, "running": 0, "alive": false, "lease": 30.0, "lease_until": "2026-11-29 09:50:00", "version": "1.2.2", "advertise_url": "http://b:6800", "started": "2026-11-29 08:00:00", "stopped": true, "reaped": false}` +
			`], "status": "ok", "node_name": "n1"}`,
	})
	out, stderr, err := scrapydctl(t, "daemonstatus", "--url="+f.srv.URL)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	want := "NODE  STATE    SLOTS  RUNNING  LEASE UNTIL            VERSION\n" +
		"n1    alive    4      3        2026-11-29 10:00:00.5  1.2.3\n" +
		"n2    stopped  2      0        2026-11-29 09:50:00    1.2.2\n"
	if !strings.HasSuffix(out, "\n\n"+want) {
		t.Errorf("output:\n%s\nwant it to end with:\n%s", out, want)
	}
}

// TestJobsNodes: a cluster's listing gets a NODE column.
func TestJobsNodes(t *testing.T) {
	f := newFake(t, map[string]string{
		"/listjobs.json": `{"pending": [{"id": "j1", "project": "p", "spider": "s", "version": null, "settings": {}, "args": {}}], ` +
			`"running": [{"id": "j2", "project": "p", "spider": "s", "pid": 42, "start_time": "2026-11-20 23:37:49.1", "log_url": null, "items_url": null, "node_name": "n2"}], ` +
			`"finished": [], "status": "ok", "node_name": "n1"}`,
	})
	out, stderr, err := scrapydctl(t, "jobs", "--url="+f.srv.URL)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	want := "STATE    PROJECT  SPIDER  JOB  PID  START                END  OUTCOME  NODE\n" +
		"pending  p        s       j1\n" +
		"running  p        s       j2   42   2026-11-20 23:37:49                n2\n"
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
}

func TestCommands(t *testing.T) {
	f := newFake(t, map[string]string{
		"/daemonstatus.json": `{"pending": 1, "running": 1, "finished": 1, "status": "ok", "node_name": "vm"}`,
		"/diagnostics.json": `{"launcher": "process", "version": "1.2.3", "config_error": "scrapyd.conf:3: max_proc: \"x\" is not a whole number", ` +
			`"restart_needed": ["dbs_dir"], "warnings": ["bind_address = 0.0.0.0 without username and password"], "status": "ok", "node_name": "vm"}`,
		"/listprojects.json": `{"projects": ["sample", "other"], "status": "ok", "node_name": "vm"}`,
		"/listversions.json": `{"versions": ["1.0", "r10"], "status": "ok", "node_name": "vm"}`,
		"/listspiders.json":  `{"spiders": ["catalog", "params"], "status": "ok", "node_name": "vm"}`,
		"/schedule.json":     `{"jobid": "abc", "status": "ok", "node_name": "vm"}`,
		"/listjobs.json":     jobsAnswer,
		"/status.json":       `{"currstate": "finished", "outcome": "failed", "exit_code": 1, "status": "ok", "node_name": "vm"}`,
		"/cancel.json":       `{"prevstate": "running", "status": "ok", "node_name": "vm"}`,
		"/delversion.json":   `{"status": "ok", "node_name": "vm"}`,
		"/delproject.json":   `{"status": "ok", "node_name": "vm"}`,
		"/webservice/j2/":    `{"resources": ["crawler", "enginestatus", "stats"]}`,
		"/webservice/j2/crawler/engine/open_spiders": `["spider:7f:slow"]`,
		"/webservice/j2/crawler/engine":              `{"jsonrpc": "2.0", "result": null, "id": 1}`,
		"/webservice/j2/crawler/spiders":             `{"jsonrpc": "2.0", "result": ["catalog", "slow"], "id": 1}`,
		"/webservice/j2/stats":                       `{"jsonrpc": "2.0", "result": {"b": 70578176, "a": "x"}, "id": 1}`,
		"/webservice/j2/enginestatus":                `[["time()-engine.start_time", 12345678.5], ["engine.has_capacity()", true]]`,
	})
	url := "--url=" + f.srv.URL
	tests := []struct {
		args     []string
		want     string
		path     string // the request to check
		wantForm map[string][]string
	}{
		{args: []string{"daemonstatus", url}, want: "node      vm\npending   1\nrunning   1\nfinished  1\n\n" +
			"version         1.2.3\nlauncher        process\n" +
			"config error    scrapyd.conf:3: max_proc: \"x\" is not a whole number (the previous configuration stays in use)\n" +
			"restart needed  yes, for dbs_dir\nwarning         bind_address = 0.0.0.0 without username and password\n"},
		{args: []string{"daemonstatus", url, "--json"}, want: `{"pending": 1, "running": 1, "finished": 1, "status": "ok", "node_name": "vm"}` + "\n"},
		{args: []string{"projects", url}, want: "sample\nother\n"},
		{args: []string{"projects", url, "--json"}, want: `{"projects": ["sample", "other"], "status": "ok", "node_name": "vm"}` + "\n"},
		{args: []string{"versions", "sample", url}, want: "1.0\nr10\n", path: "/listversions.json", wantForm: map[string][]string{"project": {"sample"}}},
		{args: []string{"spiders", "sample", "--version", "1.0", url}, want: "catalog\nparams\n", path: "/listspiders.json",
			wantForm: map[string][]string{"project": {"sample"}, "_version": {"1.0"}}},
		{args: []string{"schedule", "sample", "params", "-a", "limit=2", "-a", "tags=a,b", "-s", "DOWNLOAD_DELAY=2", "--priority", "3", "--jobid", "abc", "--version", "r10", url},
			want: "abc\n", path: "/schedule.json", wantForm: map[string][]string{
				"project": {"sample"}, "spider": {"params"}, "limit": {"2"}, "tags": {"a,b"}, "setting": {"DOWNLOAD_DELAY=2"},
				"priority": {"3"}, "jobid": {"abc"}, "_version": {"r10"}}},
		{args: []string{"jobs", url, "--project", "sample"}, path: "/listjobs.json", wantForm: map[string][]string{"project": {"sample"}},
			want: "STATE     PROJECT  SPIDER   JOB  PID  START                END                  OUTCOME\n" +
				"pending   sample   params   j1\n" +
				"running   sample   slow     j2   42   2026-11-20 23:37:49\n" +
				"finished  sample   failing  j3        2026-11-20 23:37:49  2026-11-20 23:37:50  failed (exit 1)\n"},
		{args: []string{"jobs", url, "--state", "running"},
			want: "STATE    PROJECT  SPIDER  JOB  PID  START                END  OUTCOME\nrunning  sample   slow    j2   42   2026-11-20 23:37:49\n"},
		{args: []string{"status", "j3", url}, want: "finished: failed (exit 1)\n", path: "/status.json", wantForm: map[string][]string{"job": {"j3"}}},
		{args: []string{"cancel", "sample", "j2", "--force", url}, want: "cancelled (it was running)\n", path: "/cancel.json",
			wantForm: map[string][]string{"project": {"sample"}, "job": {"j2"}, "signal": {"KILL"}}},
		{args: []string{"cancel", "sample", "j2", "--signal", "TERM", url}, want: "cancelled (it was running)\n", path: "/cancel.json",
			wantForm: map[string][]string{"project": {"sample"}, "job": {"j2"}, "signal": {"TERM"}}},
		{args: []string{"delversion", "sample", "1.0", url}, want: "deleted version 1.0 of sample\n", path: "/delversion.json",
			wantForm: map[string][]string{"project": {"sample"}, "version": {"1.0"}}},
		{args: []string{"delproject", "sample", url}, want: "deleted project sample\n", path: "/delproject.json",
			wantForm: map[string][]string{"project": {"sample"}}},
		{args: []string{"ws", "list-resources", "j2", url}, want: "crawler\nenginestatus\nstats\n"},
		{args: []string{"ws", "list-running", "--job", "j2", url}, want: "spider:7f:slow\n"},
		{args: []string{"ws", "list-available", "j2", url}, want: "catalog\nslow\n", path: "/webservice/j2/crawler/spiders",
			wantForm: map[string][]string{"body": {`{"id":1,"jsonrpc":"2.0","method":"list","params":[]}`}}},
		{args: []string{"ws", "stop", "j2", url}, want: "stopping spider:7f:slow\n", path: "/webservice/j2/crawler/engine",
			wantForm: map[string][]string{"body": {`{"id":1,"jsonrpc":"2.0","method":"close_spider","params":["spider:7f:slow"]}`}}},
		{args: []string{"ws", "get-global-stats", "j2", url}, want: fmt.Sprintf("%-40s %v\n%-40s %v\n", "a", "x", "b", "70578176"), path: "/webservice/j2/stats",
			wantForm: map[string][]string{"body": {`{"id":1,"jsonrpc":"2.0","method":"get_stats","params":[]}`}}},
		{args: []string{"ws", "get-spider-stats", "j2", "spider:7f:slow", url}, want: fmt.Sprintf("%-40s %v\n%-40s %v\n", "a", "x", "b", "70578176"), path: "/webservice/j2/stats",
			wantForm: map[string][]string{"body": {`{"id":1,"jsonrpc":"2.0","method":"get_stats","params":["spider:7f:slow"]}`}}},
		{args: []string{"ws", "engine-status", "j2", url}, want: "time()-engine.start_time  12345678.5\nengine.has_capacity()     true\n"},
		{args: []string{"ws", "pause", "j2", url}, want: "", path: "/webservice/j2/crawler/engine",
			wantForm: map[string][]string{"body": {`{"id":1,"jsonrpc":"2.0","method":"pause","params":[]}`}}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[:2], " "), func(t *testing.T) {
			out, stderr, err := scrapydctl(t, tt.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			if out != tt.want {
				t.Errorf("output:\n%s\nwant:\n%s", out, tt.want)
			}
			if tt.path != "" && !reflect.DeepEqual(f.form(tt.path), tt.wantForm) {
				t.Errorf("%s got %v, want %v", tt.path, f.form(tt.path), tt.wantForm)
			}
		})
	}
}

func TestCommandErrors(t *testing.T) {
	f := newFake(t, map[string]string{
		"/schedule.json": `{"status": "error", "message": "spider 'nope' not found", "node_name": "vm"}`,
	})
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `basic realm="Scrapyd"`)
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	}))
	defer auth.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	tests := []struct {
		args    []string
		wantErr string
		wantOut string
	}{
		{[]string{"schedule", "sample", "nope", "--url", f.srv.URL}, "spider 'nope' not found", ""},
		{[]string{"schedule", "sample", "nope", "--url", f.srv.URL, "--json"}, "spider 'nope' not found",
			`{"status": "error", "message": "spider 'nope' not found", "node_name": "vm"}` + "\n"},
		{[]string{"projects", "--url", auth.URL, "-u", "john", "--password", "bad"}, "the server refused the credentials (HTTP 401)", ""},
		{[]string{"daemonstatus", "--url", "http://" + closed}, "cannot reach http://" + closed + ": connection refused", ""},
		{[]string{"daemonstatus", "--host", "127.0.0.1", "--port", closed[strings.LastIndex(closed, ":")+1:]}, "cannot reach http://" + closed + ": connection refused", ""},
		{[]string{"schedule", "sample", "--url", f.srv.URL}, "schedule: wrong number of arguments (usage: schedule [-p] PROJECT SPIDER...)", ""},
		{[]string{"schedule", "sample", "s", "-a", "novalue", "--url", f.srv.URL}, `-a "novalue": want NAME=VALUE`, ""},
		{[]string{"cancel", "p", "j", "--force", "--signal", "TERM", "--url", f.srv.URL}, "give either --signal or --force, not both", ""},
		{[]string{"ws", "stop", "--url", f.srv.URL}, "ws stop: which job? (give --job ID or the id as the first argument)", ""},
		{[]string{"jobs", "--state", "done", "--url", f.srv.URL}, `--state "done": want pending, running or finished`, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[:2], " "), func(t *testing.T) {
			out, _, err := scrapydctl(t, tt.args...)
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("error = %v, want %s", err, tt.wantErr)
			}
			if out != tt.wantOut {
				t.Errorf("output %q, want %q", out, tt.wantOut)
			}
		})
	}
}

// TestRefusedDeployOnce: a server's multi-line refusal appears once in
// everything scrapydctl prints, as main prints it.
func TestRefusedDeployOnce(t *testing.T) {
	traceback := "Traceback (most recent call last):\n  File \"x.py\", line 1\nImportError: No module named 'nope'"
	f := newFake(t, map[string]string{"/addversion.json": `{"status": "error", "message": "` + strings.ReplaceAll(strings.ReplaceAll(traceback, `"`, `\"`), "\n", `\n`) + `", "node_name": "vm"}`})
	dir := copyProject(t)
	egg := filepath.Join(dir, "sample.egg")
	writeFile(t, egg, "not really an egg")
	t.Chdir(dir)
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"scrapydctl", "deploy", "--url", f.srv.URL, "--egg", egg, "--version", "1"}, &stdout, &stderr)
	if err == nil {
		t.Fatal("a refused deploy succeeded")
	}
	all := stdout.String() + stderr.String() + "scrapydctl: " + err.Error() + "\n" // what main adds
	if n := strings.Count(all, "ImportError: No module named 'nope'"); n != 1 {
		t.Errorf("the server's message is printed %d times:\n%s", n, all)
	}
	if !strings.Contains(err.Error(), traceback) {
		t.Errorf("error %q does not carry the server's message", err)
	}
}

// TestProjectFlag: every command that takes a project takes it as -p too,
// and sends the same request either way.
func TestProjectFlag(t *testing.T) {
	f := newFake(t, map[string]string{
		"/listversions.json":       `{"versions": ["1.0"], "status": "ok", "node_name": "vm"}`,
		"/listspiders.json":        `{"spiders": ["params"], "status": "ok", "node_name": "vm"}`,
		"/schedule.json":           `{"jobid": "abc", "status": "ok", "node_name": "vm"}`,
		"/listjobs.json":           jobsAnswer,
		"/status.json":             `{"currstate": "running", "status": "ok", "node_name": "vm"}`,
		"/cancel.json":             `{"prevstate": "running", "status": "ok", "node_name": "vm"}`,
		"/delversion.json":         `{"status": "ok", "node_name": "vm"}`,
		"/delproject.json":         `{"status": "ok", "node_name": "vm"}`,
		"/logs/shop/params/j9.log": "a log line",
	})
	tests := []struct {
		positional, flag string
		path             string
	}{
		{"versions shop", "versions -p shop", "/listversions.json"},
		{"spiders shop --version 1.0", "spiders --project shop --version 1.0", "/listspiders.json"},
		{"schedule shop params -a x=1", "schedule params -p shop -a x=1", "/schedule.json"},
		{"cancel shop j2", "cancel -p shop j2", "/cancel.json"},
		{"delversion shop 1.0", "delversion 1.0 -p shop", "/delversion.json"},
		{"delproject shop", "delproject -p shop", "/delproject.json"},
		{"jobs --project shop", "jobs -p shop", "/listjobs.json"},
		{"status j2 --project shop", "status j2 -p shop", "/status.json"},
		{"log shop params j9", "log -p shop params j9", "/status.json"},
	}
	for _, tt := range tests {
		var outs []string
		var forms []map[string][]string
		for _, args := range []string{tt.positional, tt.flag} {
			out, stderr, err := scrapydctl(t, append(strings.Fields(args), "--url", f.srv.URL)...)
			if err != nil {
				t.Errorf("%s: %v\n%s", args, err, stderr)
			}
			outs, forms = append(outs, out), append(forms, f.form(tt.path))
		}
		if outs[0] != outs[1] || !reflect.DeepEqual(forms[0], forms[1]) || forms[1]["project"][0] != "shop" {
			t.Errorf("%q and %q differ: output %q, %q; %s %v, %v", tt.positional, tt.flag, outs[0], outs[1], tt.path, forms[0], forms[1])
		}
	}
	for _, args := range []string{"versions -p shop shop", "schedule -p shop shop params", "delversion -p shop", "cancel shop"} {
		_, _, err := scrapydctl(t, append(strings.Fields(args), "--url", f.srv.URL)...)
		if exitStatus(err) != exitUsage {
			t.Errorf("%s: %v (status %d), want a usage error", args, err, exitStatus(err))
		}
	}
	if _, _, err := scrapydctl(t, "versions", "-p", "shop", "shop", "--url", f.srv.URL); err == nil ||
		err.Error() != `versions: the project is given twice, as -p shop and as "shop" (give one)` {
		t.Errorf("versions -p shop shop: %v", err)
	}
}

// TestExitStatus: the statuses --help documents, for each kind of failure.
func TestExitStatus(t *testing.T) {
	f := newFake(t, map[string]string{
		"/listprojects.json": `{"projects": [], "status": "ok", "node_name": "vm"}`,
		"/listversions.json": `{"status": "error", "message": "project 'nope' not found", "node_name": "vm"}`,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	tests := []struct {
		args string
		want int
	}{
		{"projects --url " + f.srv.URL, 0},
		{"versions nope --url " + f.srv.URL, 1},                // the server said no
		{"daemonstatus --url " + f.srv.URL, 1},                 // HTTP 404
		{"projects --url " + closed, 3},                        // nobody listens
		{"projects --url " + f.srv.URL + " --no-such-flag", 2}, // a flag urfave/cli does not know
		{"no-such-command", 2},
		{"ws no-such-command", 2},
		{"versions --url " + f.srv.URL, 2}, // no project
		{"jobs --state done --url " + f.srv.URL, 2},
		{"schedule p s -a novalue --url " + f.srv.URL, 2},
		{"projects --url " + f.srv.URL + " --host localhost", 2},
	}
	for _, tt := range tests {
		_, _, err := scrapydctl(t, strings.Fields(tt.args)...)
		if got := exitStatus(err); got != tt.want {
			t.Errorf("scrapydctl %s: status %d (%v), want %d", tt.args, got, err, tt.want)
		}
	}
	out, _, err := scrapydctl(t, "--help")
	if err != nil || !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(exitStatusHelp), " ")) {
		t.Errorf("--help does not document the exit statuses: %v\n%s", err, out)
	}
}

func TestReorderArgs(t *testing.T) {
	cmds := newApp(io.Discard, io.Discard).Commands
	tests := []struct{ in, want string }{
		{"scrapydctl schedule p s -a k=v --priority 2", "scrapydctl schedule -a k=v --priority 2 p s"},
		{"scrapydctl log j -f --url=http://x/", "scrapydctl log -f --url=http://x/ j"},
		{"scrapydctl cancel p j --force -- -odd", "scrapydctl cancel --force -- p j -odd"},
		{"scrapydctl ws stop j --job x", "scrapydctl ws stop --job x j"},
		{"scrapydctl ws help", "scrapydctl ws help"},
		{"scrapydctl unknown a -b", "scrapydctl unknown a -b"},
	}
	for _, tt := range tests {
		got := strings.Join(reorderArgs(cmds, strings.Fields(tt.in)), " ")
		if got != tt.want {
			t.Errorf("reorderArgs(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestLogFollow follows a log that grows while the job runs, through HTTP
// Range requests, until listjobs reports the job finished.
func TestLogFollow(t *testing.T) {
	var (
		mu    sync.Mutex
		log   string
		polls int
	)
	chunks := []string{"one\n", "two\n", "three\n"}
	mux := http.NewServeMux()
	mux.HandleFunc("/listjobs.json", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		// Each poll the crawl writes a line; after the last it has finished.
		state := "running"
		if polls < len(chunks) {
			log += chunks[polls]
		} else {
			state = "finished"
		}
		polls++
		fmt.Fprintf(w, `{"pending": [], "running": [], "finished": [], %q: [{"id": "j", "project": "p", "spider": "s", "log_url": "/logs/p/s/j.log"}], "status": "ok"}`, state)
	})
	var ranges []string
	mux.HandleFunc("/logs/p/s/j.log", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		content := log
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		http.ServeContent(w, r, "j.log", time.Time{}, strings.NewReader(content))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	out, _, err := scrapydctl(t, "log", "j", "-f", "--interval", "1ms", "--url", srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if want := "one\ntwo\nthree\n"; out != want {
		t.Errorf("followed log %q, want %q", out, want)
	}
	if want := []string{"", "bytes=4-", "bytes=8-", "bytes=14-"}; !reflect.DeepEqual(ranges, want) {
		t.Errorf("Range headers %q, want %q", ranges, want)
	}
}

func TestLogErrors(t *testing.T) {
	f := newFake(t, map[string]string{"/listjobs.json": jobsAnswer})
	tests := []struct{ args, wantErr string }{
		{"log j1", "the job is pending: it has no log file yet (-f waits for it)"},
		{"log j3", "the job has no log file"},
		{"items j9", "job not found: j9 (the server does not list it; try items PROJECT SPIDER JOB)"},
		{"log a b", "log: want JOB or [-p] PROJECT SPIDER JOB"},
	}
	for _, tt := range tests {
		_, _, err := scrapydctl(t, append(strings.Fields(tt.args), "--url", f.srv.URL)...)
		if err == nil || err.Error() != tt.wantErr {
			t.Errorf("%s: error %v, want %s", tt.args, err, tt.wantErr)
		}
	}
}

// eggFiles lists an egg's entries.
func eggFiles(t *testing.T, egg []byte) []string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(egg), int64(len(egg)))
	if err != nil {
		t.Fatalf("not a zip: %v", err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	return names
}

func TestDeploy(t *testing.T) {
	f := newFake(t, map[string]string{
		"/addversion.json":   `{"project": "sample", "version": "1.0", "spiders": 4, "status": "ok", "node_name": "vm"}`,
		"/listprojects.json": `{"projects": ["sample"], "status": "ok", "node_name": "vm"}`,
	})
	bad := newFake(t, map[string]string{
		"/addversion.json": `{"status": "error", "message": "egg has no [scrapy] settings entry point", "node_name": "vm"}`,
	})
	dir := copyProject(t)
	t.Setenv("SCRAPYDCTL_TEST_URL", f.srv.URL)
	t.Setenv("NETRC", filepath.Join(dir, "no-netrc"))
	writeFile(t, filepath.Join(dir, "scrapy.cfg"), `[settings]
default = sample.settings

[deploy]
url = $SCRAPYDCTL_TEST_URL/
project = sample

[deploy:broken]
url = `+bad.srv.URL+`/
`)
	t.Chdir(filepath.Join(dir, "sample", "spiders")) // the closest scrapy.cfg is found upwards

	out, _, err := scrapydctl(t, "deploy", "-l")
	if want := fmt.Sprintf("%-20s %s/\n%-20s %s/\n", "default", f.srv.URL, "broken", bad.srv.URL); err != nil || out != want {
		t.Errorf("deploy -l = %q, %v; want %q", out, err, want)
	}
	out, _, err = scrapydctl(t, "deploy", "-L", "default")
	if err != nil || out != "sample\n" {
		t.Errorf("deploy -L = %q, %v", out, err)
	}

	out, stderr, err := scrapydctl(t, "deploy", "--version", "1.0")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(out, `"spiders": 4`) || !strings.Contains(stderr, `Deploying to project "sample" in `+f.srv.URL+"/addversion.json: 100%") {
		t.Errorf("stdout %q\nstderr %q", out, stderr)
	}
	if got := f.form("/addversion.json"); got["project"][0] != "sample" || got["version"][0] != "1.0" {
		t.Errorf("upload form %v", got)
	}
	files := strings.Join(eggFiles(t, f.eggs["1.0"]), " ")
	if !strings.Contains(files, "sample/settings.py") || !strings.Contains(files, "sample/data/greeting.txt") ||
		!strings.Contains(files, "EGG-INFO/entry_points.txt") || strings.Contains(files, "local_settings") {
		t.Errorf("egg has %s", files)
	}

	// A refusal is said once: by main, from the returned error, not also
	// as the raw answer (scrapyd's tracebacks are long).
	out, stderr, err = scrapydctl(t, "deploy", "broken", "-p", "sample")
	if err == nil || err.Error() != "target broken: egg has no [scrapy] settings entry point" || exitStatus(err) != exitFailed ||
		out != "" || strings.Contains(stderr, "settings entry point") {
		t.Errorf("deploy to an erroring server: %v (status %d), stdout %q, stderr %q", err, exitStatus(err), out, stderr)
	}

	// --url instead of a target; the project is still [deploy]'s.
	other := newFake(t, map[string]string{"/addversion.json": `{"project": "sample", "version": "3.0", "spiders": 4, "status": "ok", "node_name": "other"}`})
	out, _, err = scrapydctl(t, "deploy", "--url", other.srv.URL, "--version", "3.0")
	if err != nil || !strings.Contains(out, `"node_name": "other"`) || other.form("/addversion.json")["project"][0] != "sample" {
		t.Errorf("deploy --url: %v, %q, form %v", err, out, other.form("/addversion.json"))
	}
	if _, _, err := scrapydctl(t, "deploy", "broken", "--url", other.srv.URL); err == nil || exitStatus(err) != exitUsage {
		t.Errorf("deploy TARGET --url: %v, want a usage error", err)
	}

	eggPath := filepath.Join(t.TempDir(), "out.egg")
	if _, _, err := scrapydctl(t, "deploy", "--build-egg", eggPath); err != nil {
		t.Fatal(err)
	}
	built, err := os.ReadFile(eggPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(built, f.eggs["1.0"]) {
		t.Error("--build-egg wrote other bytes than deploy uploaded")
	}
	if _, _, err := scrapydctl(t, "deploy", "--egg", eggPath, "--version", "2.0"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.eggs["2.0"], built) {
		t.Error("--egg did not upload the file")
	}
}

// TestDeployRequirements: the project's requirements.txt goes with the
// egg; [deploy] requirements names another file; --wheels builds the
// wheelhouse with pip wheel (offline here: from a local wheel) and sends
// the wheels zipped, flat; --no-requirements sends none.
func TestDeployRequirements(t *testing.T) {
	needTool(t, defaultPython, "-m", "pip", "--version")
	f := newFake(t, map[string]string{"/addversion.json": `{"project": "sample", "version": "v", "spiders": 4, "status": "ok"}`})
	dir := copyProject(t)
	local := t.TempDir()
	writeFile(t, filepath.Join(local, testkit.WheelName("greeter", "1.0")), string(testkit.Wheel(t, "greeter", "1.0", map[string]string{"greeter/__init__.py": ""})))
	reqs := "--no-index\n--find-links " + local + "\ngreeter==1.0\n"
	writeFile(t, filepath.Join(dir, "requirements.txt"), reqs)
	cfg := "[settings]\ndefault = sample.settings\n[deploy]\nurl = " + f.srv.URL + "/\nproject = sample\n"
	writeFile(t, filepath.Join(dir, "scrapy.cfg"), cfg)
	t.Chdir(dir)
	if _, stderr, err := scrapydctl(t, "deploy", "--version", "1"); err != nil || !strings.Contains(stderr, "Sending requirements: "+filepath.Join(dir, "requirements.txt")) {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if got := f.deps["1"]; string(got["requirements"]) != reqs || got["wheels"] != nil {
		t.Errorf("deploy sent %q", got)
	}
	if _, stderr, err := scrapydctl(t, "deploy", "--version", "2", "--wheels"); err != nil {
		t.Fatalf("--wheels: %v\n%s", err, stderr)
	}
	zr, err := zip.NewReader(bytes.NewReader(f.deps["2"]["wheels"]), int64(len(f.deps["2"]["wheels"])))
	if err != nil || len(zr.File) != 1 || zr.File[0].Name != testkit.WheelName("greeter", "1.0") {
		t.Fatalf("--wheels sent %v (%v)", zr, err)
	}
	os.MkdirAll(filepath.Join(dir, "deps"), 0o755)
	writeFile(t, filepath.Join(dir, "deps", "prod.txt"), "greeter\n")
	writeFile(t, filepath.Join(dir, "scrapy.cfg"), cfg+"requirements = deps/prod.txt\n")
	if _, _, err := scrapydctl(t, "deploy", "--version", "3"); err != nil || string(f.deps["3"]["requirements"]) != "greeter\n" {
		t.Errorf("[deploy] requirements: %v, sent %q", err, f.deps["3"])
	}
	if _, _, err := scrapydctl(t, "deploy", "--version", "4", "--no-requirements"); err != nil || f.deps["4"] != nil {
		t.Errorf("--no-requirements: %v, sent %q", err, f.deps["4"])
	}
}

// TestDeployWithSetupPy builds through the project's own setup.py with
// Debian's python3, which has setuptools.
func TestDeployWithSetupPy(t *testing.T) {
	needTool(t, defaultPython, "-c", "import setuptools")
	f := newFake(t, map[string]string{"/addversion.json": `{"project": "sample", "version": "v", "spiders": 4, "status": "ok"}`})
	dir := copyProject(t)
	writeFile(t, filepath.Join(dir, "scrapy.cfg"), "[settings]\ndefault = sample.settings\n[deploy]\nurl = "+f.srv.URL+"/\nproject = sample\n")
	writeFile(t, filepath.Join(dir, "setup.py"), `from setuptools import setup, find_packages
setup(name="sample", version="1.0", packages=find_packages(), package_data={"sample": ["data/*.txt"]},
      entry_points={"scrapy": ["settings = sample.settings"]})
`)
	t.Chdir(dir)
	if _, stderr, err := scrapydctl(t, "deploy", "--version", "v"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	files := strings.Join(eggFiles(t, f.eggs["v"]), " ")
	if !strings.Contains(files, "sample/data/greeting.txt") || !strings.Contains(files, "EGG-INFO/entry_points.txt") {
		t.Errorf("setup.py egg has %s", files)
	}
}

// TestDaemonStatusAgainstScrapyd: Scrapyd has no diagnostics.json (it
// answers 404); daemonstatus then prints the counts alone, and succeeds.
func TestDaemonStatusAgainstScrapyd(t *testing.T) {
	f := newFake(t, map[string]string{
		"/daemonstatus.json": `{"pending": 0, "running": 2, "finished": 5, "status": "ok", "node_name": "vm"}`,
	})
	out, stderr, err := scrapydctl(t, "daemonstatus", "--url="+f.srv.URL)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if want := "node      vm\npending   0\nrunning   2\nfinished  5\n"; out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
}
