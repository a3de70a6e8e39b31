package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Mode is how a server stops: pg_ctl's shutdown modes.
type Mode string

const (
	// Fast is a clean shutdown: sessions are ended, the data is written.
	Fast Mode = "fast"
	// Immediate is a crash: every process exits at once and the next
	// start replays the WAL.
	Immediate Mode = "immediate"
)

// Server is a private PostgreSQL cluster of one test, which it may stop,
// crash and restart: a test that does so must never use the cluster the
// whole run shares (DB), whose other databases other tests are using.
type Server struct {
	// URL is the cluster's postgres database through its Unix socket.
	URL string
	// Addr is its TCP address, 127.0.0.1:port, the same after every
	// restart (for a fault proxy in front of it).
	Addr string
	dir  string
}

// Cluster starts a private cluster (packaging/pg-cluster.sh start) and
// stops and removes it when the test ends, whether it passed or not.
// Without PostgreSQL's binaries the test is skipped, or fails under
// CI=true as DB does.
func Cluster(t testing.TB) *Server {
	t.Helper()
	bin := os.Getenv("PG_BIN")
	if bin == "" {
		bin = "/usr/lib/postgresql/15/bin"
	}
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true needs PostgreSQL 15 (packaging/test-deps.sh installs it): %v", err)
		}
		t.Skipf("no PostgreSQL: %v", err)
	}
	dir, err := os.MkdirTemp("", "scrapyd-pg-private.")
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the start, so that a half-started cluster is
	// stopped and removed too.
	t.Cleanup(func() {
		if out, err := script(nil, "stop", dir); err != nil {
			t.Logf("stop the private cluster in %s: %v\n%s", dir, err, out)
		}
	})
	// A crash (Immediate) must lose no commit it acknowledged, as a
	// production server loses none: the shared cluster's asynchronous
	// commit would lose the last ones and make a job claimed before the
	// crash pending again. fsync stays off: the machine does not crash.
	out, err := script([]string{"PG_OPTIONS=-c synchronous_commit=on"}, "start", dir)
	if err != nil {
		t.Fatalf("start a private cluster: %v\n%s", err, out)
	}
	port, err := os.ReadFile(filepath.Join(dir, "port"))
	if err != nil {
		t.Fatal(err)
	}
	return &Server{URL: strings.TrimSpace(out), Addr: "127.0.0.1:" + strings.TrimSpace(string(port)), dir: dir}
}

// URLAt is the URL of the cluster's postgres database over TCP at addr:
// Addr, or a proxy's address in front of it.
func (s *Server) URLAt(addr string) string {
	return fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", addr)
}

// Down stops the server in mode; the cluster stays.
func (s *Server) Down(t testing.TB, mode Mode) {
	t.Helper()
	if out, err := script(nil, "down", s.dir, string(mode)); err != nil {
		t.Fatalf("stop PostgreSQL (%s): %v\n%s", mode, err, out)
	}
}

// Up starts the server again on the same port.
func (s *Server) Up(t testing.TB) {
	t.Helper()
	if out, err := script(nil, "up", s.dir); err != nil {
		t.Fatalf("start PostgreSQL again: %v\n%s", err, out)
	}
}

// Restart stops the server in mode and starts it again at once.
func (s *Server) Restart(t testing.TB, mode Mode) {
	t.Helper()
	s.Down(t, mode)
	s.Up(t)
}

// script runs packaging/pg-cluster.sh and returns what it printed: its
// output, or its errors when it failed.
func script(env []string, args ...string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "packaging", "pg-cluster.sh")
	var stderr strings.Builder
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}
