package listen

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBind(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "scrapyd.sock")
	s, err := Listeners(Config{BindAddress: "127.0.0.1", HTTPPort: 0, UnixSocket: sock})
	if err != nil {
		t.Fatal(err)
	}
	ls := s.API
	if s.Activated || len(s.Wake) > 0 {
		t.Errorf("bound sockets: Activated %v, wake %v; want false, none", s.Activated, s.Wake)
	}
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	if len(ls) != 2 || ls[0].Addr().Network() != "tcp" || ls[1].Addr().Network() != "unix" {
		t.Fatalf("listeners = %v", ls)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode = %v, %v; want 0660", fi.Mode(), err)
	}
	// A live socket is never taken over.
	if _, err := bind(Config{UnixSocket: sock}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("bind on a live socket = %v", err)
	}
}

func TestBindStaleAndRefusals(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the file stays, as after a crash
	ls, err := bind(Config{UnixSocket: stale})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ls[0].Close()

	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	for _, c := range []Config{{UnixSocket: file}, {}} {
		if _, err := bind(c); err == nil {
			t.Errorf("bind(%+v) succeeded", c)
		}
	}
}

// helperEnv makes the test binary act as a socket-activated daemon: it
// reports what Listeners gave it on its first connection.
const helperEnv = "LISTEN_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helper())
	}
	os.Exit(m.Run())
}

func helper() int {
	s, err := Listeners(Config{BindAddress: "127.0.0.1", HTTPPort: 1}) // must be ignored
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ls := s.API
	c, err := ls[0].Accept()
	if err != nil {
		return 1
	}
	defer c.Close()
	wake := ""
	for _, l := range s.Wake {
		wake += l.Addr().String()
	}
	fmt.Fprintf(c, "n=%d net=%s addr=%s env=%q activated=%v wake=%s\n", len(ls), ls[0].Addr().Network(), ls[0].Addr(), os.Getenv("LISTEN_FDS"), s.Activated, wake)
	return 0
}

// TestSocketActivation runs this binary under systemd-socket-activate, the
// way scrapyd.socket starts the daemon.
func TestSocketActivation(t *testing.T) {
	sa, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true needs systemd-socket-activate (package systemd)")
		}
		t.Skip("no systemd-socket-activate (package systemd)")
	}
	// A free port: bind :0, release it, hand it to systemd-socket-activate.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()
	// The wake socket (scrapyd-wake.socket) comes apart from the API's.
	wake := filepath.Join(t.TempDir(), "wake.sock")
	cmd := exec.Command(sa, "-l", addr, "-l", wake, "--fdname=scrapyd:wake", "-E", helperEnv+"=1", os.Args[0])
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var c net.Conn
	for c == nil { // until systemd-socket-activate listens; the test timeout bounds it
		if c, err = net.Dial("tcp", addr); err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading from the activated helper: %v (stderr %s)", err, stderr)
	}
	want := fmt.Sprintf("n=1 net=tcp addr=%s env=\"\" activated=true wake=%s\n", addr, wake)
	if line != want {
		t.Fatalf("activated helper said %q, want %q", line, want)
	}
}
