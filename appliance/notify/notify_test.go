package notify

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// socket stands in for systemd's notify socket and returns its messages.
func socket(t *testing.T) func() string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return func() string {
		b := make([]byte, 4096)
		n, err := c.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		return string(b[:n])
	}
}

func TestMessages(t *testing.T) {
	next := socket(t)
	for _, tc := range []struct {
		call func() error
		want string
	}{
		{Ready, "READY=1"},
		{func() error { return Status(2, 5) }, "STATUS=2 running, 5 pending"},
		{Reloading, "RELOADING=1\nMONOTONIC_USEC="},
		{func() error { return Reloaded(nil) }, "READY=1\nSTATUS=configuration reloaded"},
		{func() error { return Reloaded(errors.New("bad max_proc")) }, "READY=1\nSTATUS=reload failed, old configuration kept: bad max_proc"},
		{Stopping, "STOPPING=1"},
	} {
		if err := tc.call(); err != nil {
			t.Fatal(err)
		}
		if got := next(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("sent %q, want %q", got, tc.want)
		}
	}
}

func TestSilentOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	t.Setenv("WATCHDOG_USEC", "")
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background()); err != nil { // no watchdog: returns at once
		t.Fatal(err)
	}
}

func TestWatchdog(t *testing.T) {
	next := socket(t)
	t.Setenv("WATCHDOG_USEC", "2000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Run(ctx) }()
	for range 3 {
		if got := next(); got != "WATCHDOG=1" {
			t.Fatalf("sent %q", got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
