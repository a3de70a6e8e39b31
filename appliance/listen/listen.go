// Package listen decides where the API listens: on the sockets systemd
// passed (socket activation, scrapyd.socket), or else on the configured TCP
// address and Unix socket.
package listen

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/coreos/go-systemd/v22/activation"
)

// Config is what the daemon's config says about listening. It is ignored
// when systemd passes sockets: the .socket unit then decides.
type Config struct {
	BindAddress string // bind_address; "" disables TCP
	HTTPPort    int    // http_port
	UnixSocket  string // unix_socket_path; "" disables it
}

// socketMode lets the owner and the group (the daemon's) connect: a Unix
// socket's access is its file mode.
const socketMode = 0o660

// WakeName is the FileDescriptorName= of the wake socket
// (scrapyd-wake.socket): connections to it only start the daemon, or tell
// a running one that a crawl ended (issue 19); they carry no request.
const WakeName = "wake"

// Sockets are what the daemon listens on.
type Sockets struct {
	API []net.Listener
	// Wake are the wake sockets systemd passed (none otherwise).
	Wake []net.Listener
	// Activated: systemd passed the sockets. Only then may the daemon
	// exit when idle, since the socket unit starts it again.
	Activated bool
}

// Listeners returns the sockets to serve on. Call it once, at startup: it
// reads LISTEN_FDS through activation, which unsets LISTEN_FDS,
// LISTEN_PID and LISTEN_FDNAMES, so that crawls started later never
// believe they were socket-activated. A reload keeps the listeners it
// returned.
func Listeners(c Config) (Sockets, error) {
	passed, err := activation.ListenersWithNames()
	if err != nil {
		return Sockets{}, fmt.Errorf("listen: sockets passed by systemd: %w", err)
	}
	var s Sockets
	for name, ls := range passed {
		for _, l := range ls {
			// nil: a passed fd that is not a stream listener (a datagram
			// socket, a FIFO); the API cannot serve on it.
			switch {
			case l == nil:
			case name == WakeName:
				s.Wake = append(s.Wake, l)
			default:
				s.API = append(s.API, l)
			}
		}
	}
	if len(passed) > 0 {
		if len(s.API) == 0 {
			return Sockets{}, errors.New("listen: systemd passed no listening stream socket")
		}
		s.Activated = true
		return s, nil
	}
	s.API, err = bind(c)
	return s, err
}

// bind opens the configured TCP address and Unix socket, both when both
// are set.
func bind(c Config) ([]net.Listener, error) {
	var ls []net.Listener
	closeAll := func() {
		for _, l := range ls {
			l.Close()
		}
	}
	if c.BindAddress != "" {
		l, err := net.Listen("tcp", net.JoinHostPort(c.BindAddress, strconv.Itoa(c.HTTPPort)))
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		ls = append(ls, l)
	}
	if c.UnixSocket != "" {
		l, err := unixSocket(c.UnixSocket)
		if err != nil {
			closeAll()
			return nil, err
		}
		ls = append(ls, l)
	}
	if len(ls) == 0 {
		return nil, errors.New("listen: neither bind_address nor unix_socket_path is set")
	}
	return ls, nil
}

// unixSocket binds path, replacing a stale socket file that nobody serves
// (a daemon that crashed) but never a live one or a non-socket file.
func unixSocket(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("listen: %s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen: %s: another process is serving on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen: removing stale socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	// Until the chmod the mode comes from the umask; connecting needs write
	// permission, which the usual umask (022) gives only the owner anyway.
	if err := os.Chmod(path, socketMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	return l, nil
}
