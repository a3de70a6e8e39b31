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
	cfg := s.cfg.ConnConfig.Copy()
	secs := func(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }
	cfg.RuntimeParams["tcp_keepalives_idle"] = secs(keepaliveIdle)
	cfg.RuntimeParams["tcp_keepalives_interval"] = secs(keepaliveEvery)
	cfg.RuntimeParams["tcp_keepalives_count"] = strconv.Itoa(keepaliveProbes)
	// Data the server sent that is not acknowledged: given up as soon.
	cfg.RuntimeParams["tcp_user_timeout"] = strconv.Itoa(int((keepaliveIdle + keepaliveProbes*keepaliveEvery) / time.Millisecond))
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, nil, false, unavailable(err)
	}
	closeConn := func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}
	// Set after connecting: PostgreSQL before 14 does not know it, and
	// would refuse it as a connection parameter (42704 here: left out).
	_, err = conn.Exec(ctx, `SET idle_session_timeout = `+strconv.Itoa(int(serverIdle/time.Millisecond)))
	var pe *pgconn.PgError
	if err != nil && !(errors.As(err, &pe) && pe.Code == "42704") {
		closeConn()
		return nil, nil, false, unavailable(err)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil || !ok {
		closeConn()
		return nil, nil, false, unavailable(err)
	}
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
	release = sync.OnceFunc(func() {
		cancel()
		<-pinged
		closeConn()
	})
	return lctx, release, true, nil
}
