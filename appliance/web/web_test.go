package web_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/api"
	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/process"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapy"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/web"
)

// fixture is the real API app with the web routes over a real store in a
// temporary root; the dispatcher is never run, so jobs stay where a test
// puts them.
type fixture struct {
	app   *fiber.App
	cfg   *config.Config
	store *store.Store
	svc   *service.Service
	stats map[string]map[string]any
	// shared are the logs "in the shared database" by project/spider/id
	// (cluster mode's SharedLogs).
	shared map[string]sharedLog
}

// sharedLog is a log as the shared database gives it.
type sharedLog struct {
	*strings.Reader
	mtime time.Time
}

func (l sharedLog) ModTime() time.Time { return l.mtime }

// newFixture loads the configuration the daemon would, with conf lines
// given as SCRAPYD_* variables.
func newFixture(t testing.TB, env ...string) *fixture {
	t.Helper()
	root := t.TempDir()
	cfg, err := config.Load(config.Options{Root: root, Home: "-", Cwd: root, Env: append([]string{"SCRAPYD_FINISHED_TO_KEEP=100000"}, env...)})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{cfg.EggsDir, cfg.DbsDir, cfg.LogsDir, cfg.ItemsDir} {
		if dir != "" && !strings.Contains(dir, "://") {
			os.MkdirAll(dir, 0o755)
		}
	}
	st, err := store.Open(cfg.DbsDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	conf := func() *config.Config { return cfg }
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	eggs := &egg.Store{Dir: cfg.EggsDir}
	disp := dispatch.New(dispatch.Options{Config: conf, Store: st, Eggs: eggs, Launcher: process.New(), Log: log})
	svc := &service.Service{Config: conf, Store: st, Eggs: eggs, Dispatch: disp,
		Lister: func(*config.Config) service.Lister { return noLister{} }}
	f := &fixture{cfg: cfg, store: st, svc: svc, stats: map[string]map[string]any{}, shared: map[string]sharedLog{}}
	shared := func(_ context.Context, project, spider, id string) (web.SharedLog, bool, error) {
		l, ok := f.shared[project+"/"+spider+"/"+id]
		if !ok {
			return nil, false, nil
		}
		return l, true, nil
	}
	f.app = api.New(api.Options{Config: conf, Service: svc, Log: log, BodyLimit: 1 << 20,
		Routes: []func(fiber.Router){web.Register(web.Options{Config: conf, Service: svc,
			Stats: func(id string) map[string]any { return f.stats[id] }, SharedLogs: shared})}})
	return f
}

// noLister: every spider list comes from the cache the fixture fills.
type noLister struct{}

func (noLister) List(context.Context, scrapy.Project) ([]string, error) { return nil, os.ErrNotExist }

// project makes a project with one version whose spider list is cached.
func (f *fixture) project(t testing.TB, name string, spiders ...string) {
	t.Helper()
	dir := filepath.Join(f.cfg.EggsDir, name)
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "1.egg"), []byte("egg"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.store.SetSpiders(name, "1", spiders); err != nil {
		t.Fatal(err)
	}
}

// job puts a job in a state: pending, running (pid 4242), or finished
// with an outcome.
func (f *fixture) job(t testing.TB, spec job.Spec, state job.State, outcome job.Outcome) {
	t.Helper()
	f.jobWithStats(t, spec, state, outcome, "")
}

// jobWithStats is job, a finished one keeping stats (Scrapy's JSON).
func (f *fixture) jobWithStats(t testing.TB, spec job.Spec, state job.State, outcome job.Outcome, stats string) {
	t.Helper()
	start := time.Date(2026, 11, 20, 23, 37, 50, 123456789, time.Local)
	if _, err := f.store.Enqueue(spec, start); err != nil {
		t.Fatal(err)
	}
	if state == job.Pending {
		return
	}
	j, err := f.store.Claim(start, nil)
	if err != nil || j == nil {
		t.Fatal("claim", err)
	}
	if err := f.store.Started(j.Seq, "handle", 4242); err != nil {
		t.Fatal(err)
	}
	if state == job.Finished {
		code := 0
		if outcome != job.OutcomeFinished {
			code = 1
		}
		if err := f.store.End(j.Seq, start.Add(65*time.Second), &code, outcome, stats, 100000); err != nil {
			t.Fatal(err)
		}
	}
}

// do sends a request through the app, without a socket.
func (f *fixture) do(t testing.TB, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := f.app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func (f *fixture) get(t testing.TB, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return f.do(t, req)
}

func (f *fixture) post(t testing.TB, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return f.do(t, req)
}

func TestJobsMatchesScrapydWeb(t *testing.T) {
	f := newFixture(t)
	f.project(t, "sample", "catalog", "slow")
	f.job(t, job.Spec{ID: "done1", Project: "sample", Spider: "catalog"}, job.Finished, job.OutcomeFinished)
	f.job(t, job.Spec{ID: "run1", Project: "sample", Spider: "slow"}, job.Running, "")
	f.job(t, job.Spec{ID: "wait1", Project: "sample", Spider: "catalog"}, job.Pending, "")

	resp, body := f.get(t, "/jobs", "X-Forwarded-Prefix", "/scrapyd")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(body, "<h1>Jobs</h1>") {
		t.Fatal("no <h1>Jobs</h1>")
	}
	matches := jobRe.FindAllStringSubmatch(body, -1)
	if len(matches) != 3 {
		t.Fatalf("JOB_PATTERN matched %d rows, want 3:\n%s", len(matches), body)
	}
	// ScrapydWeb's rule: no Start is pending, no Finish is running.
	state := func(row map[string]string) string {
		switch {
		case row["Start"] == "":
			return "pending"
		case row["Finish"] == "":
			return "running"
		}
		return "finished"
	}
	want := map[string]string{"wait1": "pending", "run1": "running", "done1": "finished"}
	for _, m := range matches {
		row := named(jobRe, m)
		if got := state(row); got != want[row["Job"]] || row["Project"] != "sample" {
			t.Errorf("row %v: state %s, want %s", row, got, want[row["Job"]])
		}
		switch row["Job"] {
		case "run1":
			if row["PID"] != "4242" || !strings.HasPrefix(row["Log"], `<a href="/scrapyd/logs/sample/slow/run1.log">`) {
				t.Errorf("running row %v", row)
			}
		case "done1":
			if row["Start"] != "2026-11-20 23:37:50" || row["Runtime"] != "0:01:05" || row["Finish"] != "2026-11-20 23:38:55" ||
				row["Items"] != `<a href="/scrapyd/items/sample/catalog/done1.jl">Items</a>` {
				t.Errorf("finished row %v", row)
			}
		}
	}
	for _, s := range []string{`action="/scrapyd/cancel.json"`, `onsubmit="return confirm('Are you sure?');"`,
		`<input type="hidden" name="job" value="wait1">`, `<input type="hidden" name="project" value="sample">`} {
		if !strings.Contains(body, s) {
			t.Errorf("no %s in /jobs", s)
		}
	}
}

func TestHome(t *testing.T) {
	f := newFixture(t, "SCRAPYD_ITEMS_DIR=s3://bucket/items")
	f.project(t, "b&b", "x")
	f.project(t, "alpha", "x")
	_, body := f.get(t, "/", "X-Forwarded-Prefix", "/p")
	for _, s := range []string{"<title>Scrapyd</title>", "<h1>Scrapyd</h1>", `<a href="/p/jobs">Jobs</a>`, `<a href="/p/logs/">Logs</a>`,
		"<p>Scrapy projects:</p>", `<a href="/p/projects/alpha">alpha</a>`, `<a href="/p/projects/b&amp;b">b&amp;b</a>`} {
		if !strings.Contains(body, s) {
			t.Errorf("home has no %s:\n%s", s, body)
		}
	}
	// The example is the address the page was asked at, behind the proxy's prefix.
	if want := `<code>curl http://example.com/p/schedule.json -d project=default -d spider=somespider</code>`; !strings.Contains(body, want) {
		t.Errorf("home has no %s:\n%s", want, body)
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = "10.1.2.3:6801"
	req.Header.Set("X-Forwarded-Proto", "https")
	_, body = f.do(t, req)
	if want := "curl https://10.1.2.3:6801/schedule.json"; !strings.Contains(body, want) {
		t.Errorf("home has no %s:\n%s", want, body)
	}
	req = httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = `evil"><script>`
	_, body = f.do(t, req)
	if want := "curl http://127.0.0.1:6800/schedule.json"; !strings.Contains(body, want) || strings.Contains(body, "evil") {
		t.Errorf("a Host that is not a host: home has no %s:\n%s", want, body)
	}
	if strings.Contains(body, "/items/") {
		t.Error("Items link with a remote items_dir")
	}
	if resp, _ := f.get(t, "/items/"); resp.StatusCode != 404 {
		t.Errorf("/items/ with a remote items_dir: HTTP %d", resp.StatusCode)
	}
}

func TestLogsAbsentWithoutLogsDir(t *testing.T) {
	f := newFixture(t, "SCRAPYD_LOGS_DIR=")
	if resp, _ := f.get(t, "/logs/"); resp.StatusCode != 404 {
		t.Errorf("/logs/ without logs_dir: HTTP %d", resp.StatusCode)
	}
	if _, body := f.get(t, "/"); strings.Contains(body, "/logs/") {
		t.Error("home links /logs/ without logs_dir")
	}
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestListingMatchesDirectoryPattern(t *testing.T) {
	f := newFixture(t)
	logs := f.cfg.LogsDir
	writeFile(t, filepath.Join(logs, "sample", "catalog", "j1.log"), strings.Repeat("x", 2048))
	writeFile(t, filepath.Join(logs, "sample", "catalog", "j0.log.gz"), "gz")
	writeFile(t, filepath.Join(logs, "sample", "catalog", "stats.json"), "{}")
	writeFile(t, filepath.Join(logs, "sample", "catalog", "<b>.log"), "")
	os.MkdirAll(filepath.Join(logs, "sample", "params"), 0o755)

	_, body := f.get(t, "/logs/sample/catalog/")
	want := []map[string]string{
		{"filename": `<a href="%3Cb%3E.log">&lt;b&gt;.log</a>`, "size": "0B", "content_type": "[text/plain]", "content_encoding": ""},
		{"filename": `<a href="j0.log.gz">j0.log.gz</a>`, "size": "2B", "content_type": "[text/plain]", "content_encoding": "[gzip]"},
		{"filename": `<a href="j1.log">j1.log</a>`, "size": "2K", "content_type": "[text/plain]", "content_encoding": ""},
		{"filename": `<a href="stats.json">stats.json</a>`, "size": "2B", "content_type": "[application/json]", "content_encoding": ""},
	}
	check := func(how string, got []map[string]string) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d rows matched, want %d:\n%s", how, len(got), len(want), body)
		}
		for i, row := range got {
			if !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d$`).MatchString(row["last_modified"]) {
				t.Errorf("%s: last modified %q", how, row["last_modified"])
			}
			for k, v := range want[i] {
				if row[k] != v {
					t.Errorf("%s: row %d %s = %q, want %q", how, i, k, row[k], v)
				}
			}
		}
	}
	check("Go", rows(directoryRe, body))
	// ScrapydWeb's own lines in Python: the filename cell becomes the name
	// and href HREF_NAME_PATTERN reads from it.
	py := pythonRows(t, body)
	for i := range py {
		if i < len(want) {
			py[i]["filename"] = `<a href="` + py[i]["href"] + `">` + py[i]["filename"] + `</a>`
		}
		delete(py[i], "href")
	}
	check("Python", py)
	_, body = f.get(t, "/logs/sample/")
	ms := rows(directoryRe, body)
	if len(ms) != 2 || ms[0]["odd_even"] != "odd" || ms[1]["odd_even"] != "even" || ms[0]["content_type"] != "[Directory]" ||
		ms[1]["filename"] != `<a href="params/">params/</a>` {
		t.Errorf("directory rows %q", ms)
	}
	if !strings.Contains(body, "<title>Directory listing for /logs/sample/</title>") {
		t.Error("no Twisted title")
	}
}

func TestFiles(t *testing.T) {
	f := newFixture(t)
	content := "0123456789abcdefghij"
	writeFile(t, filepath.Join(f.cfg.LogsDir, "p", "s", "j.log"), content)
	writeFile(t, filepath.Join(f.cfg.LogsDir, "p", "s", "old.log.gz"), "gzipped")
	writeFile(t, filepath.Join(f.cfg.LogsDir, "p", "s", "old.jl.bz2"), "bzipped")
	secret := filepath.Join(t.TempDir(), "secret")
	writeFile(t, secret, "secret")
	os.Symlink(secret, filepath.Join(f.cfg.LogsDir, "p", "s", "escape.log"))
	os.Symlink(filepath.Dir(secret), filepath.Join(f.cfg.LogsDir, "p", "outside"))
	os.Symlink("j.log", filepath.Join(f.cfg.LogsDir, "p", "s", "inside.log"))

	tests := []struct {
		name, path, rng string
		status          int
		body            string
		header          map[string]string
	}{
		{"whole", "/logs/p/s/j.log", "", 200, content, map[string]string{"Accept-Ranges": "bytes", "Content-Type": "text/plain", "Content-Length": "20"}},
		{"first bytes", "/logs/p/s/j.log", "bytes=0-4", 206, "01234", map[string]string{"Content-Range": "bytes 0-4/20"}},
		{"suffix (Gerapy)", "/logs/p/s/j.log", "bytes=-1000", 206, content, map[string]string{"Content-Range": "bytes 0-19/20"}},
		{"short suffix", "/logs/p/s/j.log", "bytes=-5", 206, "fghij", map[string]string{"Content-Range": "bytes 15-19/20"}},
		{"open end", "/logs/p/s/j.log", "bytes=18-", 206, "ij", map[string]string{"Content-Range": "bytes 18-19/20"}},
		{"past end", "/logs/p/s/j.log", "bytes=5-99", 206, content[5:], map[string]string{"Content-Range": "bytes 5-19/20"}},
		{"unsatisfiable", "/logs/p/s/j.log", "bytes=20-", 416, "", map[string]string{"Content-Range": "bytes */20"}},
		{"several ranges: whole file", "/logs/p/s/j.log", "bytes=0-1,4-5", 200, content, nil},
		{"gzip", "/logs/p/s/old.log.gz", "", 200, "gzipped", map[string]string{"Content-Encoding": "gzip", "Content-Type": "text/plain"}},
		{"bzip2", "/logs/p/s/old.jl.bz2", "", 200, "bzipped", map[string]string{"Content-Encoding": "bzip2"}},
		{"symlink inside", "/logs/p/s/inside.log", "", 200, content, nil},
		{"directory without slash", "/logs/p/s", "", 301, "", map[string]string{"Location": "s/"}},
		{"top without slash", "/logs", "", 301, "", map[string]string{"Location": "logs/"}},
		{"file with slash", "/logs/p/s/j.log/", "", 404, "", nil},
		{"dot dot", "/logs/p/../../etc/passwd", "", 404, "", nil},
		{"encoded dot dot", "/logs/p/%2e%2e/%2e%2e/etc/passwd", "", 404, "", nil},
		{"encoded slash", "/logs/p%2Fs/j.log", "", 404, "", nil},
		{"encoded backslash", "/logs/p%5Cs/j.log", "", 404, "", nil},
		{"NUL", "/logs/p/s/j.log%00.txt", "", 404, "", nil},
		{"symlink to a file outside", "/logs/p/s/escape.log", "", 404, "", nil},
		{"symlink to a directory outside", "/logs/p/outside/secret", "", 404, "", nil},
		{"missing", "/logs/p/s/nope.log", "", 404, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			if tt.rng != "" {
				req.Header.Set("Range", tt.rng)
			}
			resp, body := f.do(t, req)
			if resp.StatusCode != tt.status {
				t.Fatalf("HTTP %d, want %d: %q", resp.StatusCode, tt.status, body)
			}
			if tt.status < 300 && body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			if strings.Contains(body, "secret") {
				t.Error("served a file outside logs_dir")
			}
			for k, v := range tt.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if tt.status < 300 {
				if _, err := http.ParseTime(resp.Header.Get("Last-Modified")); err != nil {
					t.Errorf("Last-Modified %q", resp.Header.Get("Last-Modified"))
				}
			}
		})
	}
	_, listing := f.get(t, "/logs/p/s/")
	if strings.Contains(listing, "escape.log") || !strings.Contains(listing, "inside.log") {
		t.Errorf("listing shows a symlink out, or hides one in:\n%s", listing)
	}
	head := httptest.NewRequest(http.MethodHead, "/logs/p/s/j.log", nil)
	if resp, body := f.do(t, head); resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Length") != "20" {
		t.Errorf("HEAD: HTTP %d, Content-Length %q, body %q", resp.StatusCode, resp.Header.Get("Content-Length"), body)
	}
}

// evil passes job.CheckName (no slash, no control character), so it can
// be a project, spider or job name; script is for arguments, settings,
// stats and log lines, where a slash is fine.
const (
	evil    = `<img src=x onerror=alert(1)>`
	evilEsc = `&lt;img src=x onerror=alert(1)&gt;`
	script  = `<script>alert(2)</script>`
)

func TestUserTextIsEscaped(t *testing.T) {
	f := newFixture(t)
	f.project(t, evil, evil)
	spec := job.Spec{ID: evil, Project: evil, Spider: evil, Args: []job.Pair{{Name: "q", Value: script}, {Name: evil, Value: "1"}},
		Settings: []job.Pair{{Name: "X", Value: script}}}
	f.job(t, spec, job.Running, "")
	f.stats[evil] = map[string]any{"note": script}
	writeFile(t, filepath.Join(f.cfg.LogsDir, evil, evil, evil+".log"), "line one\n"+script+"\n")
	esc := url.PathEscape(evil)
	for _, path := range []string{"/", "/jobs", "/browse", "/browse?project=" + url.QueryEscape(evil) + "&spider=" + url.QueryEscape(evil),
		"/projects/" + esc, "/jobs/" + esc + "/" + esc, "/logs/" + esc + "/" + esc + "/"} {
		resp, body := f.get(t, path)
		if resp.StatusCode != 200 {
			t.Errorf("%s: HTTP %d", path, resp.StatusCode)
		}
		if strings.Contains(body, "<img") || strings.Contains(body, "<script>alert") {
			t.Errorf("%s renders user text as markup:\n%s", path, body)
		}
		if !strings.Contains(body, evilEsc) {
			t.Errorf("%s does not show the name as text", path)
		}
	}
	_, page := f.get(t, "/jobs/"+esc+"/"+esc)
	if n := strings.Count(page, "&lt;script&gt;alert(2)&lt;/script&gt;"); n != 4 {
		t.Errorf("job page shows %d of the argument, setting, stat and log line, want 4:\n%s", n, page)
	}
}

func TestAuthCoversPages(t *testing.T) {
	f := newFixture(t, "SCRAPYD_USERNAME=u", "SCRAPYD_PASSWORD=p")
	f.project(t, "sample", "catalog")
	f.job(t, job.Spec{ID: "j1", Project: "sample", Spider: "catalog"}, job.Finished, job.OutcomeFinished)
	writeFile(t, filepath.Join(f.cfg.LogsDir, "sample", "catalog", "j1.log"), "log\n")
	creds := "Basic " + base64.StdEncoding.EncodeToString([]byte("u:p"))
	for _, path := range []string{"/", "/jobs", "/browse", "/projects/sample", "/jobs/sample/j1", "/jobs/sample/j1/log",
		"/logs/", "/logs/sample/catalog/j1.log", "/items/", "/assets/style.css"} {
		if resp, _ := f.get(t, path); resp.StatusCode != 401 {
			t.Errorf("%s without credentials: HTTP %d", path, resp.StatusCode)
		}
		if resp, _ := f.get(t, path, "Authorization", creds); resp.StatusCode != 200 {
			t.Errorf("%s with credentials: HTTP %d", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/projects/sample/schedule", "/jobs/sample/j1/cancel"} {
		if resp, _ := f.post(t, path, url.Values{"spider": {"catalog"}}); resp.StatusCode != 401 {
			t.Errorf("POST %s without credentials: HTTP %d", path, resp.StatusCode)
		}
	}
	if p, _, _ := f.store.Counts(); p != 0 {
		t.Error("an unauthenticated form post scheduled a job")
	}
}

func TestScheduleForm(t *testing.T) {
	f := newFixture(t)
	f.project(t, "sample", "catalog", "params")
	_, page := f.get(t, "/projects/sample")
	for _, s := range []string{"<option>params</option>", "<option>1</option>", `action="/projects/sample/schedule"`} {
		if !strings.Contains(page, s) {
			t.Errorf("project page has no %s", s)
		}
	}
	resp, _ := f.post(t, "/projects/sample/schedule", url.Values{"spider": {"params"}, "args": {"limit=3\r\n\r\ncategory=a=b\r\n"},
		"settings": {"SAMPLE_GREETING=hi there"}, "jobid": {"form-job"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/jobs/sample/form-job" {
		t.Fatalf("HTTP %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	j, err := f.svc.Status(context.Background(), "form-job", "sample")
	if err != nil || j == nil || j.State != job.Pending {
		t.Fatalf("job %+v %v", j, err)
	}
	if got := j.Args; len(got) != 2 || got[0] != (job.Pair{Name: "limit", Value: "3"}) || got[1] != (job.Pair{Name: "category", Value: "a=b"}) {
		t.Errorf("args %v", got)
	}
	if got := j.Settings; len(got) != 1 || got[0] != (job.Pair{Name: "SAMPLE_GREETING", Value: "hi there"}) {
		t.Errorf("settings %v", got)
	}

	for _, bad := range []url.Values{
		{"spider": {"nope"}},
		{"spider": {"params"}, "args": {"no equals sign"}},
		{"spider": {"params"}, "priority": {"high"}},
	} {
		resp, body := f.post(t, "/projects/sample/schedule", bad)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="formerror"`) {
			t.Errorf("%v: HTTP %d", bad, resp.StatusCode)
		}
	}
	if p, _, _ := f.store.Counts(); p != 1 {
		t.Errorf("%d pending after refused forms, want 1", p)
	}

	req := httptest.NewRequest(http.MethodPost, "/projects/sample/schedule", strings.NewReader("spider=params"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if resp, _ := f.do(t, req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site form post: HTTP %d", resp.StatusCode)
	}
}

func TestCancelFromPage(t *testing.T) {
	f := newFixture(t)
	f.project(t, "sample", "catalog")
	f.job(t, job.Spec{ID: "wait1", Project: "sample", Spider: "catalog"}, job.Pending, "")
	_, page := f.get(t, "/jobs/sample/wait1")
	if !strings.Contains(page, `action="/jobs/sample/wait1/cancel" onsubmit="return confirm('Are you sure?');"`) {
		t.Fatalf("no cancel form:\n%s", page)
	}
	resp, _ := f.post(t, "/jobs/sample/wait1/cancel", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/jobs/sample/wait1" {
		t.Fatalf("HTTP %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if p, _, _ := f.store.Counts(); p != 0 {
		t.Error("still pending")
	}
}

func TestFollowFinishedLog(t *testing.T) {
	f := newFixture(t)
	f.project(t, "sample", "catalog")
	f.job(t, job.Spec{ID: "j1", Project: "sample", Spider: "catalog"}, job.Finished, job.OutcomeFailed)
	writeFile(t, filepath.Join(f.cfg.LogsDir, "sample", "catalog", "j1.log"), "one\ntwo\r\nthree")
	writeFile(t, filepath.Join(f.cfg.ItemsDir, "sample", "catalog", "j1.jl"), "{}\n{}\n")

	resp, body := f.get(t, "/jobs/sample/j1/log?from=4")
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	want := "id: 9\ndata: two\n\nid: 14\ndata: three\n\nevent: end\ndata: {\"state\":\"finished\",\"outcome\":\"failed\",\"exit_code\":\"1\""
	if !strings.HasPrefix(body, want) || !strings.Contains(body, `"items":"2"`) {
		t.Errorf("stream:\n%s\nwant prefix:\n%s", body, want)
	}
	_, body = f.get(t, "/jobs/sample/j1/log", "Last-Event-ID", "9")
	if !strings.HasPrefix(body, "id: 14\ndata: three\n\nevent: end\n") {
		t.Errorf("resumed stream:\n%s", body)
	}
}

func TestBrowsePaging(t *testing.T) {
	f := newFixture(t)
	f.project(t, "sample", "catalog", "slow")
	for i := range 120 {
		spider := "catalog"
		if i%4 == 0 {
			spider = "slow"
		}
		f.job(t, job.Spec{ID: fmt.Sprintf("f%03d", i), Project: "sample", Spider: spider}, job.Finished, job.OutcomeFinished)
	}
	rows := regexp.MustCompile(`<tr class="finished">`)
	for _, tt := range []struct {
		query     string
		rows      int
		next, prv bool
	}{
		{"", 50, true, false},
		{"?page=2", 20, false, true},
		{"?spider=slow", 30, false, false},
		{"?state=finished&project=sample&spider=catalog&page=1", 40, false, true},
	} {
		_, body := f.get(t, "/browse"+tt.query)
		if n := len(rows.FindAllString(body, -1)); n != tt.rows {
			t.Errorf("%s: %d rows, want %d", tt.query, n, tt.rows)
		}
		if strings.Contains(body, `rel="next"`) != tt.next || strings.Contains(body, `rel="prev"`) != tt.prv {
			t.Errorf("%s: next/prev links wrong", tt.query)
		}
	}
}

// BenchmarkJobsPage renders Scrapyd's /jobs with 1,000 finished jobs
// (finished_to_keep is 100 by default; this is ten times that).
func BenchmarkJobsPage(b *testing.B) { benchmarkPage(b, "/jobs") }

// BenchmarkBrowsePage is one page, deep in the same history, of the
// people's list.
func BenchmarkBrowsePage(b *testing.B) { benchmarkPage(b, "/browse?page=10") }

func benchmarkPage(b *testing.B, path string) {
	f := newFixture(b)
	f.project(b, "sample", "catalog")
	for i := range 1000 {
		f.job(b, job.Spec{ID: fmt.Sprintf("%032x", i), Project: "sample", Spider: "catalog"}, job.Finished, job.OutcomeFinished)
	}
	b.ResetTimer()
	for b.Loop() {
		resp, err := f.app.Test(httptest.NewRequest(http.MethodGet, path, nil), -1)
		if err != nil || resp.StatusCode != 200 {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// TestHomeDiagnostics: the home page shows what /diagnostics.json serves
// (daemonstatus.json no longer carries it), warnings and errors escaped.
func TestHomeDiagnostics(t *testing.T) {
	f := newFixture(t)
	_, body := f.get(t, "/")
	if strings.Contains(body, "Diagnostics") {
		t.Errorf("a daemon without diagnostics shows a section:\n%s", body)
	}
	f.svc.Diagnose = func() service.Diagnostics {
		return service.Diagnostics{Launcher: "process", Version: "1.2.3", ConfigError: `scrapyd.conf:3: max_proc: "<x>" is not a whole number`,
			RestartNeeded: []string{"dbs_dir", "eggs_dir"}, Warnings: []string{"bind_address = 0.0.0.0 without username and password"}}
	}
	_, body = f.get(t, "/", "X-Forwarded-Prefix", "/p")
	for _, s := range []string{"<h2>Diagnostics</h2>", "Version 1.2.3, launcher process.", `<a href="/p/diagnostics.json">diagnostics.json</a>`,
		"The configuration was not applied: scrapyd.conf:3: max_proc: &#34;&lt;x&gt;&#34; is not a whole number.",
		"Changed options that apply at the next restart: dbs_dir, eggs_dir.",
		`<p class="error">bind_address = 0.0.0.0 without username and password</p>`} {
		if !strings.Contains(body, s) {
			t.Errorf("home has no %s:\n%s", s, body)
		}
	}
}

// TestJobPageStats: integers in full, never in scientific notation, on the
// page and in the live stream; the item count of a running crawl from its
// live stats even when its feed file has nothing yet.
func TestJobPageStats(t *testing.T) {
	f := newFixture(t)
	f.project(t, "sample", "catalog")
	f.jobWithStats(t, job.Spec{ID: "done1", Project: "sample", Spider: "catalog"}, job.Finished, job.OutcomeFinished,
		`{"memusage/max": 70578176, "item_scraped_count": 12345678, "big": 1152921504606846977, "elapsed_time_seconds": 12.5, `+
			`"tiny": 1e-7, "huge": 1e+21, "finish_reason": "finished", "downloader/response_status_count/200": 7132}`)
	_, body := f.get(t, "/jobs/sample/done1")
	for _, want := range []string{
		`<th>memusage/<wbr>max</th><td class="num">70578176</td>`,
		`<th>big</th><td class="num">1152921504606846977</td>`,
		`<th>elapsed_time_seconds</th><td class="num">12.5</td>`,
		`<th>tiny</th><td class="num">0.0000001</td>`,
		`<th>huge</th><td class="num">1000000000000000000000</td>`,
		`<th>finish_reason</th><td>finished</td>`,
		`<th>downloader/<wbr>response_status_count/<wbr>200</th><td class="num">7132</td>`,
		`<span data-field="items">12345678</span>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("job page has no %s", want)
		}
	}
	if strings.Contains(body, "e+") || strings.Contains(body, "e-0") {
		t.Errorf("scientific notation on the job page:\n%s", body)
	}

	// A running crawl: live stats as the daemon's hook gives them (numbers
	// as json.Number), and a float64 as a careless hook would.
	f.job(t, job.Spec{ID: "run1", Project: "sample", Spider: "catalog"}, job.Running, "")
	f.stats["run1"] = map[string]any{"item_scraped_count": json.Number("22"), "memusage/max": float64(70578176)}
	_, body = f.get(t, "/jobs/sample/run1")
	for _, want := range []string{`<span data-field="items">22</span>`, `<td class="num">70578176</td>`} {
		if !strings.Contains(body, want) {
			t.Errorf("running job page has no %s", want)
		}
	}
}

// A log this node has no file of is served from the shared database
// (cluster mode) as a local file is: the same headers, ranges, conditions
// and HEAD; a local file comes first; the job page and its live log read
// it too.
func TestSharedLogs(t *testing.T) {
	f := newFixture(t)
	content := "0123456789\nabcdefghi\n"
	mtime := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	f.shared["p/s/remote"] = sharedLog{strings.NewReader(content), mtime}
	f.shared["p/s/both"] = sharedLog{strings.NewReader("the database's copy\n"), mtime}
	writeFile(t, filepath.Join(f.cfg.LogsDir, "p", "s", "both.log"), "this node's file\n")
	writeFile(t, filepath.Join(f.cfg.LogsDir, "p", "s", "local.log"), content)
	lastMod := mtime.Format(http.TimeFormat)
	for _, tt := range []struct {
		name, path string
		header     []string
		status     int
		body       string
		want       map[string]string
	}{
		{"whole", "/logs/p/s/remote.log", nil, 200, content, map[string]string{"Content-Length": "21", "Last-Modified": lastMod}},
		{"range", "/logs/p/s/remote.log", []string{"Range", "bytes=11-"}, 206, "abcdefghi\n", map[string]string{"Content-Range": "bytes 11-20/21"}},
		{"suffix", "/logs/p/s/remote.log", []string{"Range", "bytes=-3"}, 206, "hi\n", map[string]string{"Content-Range": "bytes 18-20/21"}},
		{"unsatisfiable", "/logs/p/s/remote.log", []string{"Range", "bytes=21-"}, 416, "", map[string]string{"Content-Range": "bytes */21"}},
		{"not modified", "/logs/p/s/remote.log", []string{"If-Modified-Since", lastMod}, 304, "", nil},
		{"the local file first", "/logs/p/s/both.log", nil, 200, "this node's file\n", nil},
		{"neither", "/logs/p/s/nope.log", nil, 404, "", nil},
		{"not a log", "/logs/p/s/remote.jl", nil, 404, "", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.get(t, tt.path, tt.header...)
			if resp.StatusCode != tt.status || tt.status < 300 && body != tt.body {
				t.Fatalf("HTTP %d %q, want %d %q", resp.StatusCode, body, tt.status, tt.body)
			}
			for k, v := range tt.want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if tt.status == 404 && !strings.Contains(body, "No Such Resource") {
				t.Errorf("not Scrapyd's 404: %q", body)
			}
		})
	}
	// The headers of a local file of the same name and size.
	remote, _ := f.get(t, "/logs/p/s/remote.log")
	local, _ := f.get(t, "/logs/p/s/local.log")
	for _, h := range []string{"Content-Type", "Content-Length", "Accept-Ranges", "X-Content-Type-Options", "Content-Security-Policy", "Content-Encoding"} {
		if remote.Header.Get(h) != local.Header.Get(h) {
			t.Errorf("%s: %q from the database, %q from a file", h, remote.Header.Get(h), local.Header.Get(h))
		}
	}
	head := httptest.NewRequest(http.MethodHead, "/logs/p/s/remote.log", nil)
	if resp, body := f.do(t, head); resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Length") != "21" {
		t.Errorf("HEAD: HTTP %d, Content-Length %q, body %q", resp.StatusCode, resp.Header.Get("Content-Length"), body)
	}

	// A finished job whose crawl ran on another node: its page and its
	// live log.
	f.project(t, "p", "s")
	f.job(t, job.Spec{ID: "remote", Project: "p", Spider: "s"}, job.Finished, job.OutcomeFinished)
	if _, page := f.get(t, "/jobs/p/remote"); !strings.Contains(page, "abcdefghi") {
		t.Errorf("the job page shows no log:\n%s", page)
	}
	_, stream := f.get(t, "/jobs/p/remote/log?from=0")
	if want := "id: 11\ndata: 0123456789\n\nid: 21\ndata: abcdefghi\n\nevent: end\n"; !strings.HasPrefix(stream, want) {
		t.Errorf("live log:\n%s\nwant prefix:\n%s", stream, want)
	}
}
