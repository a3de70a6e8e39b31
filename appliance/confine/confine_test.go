package confine

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/launch"
)

// TestNoNetworkChild: a root daemon runs a NoNetwork command in a network
// namespace of its own: the daemon's loopback listener is out of its reach,
// while the same command without the flag reaches it.
func TestNoNetworkChild(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a network namespace needs root")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	connect := launch.Command{Job: "t", Path: "/usr/bin/python3", Args: []string{"-c",
		"import socket, sys\ntry:\n    socket.create_connection(('127.0.0.1', " + port + "), timeout=5).close(); print('ok')\nexcept OSError as e:\n    print(type(e).__name__)"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, _, err := (Runner{}).Run(ctx, connect); err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("without NoNetwork: %q, %v", out, err)
	}
	connect.Sandbox.NoNetwork = true
	// Its own loopback is down: "Network is unreachable" (an OSError).
	if out, _, err := (Runner{}).Run(ctx, connect); err != nil || strings.TrimSpace(out) != "OSError" {
		t.Errorf("with NoNetwork: %q, %v; want the network unreachable", out, err)
	}
}

// TestTimeoutKillsTheGroup: a command past its context is killed with what
// it started (pip's build of an sdist runs setup.py in a grandchild).
func TestTimeoutKillsTheGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	pidFile := t.TempDir() + "/pid"
	_, _, err := (Runner{}).Run(ctx, launch.Command{Job: "t", Path: "/bin/sh", Args: []string{"-c", "sleep 60 & echo $! >" + pidFile + "; wait"}})
	if err == nil {
		t.Fatal("a command past its deadline succeeded")
	}
	data, _ := os.ReadFile(pidFile)
	pid := strings.TrimSpace(string(data))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat("/proc/" + pid); os.IsNotExist(err) || pid == "" {
			break
		}
		if stat, _ := os.ReadFile("/proc/" + pid + "/stat"); strings.Contains(string(stat), ") Z ") {
			break // killed, not yet reaped by its (gone) parent's reaper
		}
		if time.Now().After(deadline) {
			t.Fatalf("the grandchild %s outlived the deadline", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
