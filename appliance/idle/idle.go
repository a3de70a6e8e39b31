// Package idle tells when the daemon has had nothing to do for a while
// (issue 19): no connection busy with a request or a stream, no activity
// reported, and no part of the daemon saying it is busy. A socket-activated
// daemon then exits, and systemd starts it again on the next event.
package idle

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Tracker counts busy connections, remembers the last activity and asks
// the parts registered with Busy. Its zero value is not ready: use New.
type Tracker struct {
	now func() time.Time

	mu    sync.Mutex
	conns map[net.Conn]bool // connections between a request's first byte and its response's last
	last  time.Time
	busy  []func() bool
}

// New returns a tracker whose last activity is now; now nil is time.Now.
func New(now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	return &Tracker{now: now, conns: map[net.Conn]bool{}, last: now()}
}

// ConnState is the HTTP server's connection hook (fasthttp.Server's
// ConnState). A connection is busy from its accept or its request's first
// byte until its response is written or it closes. Why a hook and not a
// handler middleware: a streamed response (log follow, /events) outlives
// its handler, and an upload is read before the handlers run; the server
// knows both, and keep-alive connections waiting for a next request count
// as idle.
func (t *Tracker) ConnState(c net.Conn, s fasthttp.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch s {
	case fasthttp.StateNew, fasthttp.StateActive:
		t.conns[c] = true
	default: // idle, closed, hijacked
		delete(t.conns, c)
	}
	t.last = t.now()
}

// Touch records activity now: a state change, a poke on the wake socket.
func (t *Tracker) Touch() {
	t.mu.Lock()
	t.last = t.now()
	t.mu.Unlock()
}

// Busy registers a part that keeps the daemon awake while f reports true
// (webhook deliveries, compressions, a job that could start now). f must
// be quick and never block: it is asked under the tracker's lock.
func (t *Tracker) Busy(f func() bool) {
	t.mu.Lock()
	t.busy = append(t.busy, f)
	t.mu.Unlock()
}

// Left is how long until the daemon has been idle for timeout: 0 when it
// has been, timeout when something is busy now.
func (t *Tracker) Left(timeout time.Duration) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	busy := len(t.conns) > 0
	for _, f := range t.busy {
		if busy {
			break
		}
		busy = f()
	}
	now := t.now()
	if busy {
		// Busy ends an idle stretch: the next one starts after it.
		t.last = now
		return timeout
	}
	return max(t.last.Add(timeout).Sub(now), 0)
}

// Wait returns true once the daemon has been idle for timeout (asked at
// most every poll), false when ctx ends first. timeout() is read at each
// check, so that a reload applies.
func (t *Tracker) Wait(ctx context.Context, timeout func() time.Duration, poll time.Duration) bool {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
		}
		d := timeout()
		if d <= 0 {
			timer.Reset(poll)
			continue
		}
		left := t.Left(d)
		if left == 0 {
			return true
		}
		timer.Reset(min(left, poll))
	}
}
