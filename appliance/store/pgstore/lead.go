package pgstore

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SchedulerLock is the lock the node that makes recurring schedules' runs
// and delivers webhooks holds: one node in the cluster does, so that a run
// is not made, nor an event delivered, once per node.
const SchedulerLock = 0x5c7a9d17

// How a lead finds its lock connection broken, and how the server finds
// it gone. The holder pings every LeadPing and gives up when a ping has
// no answer within leadPingTimeout: at most LeadPing+leadPingTimeout (4 s)
// after the last answered ping. The server ends the session, and so
// releases the lock, when it has had no statement for serverIdle (10 s:
// idle_session_timeout, PostgreSQL 14 and later; it works through
// proxies too), or when the connection's TCP keepalive finds the peer
// gone (keepaliveIdle, then keepaliveProbes probes keepaliveEvery apart:
// 11 s). So a holder cut off from the database has stopped about 6 s
// before any other node can take the lock. (A holder whose process dies
// has its socket closed by its kernel: the server releases at once.)
const (
	LeadPing        = time.Second
	leadPingTimeout = 3 * time.Second
	serverIdle      = 10 * time.Second
	keepaliveIdle   = 5 * time.Second
	keepaliveEvery  = 2 * time.Second
	keepaliveProbes = 3
)

// Lead takes the cluster-wide lock key on a connection of its own; ok is
// false at once when another node holds it. The returned context ends
// with ctx, or as soon as the connection is found broken (see LeadPing):
// the holder must then stop, for the server releases the lock when it
// finds the connection gone, and another node may take it. release, which
// the holder calls once it has stopped, closes the connection and so
// gives the lock up; a connection found broken is closed only then too,
// so that a connection that was merely slow keeps the lock until its
// holder stopped.
func (s *Store) Lead(ctx context.Context, key int64) (_ context.Context, release func(), ok bool, err error) {
	c := s.Candidate(key)
	defer c.Close()
	return c.Try(ctx)
}

// Candidate tries to take a lock key, again and again, on one connection
// of its own that it keeps between tries: a node that does not lead does
// not connect anew every time. Not safe for concurrent use.
type Candidate struct {
	s    *Store
	key  int64
	conn *pgx.Conn // nil, or the kept connection
}

// Candidate returns a Candidate for key; Close it when done.
func (s *Store) Candidate(key int64) *Candidate { return &Candidate{s: s, key: key} }

// Close closes the kept connection (a lead's is closed by its release).
func (c *Candidate) Close() {
	if c.conn != nil {
		closeConn(c.conn)
		c.conn = nil
	}
}

// Try is Lead on the kept connection (made, or made again, as needed);
// the connection of a lead it takes is the lead's from then on.
func (c *Candidate) Try(ctx context.Context) (_ context.Context, release func(), ok bool, err error) {
	if c.conn == nil || c.conn.IsClosed() {
		c.Close()
		if c.conn, err = c.s.lockConn(ctx); err != nil {
			return nil, nil, false, err
		}
	}
	if err := c.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, c.key).Scan(&ok); err != nil {
		c.Close()
		return nil, nil, false, unavailable(err)
	}
	if !ok {
		return nil, nil, false, nil
	}
	conn := c.conn
	c.conn = nil
	lctx, release := hold(ctx, conn, c.key)
	return lctx, release, true, nil
}

// lockConn connects for a lock: with the keepalive and idle session
// settings by which the server finds the holder gone.
func (s *Store) lockConn(ctx context.Context) (*pgx.Conn, error) {
	cfg := s.cfg.ConnConfig.Copy()
	secs := func(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }
	cfg.RuntimeParams["tcp_keepalives_idle"] = secs(keepaliveIdle)
	cfg.RuntimeParams["tcp_keepalives_interval"] = secs(keepaliveEvery)
	cfg.RuntimeParams["tcp_keepalives_count"] = strconv.Itoa(keepaliveProbes)
	// Data the server sent that is not acknowledged: given up as soon.
	cfg.RuntimeParams["tcp_user_timeout"] = strconv.Itoa(int((keepaliveIdle + keepaliveProbes*keepaliveEvery) / time.Millisecond))
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, unavailable(err)
	}
	// Set after connecting: PostgreSQL before 14 does not know it, and
	// would refuse it as a connection parameter (42704 here: left out).
	_, err = conn.Exec(ctx, `SET idle_session_timeout = `+strconv.Itoa(int(serverIdle/time.Millisecond)))
	var pe *pgconn.PgError
	if err != nil && !(errors.As(err, &pe) && pe.Code == "42704") {
		closeConn(conn)
		return nil, unavailable(err)
	}
	return conn, nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}

// hold pings conn, which holds the lock key, until ctx ends or a ping
// fails (see Lead).
func hold(ctx context.Context, conn *pgx.Conn, key int64) (context.Context, func()) {
	lctx, cancel := context.WithCancel(ctx)
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		defer cancel()
		tick := time.NewTicker(LeadPing)
		defer tick.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
				pctx, pcancel := context.WithTimeout(lctx, leadPingTimeout)
				err := conn.Ping(pctx)
				pcancel()
				if err != nil {
					return
				}
			}
		}
	}()
	return lctx, sync.OnceFunc(func() {
		cancel()
		<-pinged
		// Unlocked before the connection closes: the server ends a closed
		// session a moment later, and another node trying meanwhile
		// would find the lock still held.
		uctx, ucancel := context.WithTimeout(context.Background(), time.Second)
		conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, key)
		ucancel()
		closeConn(conn)
	})
}
