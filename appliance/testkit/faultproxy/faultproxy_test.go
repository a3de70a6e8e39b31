package faultproxy

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// upstream is an echo server that counts the connections it accepted.
type upstream struct {
	ln       net.Listener
	mu       sync.Mutex
	accepted int
}

func echo(t *testing.T) *upstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := &upstream{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.accepted++
			u.mu.Unlock()
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return u
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.accepted
}

// line sends a line and returns the echo, or "" if none came within d.
func line(t *testing.T, c net.Conn, r *bufio.Reader, d time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	s, err := r.ReadString('\n')
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return ""
		}
		t.Fatal(err)
	}
	return s
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// TestBlackHoleHoldsThenDelivers: traffic passes; in a black hole an open
// connection gets no answer and a new one is accepted but reaches
// nothing; after the heal both get what they sent, in order.
func TestBlackHoleHoldsThenDelivers(t *testing.T) {
	u := echo(t)
	p := Start(t, u.ln.Addr().String())
	old, oldR := dial(t, p.Addr)
	io.WriteString(old, "one\n")
	if got := line(t, old, oldR, 10*time.Second); got != "one\n" {
		t.Fatalf("through the proxy: %q", got)
	}

	p.BlackHole()
	io.WriteString(old, "two\n")
	fresh, freshR := dial(t, p.Addr) // accepted: a partition refuses nothing
	io.WriteString(fresh, "three\n")
	if got := line(t, old, oldR, 300*time.Millisecond); got != "" {
		t.Fatalf("an answer crossed the black hole: %q", got)
	}
	if got := line(t, fresh, freshR, 10*time.Millisecond); got != "" {
		t.Fatalf("a new connection got through the black hole: %q", got)
	}
	if n := u.count(); n != 1 {
		t.Fatalf("the target saw %d connections in the black hole, want only the first", n)
	}
	if n := p.Accepted(); n != 2 {
		t.Fatalf("accepted %d connections, want 2", n)
	}

	p.Heal()
	io.WriteString(old, "four\n")
	for _, want := range []string{"two\n", "four\n"} {
		if got := line(t, old, oldR, 10*time.Second); got != want {
			t.Fatalf("after the heal the open connection got %q, want %q", got, want)
		}
	}
	if got := line(t, fresh, freshR, 10*time.Second); got != "three\n" {
		t.Fatalf("after the heal the new connection got %q", got)
	}
}

// TestBlackHoleHoldsAClose: a side that closes in a black hole is seen
// closed by the other only after the heal.
func TestBlackHoleHoldsAClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := Start(t, ln.Addr().String())
	c, r := dial(t, p.Addr)
	io.WriteString(c, "hello\n") // the proxy dials the target once traffic flows
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	p.BlackHole()
	server.Close()
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := r.ReadByte(); err == io.EOF {
		t.Fatal("the close crossed the black hole")
	}
	p.Heal()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("after the heal: %v, want EOF", err)
	}
}

// TestClose: Close ends every connection, held ones too.
func TestClose(t *testing.T) {
	u := echo(t)
	p := Start(t, u.ln.Addr().String())
	c, r := dial(t, p.Addr)
	p.BlackHole()
	io.WriteString(c, "held\n")
	p.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// EOF, or a reset: the proxy closed it with "held" unread.
	_, err := r.ReadByte()
	if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
		t.Fatalf("a held connection after Close: %v, want it closed", err)
	}
	if _, err := net.Dial("tcp", p.Addr); err == nil {
		t.Fatal("the proxy still accepts after Close")
	}
}
