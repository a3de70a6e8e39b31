package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// rawGet sends one request exactly as written (net/http would clean a
// doubled slash) and returns the answer.
func rawGet(t *testing.T, d *testkit.Daemon, path string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", d.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", path, d.Port)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestDaemonStatusIsScrapyds: the real daemon's daemonstatus.json has
// exactly Scrapyd 1.6's keys in its order (Python's list(json) ==
// ['pending', 'running', 'finished', 'status', 'node_name'], what Scrapyd's
// own integration suite compares; quoted in appliance/api), and the
// diagnostics it used to carry are on diagnostics.json.
func TestDaemonStatusIsScrapyds(t *testing.T) {
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{Conf: "node_name = vm"})
	code, body := rawGet(t, d, "/daemonstatus.json")
	if want := []string{"pending", "running", "finished", "status", "node_name"}; code != 200 || !slices.Equal(testkit.JSONKeys(t, body), want) {
		t.Fatalf("daemonstatus.json: HTTP %d %s, want the keys %q", code, body, want)
	}
	if want := `{"pending": 0, "running": 0, "finished": 0, "status": "ok", "node_name": "vm"}` + "\n"; body != want {
		t.Errorf("daemonstatus.json = %q, want %q", body, want)
	}
	code, body = rawGet(t, d, "/diagnostics.json")
	want := []string{"launcher", "version", "config_error", "restart_needed", "warnings", "status", "node_name"}
	if code != 200 || !slices.Equal(testkit.JSONKeys(t, body), want) {
		t.Fatalf("diagnostics.json: HTTP %d %s, want the keys %q", code, body, want)
	}
	diag := d.Get(t, "diagnostics.json", nil)
	if diag["config_error"] != nil || fmt.Sprint(diag["restart_needed"], diag["warnings"]) != "[] []" || diag["launcher"] == "" {
		t.Errorf("diagnostics.json of a healthy daemon: %v", diag)
	}
}

// TestDoubledSlashes: scrapyd-client asks for //listprojects.json when the
// URL in scrapy.cfg ends in "/" (as `scrapy startproject` writes it); any
// path with repeated slashes is served as the single-slash path, the web
// pages' too.
func TestDoubledSlashes(t *testing.T) {
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{Conf: "node_name = vm"})
	log := d.Path("var/log/scrapyd/p/s/j.log")
	if err := os.MkdirAll(filepath.Dir(log), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(log, []byte("a log line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{"//listprojects.json", `{"projects": [], "status": "ok", "node_name": "vm"}` + "\n"},
		{"//daemonstatus.json", `{"pending": 0, "running": 0, "finished": 0, "status": "ok", "node_name": "vm"}` + "\n"},
		{"//logs//p/s/j.log", "a log line\n"},
		{"///logs///p//s//j.log", "a log line\n"},
	} {
		if code, body := rawGet(t, d, c.path); code != 200 || body != c.want {
			t.Errorf("GET %s: HTTP %d %q, want %q", c.path, code, body, c.want)
		}
	}
}
