// Package testkit runs the real daemon for end-to-end tests: it builds the
// binaries once per test process, starts scrapyd in a throw-away root with
// the installed layout, serves a small web site for spiders to crawl, and
// builds the sample project's egg. Tests use it; the product never does.
package testkit

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/eggbuild"
)

// Python is Debian's interpreter, where python3-scrapy lives.
const Python = "/usr/bin/python3"

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// SampleProject is the sample Scrapy project's directory.
func SampleProject() string {
	return filepath.Join(RepoRoot(), "appliance", "e2e", "testdata", "sample")
}

// RequireScrapy skips the test when Debian's Scrapy is missing, except in CI
// (CI=true), where a missing dependency is a failure, not a skip.
func RequireScrapy(t testing.TB) {
	t.Helper()
	if err := exec.Command(Python, "-c", "import scrapy").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s cannot import scrapy (%v): run packaging/test-deps.sh", Python, err)
		}
		t.Skipf("%s cannot import scrapy (%v): run packaging/test-deps.sh", Python, err)
	}
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds cmd/scrapyd and cmd/scrapydctl once per test process and
// returns the directory holding them.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "scrapyd-bin-")
		if buildErr != nil {
			return
		}
		// Tests may run the binaries as another user (Options.RunAs).
		if buildErr = os.Chmod(binDir, 0o755); buildErr != nil {
			return
		}
		for _, cmd := range []string{"scrapyd", "scrapydctl"} {
			if _, err := os.Stat(filepath.Join(RepoRoot(), "cmd", cmd)); err != nil {
				continue
			}
			b := exec.Command("go", "build", "-o", filepath.Join(binDir, cmd), "./cmd/"+cmd)
			b.Dir = RepoRoot()
			if out, err := b.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build ./cmd/%s: %v\n%s", cmd, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

var (
	eggOnce sync.Once
	eggData []byte
	eggErr  error
)

// SampleEgg is the sample project's egg, built in Go.
func SampleEgg(t testing.TB) []byte {
	t.Helper()
	eggOnce.Do(func() {
		eggData, eggErr = eggbuild.Build(eggbuild.Options{Dir: SampleProject(), Settings: "sample.settings"})
	})
	if eggErr != nil {
		t.Fatal(eggErr)
	}
	return eggData
}

// Daemon is a running scrapyd.
type Daemon struct {
	URL  string // http://127.0.0.1:PORT (https:// with Options.TLSRoots)
	Root string // its --root: etc/scrapyd, var/lib/scrapyd, var/log/scrapyd below
	Port int
	Env  []string
	// Client makes Get, Post and Upload's requests (it trusts
	// Options.TLSRoots).
	Client *http.Client
	cmd    *exec.Cmd
	done   chan struct{}
	t      testing.TB
}

// Options configure StartDaemon.
type Options struct {
	Conf string   // written to <root>/etc/scrapyd/conf.d/50-test.conf (without the [scrapyd] header)
	Env  []string // extra environment
	Root string   // reuse a root (restart tests); "" makes a new one
	Port int      // 0 picks a free one
	// BindAddress is the daemon's bind_address ("" means 127.0.0.1); the
	// tests reach it through 127.0.0.1 whatever it is.
	BindAddress string
	// TLSRoots, when set, says the daemon speaks HTTPS (Conf sets tls_cert
	// and tls_key) with a certificate these roots trust: URL is https://
	// and Client trusts them.
	TLSRoots *x509.CertPool
	// ScrapydWay starts the binary as Scrapyd is started: without --root,
	// in Root as its working directory, with Conf in Root/scrapyd.conf
	// (Logs reads log_file at var/log/scrapyd/scrapyd.log, or at the
	// Scrapyd way's default, logs/scrapyd.log).
	ScrapydWay bool
	// RunAs, when set, runs the daemon as that user (a root test starting
	// an unprivileged daemon): Root is given to it.
	RunAs *syscall.Credential
}

// StartDaemon starts scrapyd and waits until it answers daemonstatus.json.
// It is stopped (SIGTERM) when the test ends.
func StartDaemon(t testing.TB, o Options) *Daemon {
	t.Helper()
	bin := filepath.Join(Binaries(t), "scrapyd")
	root := o.Root
	if root == "" {
		root = traversableTempDir(t)
	}
	confFile := filepath.Join(root, "scrapyd.conf")
	if !o.ScrapydWay {
		confD := filepath.Join(root, "etc", "scrapyd", "conf.d")
		if err := os.MkdirAll(confD, 0o755); err != nil {
			t.Fatal(err)
		}
		confFile = filepath.Join(confD, "50-test.conf")
	}
	if o.Conf != "" {
		if err := os.WriteFile(confFile, []byte("[scrapyd]\n"+o.Conf+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bind := o.BindAddress
	if bind == "" {
		bind = "127.0.0.1"
	}
	port := o.Port
	if port == 0 {
		port = freePortOn(t, bind)
	}
	home := filepath.Join(root, "home")
	os.MkdirAll(home, 0o755)
	scheme, client := "http", http.DefaultClient
	if o.TLSRoots != nil {
		scheme = "https"
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: o.TLSRoots}}}
		t.Cleanup(client.CloseIdleConnections)
	}
	d := &Daemon{URL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, port), Root: root, Port: port, Client: client, t: t}
	d.Env = append(os.Environ(), "HOME="+home, fmt.Sprintf("SCRAPYD_HTTP_PORT=%d", port), "SCRAPYD_BIND_ADDRESS="+bind)
	d.Env = append(d.Env, o.Env...)
	d.cmd = exec.Command(bin, "--root", root)
	if o.ScrapydWay {
		d.cmd = exec.Command(bin)
	}
	d.cmd.Dir = root
	d.cmd.Env = d.Env
	if o.RunAs != nil {
		d.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.RunAs}
		if err := chownTree(root, o.RunAs); err != nil {
			t.Fatal(err)
		}
	}
	logf, err := os.OpenFile(filepath.Join(root, "daemon-stderr.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	d.done = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() { d.Stop() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := d.Client.Get(d.URL + "/daemonstatus.json")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 || resp.StatusCode == 401 {
				return d
			}
		}
		select {
		case <-d.done:
			t.Fatalf("scrapyd exited at start:\n%s", d.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrapyd did not answer within 20s:\n%s", d.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Logs returns the daemon's stderr and scrapyd.log, for failure messages.
func (d *Daemon) Logs() string {
	a, _ := os.ReadFile(filepath.Join(d.Root, "daemon-stderr.log"))
	b, err := os.ReadFile(filepath.Join(d.Root, "var", "log", "scrapyd", "scrapyd.log"))
	if err != nil {
		// Started the Scrapyd way with the defaults: log_file is logs/scrapyd.log.
		b, _ = os.ReadFile(filepath.Join(d.Root, "logs", "scrapyd.log"))
	}
	return string(a) + "\n--- scrapyd.log ---\n" + string(b)
}

// Stop sends SIGTERM and waits for the daemon to exit.
func (d *Daemon) Stop() { d.signal(syscall.SIGTERM) }

// Kill sends SIGKILL (a crash) and waits for the daemon to exit.
func (d *Daemon) Kill() { d.signal(syscall.SIGKILL) }

func (d *Daemon) signal(sig syscall.Signal) {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// PID is the daemon's process id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Path joins a path below the daemon's root.
func (d *Daemon) Path(elem ...string) string {
	return filepath.Join(append([]string{d.Root}, elem...)...)
}

// Get calls a GET endpoint and decodes its JSON answer.
func (d *Daemon) Get(t testing.TB, endpoint string, q url.Values) map[string]any {
	t.Helper()
	u := d.URL + "/" + endpoint
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, err := d.Client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, resp)
}

// Post calls a POST endpoint with a urlencoded form and decodes the answer.
func (d *Daemon) Post(t testing.TB, endpoint string, form url.Values) map[string]any {
	t.Helper()
	resp, err := d.Client.PostForm(d.URL+"/"+endpoint, form)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, resp)
}

// Upload posts an egg to addversion.json.
func (d *Daemon) Upload(t testing.TB, project, version string, egg []byte) map[string]any {
	t.Helper()
	body, ct := Multipart(t, map[string]string{"project": project, "version": version}, "egg", egg)
	resp, err := d.Client.Post(d.URL+"/addversion.json", ct, body)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, resp)
}

// UploadFiles posts addversion.json with file parts (egg, requirements,
// wheels; an empty one is left out), in that order.
func (d *Daemon) UploadFiles(t testing.TB, project, version string, files map[string][]byte) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	w.WriteField("project", project)
	w.WriteField("version", version)
	for _, field := range []string{"egg", "requirements", "wheels"} {
		if len(files[field]) == 0 {
			continue
		}
		fw, err := w.CreateFormFile(field, map[string]string{"egg": "project.egg", "requirements": "requirements.txt", "wheels": "wheels.zip"}[field])
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(files[field])
	}
	w.Close()
	resp, err := d.Client.Post(d.URL+"/addversion.json", w.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, resp)
}

func decode(t testing.TB, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("HTTP %d, not JSON: %q", resp.StatusCode, data)
	}
	return out
}

// Eventually polls cond every 50ms until it holds or timeout passes. It
// waits for a condition; it never asserts how long something took.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for: %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FreePort returns a TCP port that was free a moment ago on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	return freePortOn(t, "127.0.0.1")
}

// freePortOn returns a TCP port that was free a moment ago on host (on
// every address for 0.0.0.0).
func freePortOn(t testing.TB, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Site serves the catalog spider's site: an index page linking to products
// pages (two index pages, `n` products in all). It returns the index URL.
func Site(t testing.TB, n int) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		b.WriteString("<html><body>")
		half := (n + 1) / 2
		lo, hi := 0, half
		if r.URL.Path == "/page2.html" {
			lo, hi = half, n
		} else if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		for i := lo; i < hi; i++ {
			fmt.Fprintf(&b, `<a class="product" href="/products/p%d.html">p%d</a>`, i, i)
		}
		if r.URL.Path == "/" && n > half {
			b.WriteString(`<a class="next" href="/page2.html">next</a>`)
		}
		b.WriteString("</body></html>")
		io.WriteString(w, b.String())
	})
	mux.HandleFunc("/products/", func(w http.ResponseWriter, r *http.Request) {
		var i int
		if _, err := fmt.Sscanf(r.URL.Path, "/products/p%d.html", &i); err != nil || i < 0 || i >= n {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `<html><body><span class="sku">SKU-%05d</span><span class="price">%d.50</span></body></html>`, i, 10+i)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// chownTree gives root and everything below it to c's user.
func chownTree(root string, c *syscall.Credential) error {
	return filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(c.Uid), int(c.Gid))
	})
}

// traversableTempDir is a fresh directory that other users may traverse: a
// daemon running as root runs crawls as the unprivileged crawl user, who
// must reach its egg and log directories (t.TempDir is private, 0700).
func traversableTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "scrapyd-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TraversableTempDir is traversableTempDir for tests that lay out a root
// (or a whole checkout) themselves.
func TraversableTempDir(t testing.TB) string {
	t.Helper()
	return traversableTempDir(t)
}
