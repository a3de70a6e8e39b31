package idle

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestLeft(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	tr := New(c.now)
	const timeout = 3 * time.Second
	if got := tr.Left(timeout); got != timeout {
		t.Fatalf("fresh tracker: %v left, want %v", got, timeout)
	}
	c.t = c.t.Add(2 * time.Second)
	if got := tr.Left(timeout); got != time.Second {
		t.Fatalf("after 2s: %v left, want 1s", got)
	}
	// A stream open for a minute keeps it awake; its end restarts the count.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	tr.ConnState(a, fasthttp.StateNew)
	tr.ConnState(a, fasthttp.StateActive)
	c.t = c.t.Add(time.Minute)
	if got := tr.Left(timeout); got != timeout {
		t.Fatalf("busy connection: %v left, want %v", got, timeout)
	}
	tr.ConnState(a, fasthttp.StateIdle) // keep-alive, waiting: idle
	c.t = c.t.Add(time.Second)
	if got := tr.Left(timeout); got != 2*time.Second {
		t.Fatalf("keep-alive connection: %v left, want 2s", got)
	}
	// A busy part holds it too.
	busy := true
	tr.Busy(func() bool { return busy })
	c.t = c.t.Add(time.Hour)
	if got := tr.Left(timeout); got != timeout {
		t.Fatalf("busy part: %v left, want %v", got, timeout)
	}
	busy = false
	c.t = c.t.Add(timeout)
	if got := tr.Left(timeout); got != 0 {
		t.Fatalf("idle for the timeout: %v left, want 0", got)
	}
	tr.Touch()
	if got := tr.Left(timeout); got != timeout {
		t.Fatalf("after Touch: %v left, want %v", got, timeout)
	}
}

func TestWait(t *testing.T) {
	tr := New(nil)
	if !tr.Wait(context.Background(), func() time.Duration { return 20 * time.Millisecond }, 5*time.Millisecond) {
		t.Fatal("Wait returned false with nothing busy")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if tr.Wait(ctx, func() time.Duration { return 0 }, time.Millisecond) {
		t.Fatal("Wait with idle_timeout 0 returned true")
	}
}
