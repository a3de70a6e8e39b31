// Package faultproxy is a TCP proxy for fault tests: put between one
// daemon and its database, it passes their traffic, or black-holes it as a
// network partition does, then heals.
//
// A black hole drops nothing and refuses nothing: connections stay open,
// new ones are accepted, and whatever either side sends (a close too) is
// held until the heal, when it is delivered late, as TCP's retransmissions
// deliver it after a partition shorter than its timeouts. Neither side can
// tell a black hole from a slow peer, which is what makes a partition hard.
package faultproxy

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards connections made to Addr to its target.
type Proxy struct {
	// Addr is where clients connect: 127.0.0.1 and a free port.
	Addr string

	target string
	ln     net.Listener

	mu       sync.Mutex
	changed  *sync.Cond // holding, closed or writing changed
	holding  bool
	closed   bool
	writing  int // chunks being written now
	accepted int
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

// Start listens on a free port of 127.0.0.1 and forwards to target
// (host:port), passing traffic until told otherwise. The proxy is closed
// when the test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.changed = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// BlackHole stops all traffic: when it returns, no byte passes either way
// until Heal.
func (p *Proxy) BlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holding = true
	for p.writing > 0 {
		p.changed.Wait()
	}
}

// Heal lets traffic pass again, what was held first.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holding = false
	p.changed.Broadcast()
}

// Accepted says how many connections the proxy has accepted.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Close stops listening and closes every connection, held or not.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.changed.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(c) {
			return
		}
		p.mu.Lock()
		p.accepted++
		p.mu.Unlock()
		p.wg.Add(1)
		go p.link(c)
	}
}

// track registers c to be closed by Close; false (and c closed) if the
// proxy is closed already.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// link connects a client to the target, once traffic passes: a
// connection accepted in a black hole reaches nothing until the heal.
func (p *Proxy) link(client net.Conn) {
	defer p.wg.Done()
	if !p.pass() {
		return // closed: Close closed the client
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(client)
		p.release()
		return
	}
	p.release()
	if !p.track(server) {
		client.Close()
		return
	}
	p.wg.Add(2)
	go p.pipe(server, client)
	go p.pipe(client, server)
}

// pass waits until traffic may pass and counts a writer in; false if the
// proxy closed meanwhile. release counts it out.
func (p *Proxy) pass() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.holding && !p.closed {
		p.changed.Wait()
	}
	if p.closed {
		return false
	}
	p.writing++
	return true
}

// drop closes connections and forgets them.
func (p *Proxy) drop(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *Proxy) release() {
	p.mu.Lock()
	p.writing--
	p.changed.Broadcast()
	p.mu.Unlock()
}

// pipe copies src to dst chunk by chunk, each chunk held while the proxy
// black-holes; src's end (EOF or error) is held the same way, then
// closes both.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if !p.pass() {
			return
		}
		var werr error
		if n > 0 {
			_, werr = dst.Write(buf[:n])
		}
		if rerr != nil || werr != nil {
			// A half-close would be truer to TCP, but PostgreSQL's
			// protocol never half-closes: either end ending ends both.
			p.drop(dst, src)
			p.release()
			return
		}
		p.release()
	}
}
