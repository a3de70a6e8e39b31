// Package logship makes crawl logs readable from every node of a cluster
// (issue 15 point 5): the node that runs a crawl ships its log file to the
// database in chunks about every second while it runs, and its last bytes
// when it ends; any node reads a shipped log back, by range. The crawl
// writes its local log as on a single node; shipping is a copy of it.
package logship

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Store is the shared database as the shipper sees it (pgstore).
type Store interface {
	// LogsToShip lists this node's running crawls and its ended crawls
	// whose last bytes are not shipped yet, each with its shipped size.
	LogsToShip(ctx context.Context) ([]store.ShippedLog, error)
	// ShipLog stores data, the log's bytes from off, when off is the
	// shipped size, and returns the shipped size after the call (see
	// pgstore.Store.ShipLog); store.ErrNotOurs when the job is not this
	// node's.
	ShipLog(ctx context.Context, seq, off int64, data []byte, capped, done bool) (int64, error)
}

// Shipper ships this node's crawl logs; Run does it every Every, Ended
// once a crawl has exited.
type Shipper struct {
	Store  Store
	Config func() *config.Config
	Log    *slog.Logger
	// Every is how often running crawls' logs are shipped (1 s when
	// zero); a database error backs off up to a minute.
	Every time.Duration
	// Chunk is the most bytes one shipment holds (pgstore.MaxLogChunk).
	Chunk int

	mu      sync.Mutex
	jobs    map[int64]*shipping
	wake    chan struct{}
	buffers sync.Pool // *[]byte of Chunk bytes: one per shipment under way, not one per log per second
}

func (s *Shipper) buffer(n int) *[]byte {
	if b, ok := s.buffers.Get().(*[]byte); ok && len(*b) >= n {
		return b
	}
	b := make([]byte, n)
	return &b
}

// shipping is one job's log as the shipper knows it: one shipment at a
// time (a run's and an end's may meet), from off.
type shipping struct {
	turn   chan struct{} // held by the shipment under way; a wait for it ends with its context
	off    int64
	done   bool
	warned bool // a file error was logged
}

// endTimeout bounds the shipment of a crawl's last bytes, which its end's
// record waits for: a database that does not answer delays the record
// that long, and Run ships the rest later.
const endTimeout = 5 * time.Second

func (s *Shipper) job(seq int64, off int64) *shipping {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs == nil {
		s.jobs = map[int64]*shipping{}
	}
	j, ok := s.jobs[seq]
	if !ok {
		j = &shipping{off: off, turn: make(chan struct{}, 1)}
		s.jobs[seq] = j
	}
	return j
}

// Busy says whether a log is being shipped: a crawl of this node runs, or
// the last bytes of one that ended are not shipped yet.
func (s *Shipper) Busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.jobs) > 0
}

func (s *Shipper) forget(seq int64) {
	s.mu.Lock()
	delete(s.jobs, seq)
	s.mu.Unlock()
}

func (s *Shipper) wakeCh() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wake == nil {
		s.wake = make(chan struct{}, 1)
	}
	return s.wake
}

// Run ships until ctx ends: every Every, the logs LogsToShip lists (so
// crawls adopted after a restart go on from what was shipped before, and
// ends whose last bytes a restart or the database missed are finished).
// While the database fails it waits longer each time, up to a minute.
func (s *Shipper) Run(ctx context.Context) {
	every := s.Every
	if every <= 0 {
		every = time.Second
	}
	wait, failing := every, false
	wake := s.wakeCh()
	for {
		err := s.round(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				s.Log.Warn("cannot ship crawl logs to the database; retrying", "err", err)
			}
			failing, wait = true, min(2*wait, time.Minute)
		default:
			if failing {
				s.Log.Info("crawl logs are shipped to the database again")
			}
			failing, wait = false, every
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func (s *Shipper) round(ctx context.Context) error {
	list, err := s.Store.LogsToShip(ctx)
	if err != nil {
		return err
	}
	for _, l := range list {
		// Bounded, so that a database that stops answering does not hold
		// a log's turn for long: a crawl's end waits for it.
		sctx, cancel := context.WithTimeout(ctx, shipTimeout)
		err := s.ship(sctx, l, l.State == job.Finished)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// fileError is a log file that cannot be read: that log's trouble, not
// the database's.
type fileError struct{ err error }

func (e fileError) Error() string { return e.err.Error() }
func (e fileError) Unwrap() error { return e.err }

// shipTimeout bounds one log's shipment in a round; what is left is
// shipped at the next.
const shipTimeout = 30 * time.Second

// Ended ships the last bytes of a crawl that has exited, before its end is
// recorded (dispatch's Exited hook, on the crawl's own goroutine): whoever
// sees the job finished finds its whole log. It gives up after a few
// seconds; Run ships the rest then.
func (s *Shipper) Ended(j job.Job) {
	ctx, cancel := context.WithTimeout(context.Background(), endTimeout)
	defer cancel()
	l := store.ShippedLog{Seq: j.Seq, Project: j.Project, Spider: j.Spider, ID: j.ID, State: j.State}
	if err := s.ship(ctx, l, true); err != nil {
		s.Log.Warn("cannot ship the end of a crawl's log; retrying later", "project", j.Project, "spider", j.Spider, "job", j.ID, "err", err)
	}
	select {
	case s.wakeCh() <- struct{}{}:
	default:
	}
}

// ship sends what the log file holds past the shipped size, up to
// log_ship_limit; with final (the crawl has exited) the last shipment says
// the log is complete.
func (s *Shipper) ship(ctx context.Context, l store.ShippedLog, final bool) error {
	sh := s.job(l.Seq, l.Size)
	select {
	case sh.turn <- struct{}{}:
		defer func() { <-sh.turn }()
	case <-ctx.Done():
		return ctx.Err()
	}
	if sh.done {
		return nil
	}
	if l.Capped && !final {
		return nil // nothing more is taken before the end
	}
	err := s.send(ctx, sh, l, final)
	var fe fileError
	if errors.As(err, &fe) {
		// This log's trouble only: the others are shipped, and the
		// database is not the one failing. Said once per log.
		if !sh.warned {
			s.Log.Warn("cannot read a crawl's log to ship it; retrying", "project", l.Project, "spider", l.Spider, "job", l.ID, "err", fe.err)
			sh.warned = true
		}
		return nil
	}
	if errors.Is(err, store.ErrNotOurs) {
		sh.done = true // deleted, or another node's now: nothing more to ship
		err = nil
	}
	if sh.done {
		s.forget(l.Seq)
	}
	return err
}

func (s *Shipper) send(ctx context.Context, sh *shipping, l store.ShippedLog, final bool) error {
	cfg := s.Config()
	path := jobfiles.Of(cfg, l.Project, l.Spider, l.ID).Log
	limit := cfg.LogShipLimit
	chunk := s.Chunk
	if chunk <= 0 {
		chunk = 1 << 20
	}
	var f *logFile
	defer func() { f.Close() }()
	buf := s.buffer(chunk)
	defer s.buffers.Put(buf)
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if f == nil || f.at != sh.off {
			f.Close()
			var err error
			if f, err = openAt(path, sh.off); err != nil {
				return fileError{err}
			}
			if f == nil && sh.off == 0 {
				// No log, and none shipped: nothing is recorded, so
				// that no node links a log that does not exist.
				sh.done = final
				return nil
			}
		}
		n := 0
		if f != nil {
			var err error
			if n, err = io.ReadFull(f, (*buf)[:chunk]); err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
				return fileError{fmt.Errorf("read %s: %w", path, err)}
			}
			f.at += int64(n)
		}
		data, capped := (*buf)[:n], false
		if over := sh.off + int64(n) - limit; over > 0 {
			// Past the cap: ship up to it, ending at a line's end where
			// one is in the chunk, and stop.
			data, capped = data[:max(int64(n)-over, 0)], true
			if i := lastNewline(data); i >= 0 {
				data = data[:i+1]
			}
		}
		eof := n < chunk
		done := final && (eof || capped)
		if len(data) == 0 && !capped && !done {
			return nil // nothing new
		}
		prev, want := sh.off, sh.off+int64(len(data))
		size, err := s.Store.ShipLog(ctx, l.Seq, sh.off, data, capped, done)
		if err != nil {
			return err
		}
		sh.off = size
		switch {
		case size == want && (capped || done):
			sh.done = done
			return nil
		case size == want && eof:
			return nil
		case size == prev && len(data) > 0:
			// Refused where the database's size is this node's: it
			// takes no more (capped, or complete). Only the end is
			// left to record.
			if final {
				if _, err := s.Store.ShipLog(ctx, l.Seq, size, nil, false, true); err != nil {
					return err
				}
				sh.done = true
			}
			return nil
		}
		// Not taken where this node thought (a shipment whose answer was
		// lost, another node's log replaced), or more to read: go on
		// from what the database holds.
	}
}

func lastNewline(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			return i
		}
	}
	return -1
}

// logFile is a crawl's log read from an offset: the plain file, or, once
// a finished crawl's log is compressed (compress_finished), the .gz read
// through.
type logFile struct {
	io.Reader
	at     int64
	closer io.Closer
}

// openAt opens path positioned at off; nil (and no error) when neither the
// file nor its compressed copy exists (not yet written, or pruned).
func openAt(path string, off int64) (*logFile, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err == nil {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		return &logFile{Reader: f, at: off, closer: f}, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	gz, err := os.Open(jobfiles.Compressed(path))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bufio.NewReader(gz))
	if err == nil {
		_, err = io.CopyN(io.Discard, zr, off)
		if err == io.EOF {
			err = nil // shorter than what was shipped: nothing more
		}
	}
	if err != nil {
		gz.Close()
		return nil, err
	}
	return &logFile{Reader: zr, at: off, closer: gz}, nil
}

func (f *logFile) Close() {
	if f != nil {
		f.closer.Close()
	}
}
