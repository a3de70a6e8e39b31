package logship

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Source is the shared database as a reader of shipped logs sees it
// (pgstore).
type Source interface {
	// ShippedLog describes the newest shipped log of a job id.
	ShippedLog(ctx context.Context, project, spider, id string) (store.ShippedLog, bool, error)
	// ReadShippedLog returns up to n shipped bytes from off.
	ReadShippedLog(ctx context.Context, seq, off, n int64) ([]byte, error)
}

// Reader opens shipped logs, for any node to serve them.
type Reader struct {
	Source Source
	// Window is how many bytes one read from the database fetches (1 MiB
	// when zero): a client's small reads are answered from it.
	Window int
}

// readTimeout bounds each read from the database: a response body is
// streamed after its handler has returned, without a request's context.
const readTimeout = 30 * time.Second

// Open returns the shipped log of the newest job of this project, spider
// and id, as shipped at this moment (a growing log is opened again to see
// more); ok is false when the database has none.
func (r *Reader) Open(ctx context.Context, project, spider, id string) (*Log, bool, error) {
	l, ok, err := r.Source.ShippedLog(ctx, project, spider, id)
	if err != nil || !ok {
		return nil, false, err
	}
	window := r.Window
	if window <= 0 {
		window = 1 << 20
	}
	out := &Log{ShippedLog: l, src: r.Source, window: window}
	if l.Capped {
		// The part past log_ship_limit stays on the crawl's node: the
		// shipped log ends with a line that says so.
		out.marker = []byte(fmt.Sprintf("[scrapyd] log_ship_limit: the database keeps the first %d bytes of this log; the whole log is on node %s\n", l.Size, l.Node))
		if l.Size > 0 {
			// On a line of its own, after a cut in the middle of a line.
			last, err := r.Source.ReadShippedLog(ctx, l.Seq, l.Size-1, 1)
			if err != nil {
				return nil, false, err
			}
			if string(last) != "\n" {
				out.marker = append([]byte{'\n'}, out.marker...)
			}
		}
	}
	return out, true, nil
}

// Log is a shipped log, readable at any offset (io.ReaderAt): its shipped
// bytes, then, when it was capped, a line saying where the rest is.
type Log struct {
	store.ShippedLog
	src    Source
	window int
	marker []byte

	mu    sync.Mutex
	win   []byte // the last window read, from winAt
	winAt int64
}

// Size is the length of the log as served.
func (l *Log) Size() int64 { return l.ShippedLog.Size + int64(len(l.marker)) }

// ModTime is when bytes were last shipped.
func (l *Log) ModTime() time.Time { return l.Modified }

// ReadAt reads len(p) bytes from off, fewer with io.EOF at the end.
func (l *Log) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read shipped log: negative offset %d", off)
	}
	n := 0
	for n < len(p) {
		at := off + int64(n)
		switch {
		case at >= l.Size():
			return n, io.EOF
		case at >= l.ShippedLog.Size:
			n += copy(p[n:], l.marker[at-l.ShippedLog.Size:])
			continue
		}
		l.mu.Lock()
		if at < l.winAt || at >= l.winAt+int64(len(l.win)) {
			ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
			w, err := l.src.ReadShippedLog(ctx, l.Seq, at, min(int64(l.window), l.ShippedLog.Size-at))
			cancel()
			if err == nil && len(w) == 0 {
				err = fmt.Errorf("read shipped log: nothing at %d of %d bytes", at, l.ShippedLog.Size)
			}
			if err != nil {
				l.mu.Unlock()
				return n, err
			}
			l.win, l.winAt = w, at
		}
		n += copy(p[n:], l.win[at-l.winAt:])
		l.mu.Unlock()
	}
	return n, nil
}
