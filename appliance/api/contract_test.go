package api

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/process"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapy"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// fakeLister stands in for `scrapy list`: the sample egg's four spiders,
// or Scrapy's failure for an egg whose settings module is "broken.settings".
type fakeLister struct{}

func (fakeLister) List(ctx context.Context, p scrapy.Project) ([]string, error) {
	if p.SettingsModule == "broken.settings" {
		return nil, &scrapy.RunnerError{Output: "Traceback (most recent call last):\nException: This should break the `scrapy list` command\n"}
	}
	return []string{"catalog", "envdump", "params", "slow"}, nil
}

func testEgg(t testing.TB, settings string) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("EGG-INFO/entry_points.txt")
	io.WriteString(w, "[scrapy]\nsettings = "+settings+"\n")
	zw.Close()
	return buf.Bytes()
}

type harness struct {
	app  *fiber.App
	root string
	st   *store.Store
	svc  *service.Service
}

func newHarness(t testing.TB, conf string) *harness {
	t.Helper()
	return newHarnessIn(t, t.TempDir(), conf)
}

// newHarnessIn is newHarness on a root the caller prepared (a database
// copied in, say).
func newHarnessIn(t testing.TB, root, conf string) *harness {
	t.Helper()
	confFile := filepath.Join(root, "etc", "scrapyd", "scrapyd.conf")
	os.MkdirAll(filepath.Dir(confFile), 0o755)
	os.WriteFile(confFile, []byte("[scrapyd]\nnode_name = vm\n"+conf), 0o644)
	cfg, err := config.Load(config.Options{Root: root, Env: []string{}, Cwd: root, Home: "-"})
	if err != nil {
		t.Fatal(err)
	}
	conf2 := func() *config.Config { return cfg }
	st, err := store.Open(cfg.DbsDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	eggs := &egg.Store{Dir: cfg.EggsDir}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The dispatcher is never run: scheduled jobs stay pending.
	disp := dispatch.New(dispatch.Options{Config: conf2, Store: st, Eggs: eggs, Launcher: process.New(), Log: log})
	svc := &service.Service{Config: conf2, Store: st, Eggs: eggs, Dispatch: disp,
		Lister: func(*config.Config) service.Lister { return fakeLister{} }}
	return &harness{app: New(Options{Config: conf2, Service: svc, Log: log, BodyLimit: 4 << 20}), root: root, st: st, svc: svc}
}

type request struct {
	method, path string
	form         string            // urlencoded body
	multipart    map[string]string // fields; "egg" holds file bytes
	header       map[string]string
}

type response struct {
	status  int
	body    string
	headers map[string]string
}

func (h *harness) do(t testing.TB, r request) response {
	t.Helper()
	var body io.Reader
	req := httptest.NewRequest(r.method, r.path, nil)
	switch {
	case r.multipart != nil:
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for k, v := range r.multipart {
			if k == "egg" {
				fw, _ := mw.CreateFormFile("egg", "project.egg")
				fw.Write([]byte(v))
			} else {
				mw.WriteField(k, v)
			}
		}
		mw.Close()
		body = &buf
		req = httptest.NewRequest(r.method, r.path, body)
		req.Header.Set("Content-Type", mw.FormDataContentType())
	case r.form != "":
		req = httptest.NewRequest(r.method, r.path, strings.NewReader(r.form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := h.app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, body: string(data), headers: map[string]string{}}
	for k := range resp.Header {
		out.headers[k] = resp.Header.Get(k)
	}
	return out
}

var jobIDRE = regexp.MustCompile(`"jobid": "[0-9a-f]{32}"`)

// TestContract replays the reference transcript's requests, in order, and
// compares whole bodies: key order, separators, the trailing newline.
func TestContract(t *testing.T) {
	h := newHarness(t, "")
	sample := string(testEgg(t, "sample.settings"))
	get, post := http.MethodGet, http.MethodPost
	steps := []struct {
		name string
		req  request
		want string // exact body; a 32-hex jobid is normalised to JOBID
	}{
		{"1 daemonstatus fresh", request{method: get, path: "/daemonstatus.json"}, `{"pending": 0, "running": 0, "finished": 0, "status": "ok", "node_name": "vm"}`},
		{"2 listprojects empty", request{method: get, path: "/listprojects.json"}, `{"projects": [], "status": "ok", "node_name": "vm"}`},
		{"3 addversion 1.0", request{method: post, path: "/addversion.json", multipart: map[string]string{"project": "sample", "version": "1.0", "egg": sample}}, `{"project": "sample", "version": "1.0", "spiders": 4, "status": "ok", "node_name": "vm"}`},
		{"4 addversion 1.1", request{method: post, path: "/addversion.json", multipart: map[string]string{"project": "sample", "version": "1.1", "egg": sample}}, `{"project": "sample", "version": "1.1", "spiders": 4, "status": "ok", "node_name": "vm"}`},
		{"5 addversion r10", request{method: post, path: "/addversion.json", multipart: map[string]string{"project": "sample", "version": "r10", "egg": sample}}, `{"project": "sample", "version": "r10", "spiders": 4, "status": "ok", "node_name": "vm"}`},
		{"6 listprojects", request{method: get, path: "/listprojects.json"}, `{"projects": ["sample"], "status": "ok", "node_name": "vm"}`},
		// Better than Scrapyd: versions as uploaded, and r10 sorts after the dotted ones without failing.
		{"7 listversions", request{method: get, path: "/listversions.json?project=sample"}, `{"versions": ["1.0", "1.1", "r10"], "status": "ok", "node_name": "vm"}`},
		{"8 delversion r10", request{method: post, path: "/delversion.json", form: "project=sample&version=r10"}, `{"status": "ok", "node_name": "vm"}`},
		{"9 listversions", request{method: get, path: "/listversions.json?project=sample"}, `{"versions": ["1.0", "1.1"], "status": "ok", "node_name": "vm"}`},
		{"10 listspiders", request{method: get, path: "/listspiders.json?project=sample"}, `{"spiders": ["catalog", "envdump", "params", "slow"], "status": "ok", "node_name": "vm"}`},
		{"11 listspiders _version", request{method: get, path: "/listspiders.json?project=sample&_version=1.0"}, `{"spiders": ["catalog", "envdump", "params", "slow"], "status": "ok", "node_name": "vm"}`},
		{"12 schedule", request{method: post, path: "/schedule.json", form: "project=sample&spider=catalog"}, `{"jobid": JOBID, "status": "ok", "node_name": "vm"}`},
		{"13 schedule with args", request{method: post, path: "/schedule.json", form: "project=sample&spider=params&category=category-03&limit=4&setting=SAMPLE_GREETING=hello-from-scrapyd&setting=CLOSESPIDER_ITEMCOUNT=100&jobid=params-job-1&_version=1.0"}, `{"jobid": "params-job-1", "status": "ok", "node_name": "vm"}`},
		{"14 schedule priority", request{method: post, path: "/schedule.json", form: "project=sample&spider=slow&priority=5&jobid=slow-job"}, `{"jobid": "slow-job", "status": "ok", "node_name": "vm"}`},
		{"16 listjobs pending", request{method: get, path: "/listjobs.json?project=sample&state=pending"}, `{"pending": [{"id": "slow-job", "project": "sample", "spider": "slow", "version": null, "settings": {}, "args": {}}, {"id": JOBID_, "project": "sample", "spider": "catalog", "version": null, "settings": {}, "args": {}}, {"id": "params-job-1", "project": "sample", "spider": "params", "version": "1.0", "settings": {"SAMPLE_GREETING": "hello-from-scrapyd", "CLOSESPIDER_ITEMCOUNT": "100"}, "args": {"category": "category-03", "limit": "4"}}], "running": [], "finished": [], "status": "ok", "node_name": "vm"}`},
		{"17 status pending", request{method: get, path: "/status.json?job=slow-job"}, `{"currstate": "pending", "status": "ok", "node_name": "vm"}`},
		{"18 daemonstatus", request{method: get, path: "/daemonstatus.json"}, `{"pending": 3, "running": 0, "finished": 0, "status": "ok", "node_name": "vm"}`},
		{"24 cancel pending", request{method: post, path: "/cancel.json", form: "project=sample&job=slow-job"}, `{"prevstate": "pending", "status": "ok", "node_name": "vm"}`},
		{"25 cancel unknown", request{method: post, path: "/cancel.json", form: "project=sample&job=nosuchjob"}, `{"prevstate": null, "status": "ok", "node_name": "vm"}`},
		{"31 status gone", request{method: get, path: "/status.json?job=slow-job"}, `{"currstate": null, "status": "ok", "node_name": "vm"}`},
		{"33 no project", request{method: post, path: "/schedule.json", form: "spider=catalog"}, `{"status": "error", "message": "'project' parameter is required", "node_name": "vm"}`},
		{"34 no spider", request{method: post, path: "/schedule.json", form: "project=sample"}, `{"status": "error", "message": "'spider' parameter is required", "node_name": "vm"}`},
		{"35 unknown project", request{method: post, path: "/schedule.json", form: "project=nope&spider=catalog"}, `{"status": "error", "message": "project 'nope' not found", "node_name": "vm"}`},
		{"36 unknown spider", request{method: post, path: "/schedule.json", form: "project=sample&spider=nope"}, `{"status": "error", "message": "spider 'nope' not found", "node_name": "vm"}`},
		{"37 unknown _version", request{method: post, path: "/schedule.json", form: "project=sample&spider=catalog&_version=9.9"}, `{"status": "error", "message": "version '9.9' not found", "node_name": "vm"}`},
		{"38 bad priority", request{method: post, path: "/schedule.json", form: "project=sample&spider=catalog&priority=high"}, `{"status": "error", "message": "priority is invalid: could not convert string to float: b'high'", "node_name": "vm"}`},
		{"39 setting without =", request{method: post, path: "/schedule.json", form: "project=sample&spider=catalog&setting=NOEQUALS"}, `{"status": "error", "message": "ValueError: dictionary update sequence element #0 has length 1; 2 is required", "node_name": "vm"}`},
		{"40 listspiders no project", request{method: get, path: "/listspiders.json"}, `{"status": "error", "message": "'project' parameter is required", "node_name": "vm"}`},
		{"41 listspiders unknown project", request{method: get, path: "/listspiders.json?project=nope"}, `{"status": "error", "message": "project 'nope' not found", "node_name": "vm"}`},
		{"42 listspiders unknown version", request{method: get, path: "/listspiders.json?project=sample&_version=9.9"}, `{"status": "error", "message": "version '9.9' not found", "node_name": "vm"}`},
		{"43 listversions unknown project", request{method: get, path: "/listversions.json?project=nope"}, `{"versions": [], "status": "ok", "node_name": "vm"}`},
		{"44 listjobs unknown project", request{method: get, path: "/listjobs.json?project=nope"}, `{"status": "error", "message": "project 'nope' not found", "node_name": "vm"}`},
		{"45 status no job", request{method: get, path: "/status.json"}, `{"status": "error", "message": "'job' parameter is required", "node_name": "vm"}`},
		{"46 status unknown project", request{method: get, path: "/status.json?job=x&project=nope"}, `{"status": "error", "message": "project 'nope' not found", "node_name": "vm"}`},
		{"47 cancel unknown project", request{method: post, path: "/cancel.json", form: "project=nope&job=x"}, `{"status": "error", "message": "project 'nope' not found", "node_name": "vm"}`},
		{"48 cancel no job", request{method: post, path: "/cancel.json", form: "project=sample"}, `{"status": "error", "message": "'job' parameter is required", "node_name": "vm"}`},
		{"49 addversion no egg", request{method: post, path: "/addversion.json", form: "project=sample&version=2.0"}, `{"status": "error", "message": "'egg' parameter is required", "node_name": "vm"}`},
		{"50 not a zip", request{method: post, path: "/addversion.json", multipart: map[string]string{"project": "sample", "version": "2.0", "egg": "random bytes"}}, `{"status": "error", "message": "egg is not a ZIP file (if using curl, use egg=@path not egg=path)", "node_name": "vm"}`},
		{"51 egg=path", request{method: post, path: "/addversion.json", form: "project=sample&version=2.0&egg=/tmp/sample.egg"}, `{"status": "error", "message": "egg is not a ZIP file (if using curl, use egg=@path not egg=path)", "node_name": "vm"}`},
		{"52 zip that is not an egg", request{method: post, path: "/addversion.json", multipart: map[string]string{"project": "zipnotegg", "version": "1", "egg": zipWith(t, "index.html")}}, `{"status": "error", "message": "egg has no [scrapy] settings entry point in EGG-INFO/entry_points.txt", "node_name": "vm"}`},
		{"A102 scrapy list fails", request{method: post, path: "/addversion.json", multipart: map[string]string{"project": "fx2", "version": "1", "egg": string(testEgg(t, "broken.settings"))}}, `{"status": "error", "message": "RunnerError: Traceback (most recent call last):\nException: This should break the ` + "`scrapy list`" + ` command\n", "node_name": "vm"}`},
		// Better than Scrapyd (#53, A106): failed uploads are not stored.
		{"53 nothing stored", request{method: get, path: "/listprojects.json"}, `{"projects": ["sample"], "status": "ok", "node_name": "vm"}`},
		{"55 traversal project", request{method: post, path: "/addversion.json", multipart: map[string]string{"project": "../p", "version": "1", "egg": sample}}, `{"status": "error", "message": "DirectoryTraversalError: ../p", "node_name": "vm"}`},
		{"traversal version", request{method: post, path: "/addversion.json", multipart: map[string]string{"project": "p", "version": "../v", "egg": sample}}, `{"status": "error", "message": "DirectoryTraversalError: ../v", "node_name": "vm"}`},
		{"traversal spider", request{method: post, path: "/schedule.json", form: "project=sample&spider=../s"}, `{"status": "error", "message": "DirectoryTraversalError: ../s", "node_name": "vm"}`},
		// Better than Scrapyd (A111): the job never reaches the queue, no slot leaks.
		{"A111 traversal jobid", request{method: post, path: "/schedule.json", form: "project=sample&spider=params&jobid=../../x"}, `{"status": "error", "message": "DirectoryTraversalError: ../../x", "node_name": "vm"}`},
		{"control char jobid", request{method: post, path: "/schedule.json", form: "project=sample&spider=params&jobid=a%0Ab"}, `{"status": "error", "message": "jobid is invalid: contains a control character", "node_name": "vm"}`},
		{"NUL in project", request{method: get, path: "/listversions.json?project=a%00b"}, `{"status": "error", "message": "project is invalid: contains a control character", "node_name": "vm"}`},
		{"long name", request{method: post, path: "/schedule.json", form: "project=sample&spider=params&jobid=" + strings.Repeat("j", 201)}, `{"status": "error", "message": "jobid is invalid: longer than 200 bytes", "node_name": "vm"}`},
		{"traversal listjobs", request{method: get, path: "/listjobs.json?project=..%2Fp"}, `{"status": "error", "message": "DirectoryTraversalError: ../p", "node_name": "vm"}`},
		{"invalid UTF-8", request{method: post, path: "/schedule.json", form: "project=%C3%28&spider=catalog"}, `{"status": "error", "message": "project is invalid: 'utf-8' codec can't decode byte 0xc3 in position 0: invalid continuation byte", "node_name": "vm"}`},
		{"truncated UTF-8", request{method: get, path: "/listversions.json?project=ab%E2%82"}, `{"status": "error", "message": "project is invalid: 'utf-8' codec can't decode byte 0xe2 in position 2: unexpected end of data", "node_name": "vm"}`},
		{"A arg too large (#381)", request{method: post, path: "/schedule.json", form: "project=sample&spider=params&big=" + strings.Repeat("x", 140000)}, `{"status": "error", "message": "argument 'big' is too large: 140004 bytes; one command-line argument of a crawl can hold at most 131071 bytes", "node_name": "vm"}`},
		{"args too large in all", request{method: post, path: "/schedule.json", form: "project=sample&spider=params" + strings.Repeat("&a"+"="+strings.Repeat("y", 100000), 1) + manyArgs(12, 100000)}, `{"status": "error", "message": "spider arguments and settings are too large: 1300113 bytes in all; a crawl's command line can hold at most 1048576", "node_name": "vm"}`},
		{"NUL in argument", request{method: post, path: "/schedule.json", form: "project=sample&spider=params&a=x%00y"}, `{"status": "error", "message": "argument a is invalid: contains a NUL byte", "node_name": "vm"}`},
		{"duplicate active jobid", request{method: post, path: "/schedule.json", form: "project=sample&spider=params&jobid=params-job-1"}, `{"status": "error", "message": "job 'params-job-1' is already pending or running; choose another jobid", "node_name": "vm"}`},
		{"56 delversion unknown", request{method: post, path: "/delversion.json", form: "project=sample&version=9.9"}, `{"status": "error", "message": "version '9.9' not found", "node_name": "vm"}`},
		{"57 delproject unknown", request{method: post, path: "/delproject.json", form: "project=nope"}, `{"status": "error", "message": "project 'nope' not found", "node_name": "vm"}`},
		{"58 GET on POST endpoint", request{method: get, path: "/schedule.json?project=sample&spider=catalog"}, `{"status": "error", "message": "UnsupportedMethod: Expected one of [b'HEAD', b'OPTIONS', b'POST']", "node_name": "vm"}`},
		{"59 POST on GET endpoint", request{method: post, path: "/daemonstatus.json"}, `{"status": "error", "message": "UnsupportedMethod: Expected one of [b'HEAD', b'OPTIONS', b'GET']", "node_name": "vm"}`},
		{"63 JSON body", request{method: post, path: "/schedule.json", form: "", header: map[string]string{"Content-Type": "application/json"}}, `{"status": "error", "message": "'project' parameter is required", "node_name": "vm"}`},
		{"64 POST with query string", request{method: post, path: "/schedule.json?project=sample&spider=params&limit=1&jobid=qs-job"}, `{"jobid": "qs-job", "status": "ok", "node_name": "vm"}`},
		// The first value of a repeated parameter counts; the body replaces the query.
		{"first value", request{method: post, path: "/schedule.json?project=nope&jobid=ignored", form: "project=sample&project=other&spider=params&limit=1&limit=2&jobid=dup-arg-job"}, `{"jobid": "dup-arg-job", "status": "ok", "node_name": "vm"}`},
		{"A110 args of repeated", request{method: get, path: "/listjobs.json?project=sample&state=pending"}, `{"pending": [JOBID_ENTRY, {"id": "params-job-1", "project": "sample", "spider": "params", "version": "1.0", "settings": {"SAMPLE_GREETING": "hello-from-scrapyd", "CLOSESPIDER_ITEMCOUNT": "100"}, "args": {"category": "category-03", "limit": "4"}}, {"id": "qs-job", "project": "sample", "spider": "params", "version": null, "settings": {}, "args": {"limit": "1"}}, {"id": "dup-arg-job", "project": "sample", "spider": "params", "version": null, "settings": {}, "args": {"limit": "1"}}], "running": [], "finished": [], "status": "ok", "node_name": "vm"}`},
		{"unicode escaped", request{method: post, path: "/addversion.json", multipart: map[string]string{"project": "日本", "version": "v€", "egg": sample}}, `{"project": "\u65e5\u672c", "version": "v\u20ac", "spiders": 4, "status": "ok", "node_name": "vm"}`},
		{"74 delproject", request{method: post, path: "/delproject.json", form: "project=%E6%97%A5%E6%9C%AC"}, `{"status": "ok", "node_name": "vm"}`},
		{"signal name", request{method: post, path: "/cancel.json", form: "project=sample&job=qs-job&signal=TERM"}, `{"prevstate": "pending", "status": "ok", "node_name": "vm"}`},
		{"bad signal", request{method: post, path: "/cancel.json", form: "project=sample&job=x&signal=NOPE"}, `{"status": "error", "message": "signal is invalid: \"NOPE\" is not a signal name (INT, TERM, KILL, ...) or number", "node_name": "vm"}`},
	}
	var firstJob string
	for _, s := range steps {
		resp := h.do(t, s.req)
		got := resp.body
		if m := jobIDRE.FindString(got); m != "" && firstJob == "" {
			firstJob = strings.TrimSuffix(strings.TrimPrefix(m, `"jobid": "`), `"`)
		}
		got = jobIDRE.ReplaceAllString(got, `"jobid": JOBID`)
		want := s.want + "\n"
		want = strings.ReplaceAll(want, "JOBID_ENTRY", `{"id": "`+firstJob+`", "project": "sample", "spider": "catalog", "version": null, "settings": {}, "args": {}}`)
		want = strings.ReplaceAll(want, "JOBID_", `"`+firstJob+`"`)
		if resp.status != 200 || got != want {
			t.Errorf("%s: HTTP %d\n got  %s want %s", s.name, resp.status, got, want)
		}
		if resp.headers["Content-Type"] != "application/json" || resp.headers["Access-Control-Allow-Origin"] != "*" ||
			resp.headers["Access-Control-Allow-Headers"] != "X-Requested-With" {
			t.Errorf("%s: headers %v", s.name, resp.headers)
		}
	}
}

func zipWith(t testing.TB, name string) string {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create(name)
	io.WriteString(w, "<html></html>")
	zw.Close()
	return buf.String()
}

func TestOptionsHeadAndNotFound(t *testing.T) {
	h := newHarness(t, "")
	r := h.do(t, request{method: http.MethodOptions, path: "/schedule.json"})
	if r.status != 204 || r.body != "" || r.headers["Allow"] != "OPTIONS, HEAD, POST" || r.headers["Access-Control-Allow-Methods"] != "OPTIONS, HEAD, POST" {
		t.Errorf("OPTIONS: %d %q %v", r.status, r.body, r.headers)
	}
	r = h.do(t, request{method: http.MethodOptions, path: "/daemonstatus.json"})
	if r.status != 204 || r.headers["Allow"] != "OPTIONS, HEAD, GET" {
		t.Errorf("OPTIONS GET endpoint: %d %v", r.status, r.headers)
	}
	r = h.do(t, request{method: http.MethodHead, path: "/daemonstatus.json"})
	if r.status != 200 || r.body != "" || r.headers["Content-Type"] != "application/json" || r.headers["Content-Length"] == "0" {
		t.Errorf("HEAD: %d %q %v", r.status, r.body, r.headers)
	}
	for _, p := range []string{"/nosuch.json", "/schedule.json/", "/DAEMONSTATUS.JSON"} {
		r = h.do(t, request{method: http.MethodGet, path: p})
		if r.status != 404 || !strings.Contains(r.body, "<h1>No Such Resource</h1>") {
			t.Errorf("%s: %d %q", p, r.status, r.body)
		}
	}
}

func TestBasicAuthOnEveryPath(t *testing.T) {
	h := newHarness(t, "username = hello12345\npassword = 67890world\n")
	good := map[string]string{"Authorization": "Basic aGVsbG8xMjM0NTo2Nzg5MHdvcmxk"}
	bad := map[string]string{"Authorization": "Basic YmFkdXNlcjpiYWRwYXNz"}
	for _, r := range []request{
		{method: http.MethodGet, path: "/daemonstatus.json"},
		{method: http.MethodGet, path: "/daemonstatus.json", header: bad},
		{method: http.MethodOptions, path: "/daemonstatus.json"},
		{method: http.MethodPost, path: "/schedule.json", form: "project=p&spider=s"},
		{method: http.MethodGet, path: "/nosuch.json"},
		{method: http.MethodGet, path: "/logs/"},
	} {
		resp := h.do(t, r)
		if resp.status != 401 || resp.body != "Unauthorized" || resp.headers["Www-Authenticate"] != `basic realm="Scrapyd"` {
			t.Errorf("%s %s: %d %q %v", r.method, r.path, resp.status, resp.body, resp.headers)
		}
	}
	resp := h.do(t, request{method: http.MethodGet, path: "/daemonstatus.json", header: good})
	if resp.status != 200 || !strings.HasPrefix(resp.body, `{"pending": 0`) {
		t.Errorf("good credentials: %d %q", resp.status, resp.body)
	}
	resp = h.do(t, request{method: http.MethodGet, path: "/nosuch.json", header: good})
	if resp.status != 404 {
		t.Errorf("404 behind auth: %d", resp.status)
	}
}

// TestUploadLimit: an upload over upload_limit is refused from its
// Content-Length, before the body is read (beyond the 8 KiB or so fasthttp reads
// ahead with the headers), with a Scrapyd-style error.
func TestUploadLimit(t *testing.T) {
	h := newHarness(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go h.app.Listener(ln)
	t.Cleanup(func() { h.app.Shutdown() })
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The harness allows 4 MiB; announce 5 MiB and send 16 KiB of it.
	io.WriteString(conn, "POST /addversion.json HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=X\r\nContent-Length: 5242880\r\n\r\n")
	conn.Write(make([]byte, 16<<10))
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if want := `{"status": "error", "message": "the request body is larger than upload_limit", "node_name": "vm"}` + "\n"; string(body) != want {
		t.Errorf("oversized upload: %d %q", resp.StatusCode, body)
	}
	if ents, _ := os.ReadDir(filepath.Join(h.root, "var/lib/scrapyd/eggs")); len(ents) != 0 {
		t.Errorf("an oversized upload left files: %v", ents)
	}
}

func TestEncodeLikePython(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{obj{{"a", 1}, {"b", nil}, {"c", []string{"x", "y"}}}, `{"a": 1, "b": null, "c": ["x", "y"]}`},
		{"tab\t\"q\" \\ é 😀 <&> \x01", `"tab\t\"q\" \\ \u00e9 \ud83d\ude00 <&> \u0001"`},
		{120.55, `120.55`},
		{2.0, `2.0`},
		{obj{}, `{}`},
		{[]obj{}, `[]`},
	} {
		if got := string(encode(nil, tc.v)); got != tc.want {
			t.Errorf("encode(%#v) = %s, want %s", tc.v, got, tc.want)
		}
	}
}

func multipartEgg() (io.Reader, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("project", "sample")
	mw.WriteField("version", "1.0")
	fw, _ := mw.CreateFormFile("egg", "project.egg")
	fw.Write(testEgg(nil, "sample.settings"))
	mw.Close()
	return &buf, mw.FormDataContentType()
}

func manyArgs(n, size int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "&arg%02d=%s", i, strings.Repeat("z", size))
	}
	return b.String()
}
