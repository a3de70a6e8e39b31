package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// SchedulerLock is the lock the node that makes recurring schedules' runs
// and delivers webhooks holds: one node in the cluster does, so that a run
// is not made, nor an event delivered, once per node.
const SchedulerLock = 0x5c7a9d17

// Lead takes the cluster-wide lock key on a connection of its own and holds
// it while the returned context lasts; ok is false at once when another
// node holds it. The context ends with ctx, or as soon as the connection is
// found broken (checked every second): the server has then released the
// lock, and another node may take it, so the holder must stop.
func (s *Store) Lead(ctx context.Context, key int64) (_ context.Context, ok bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, s.cfg.ConnConfig)
	if err != nil {
		return nil, false, err
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil || !ok {
		conn.Close(context.Background())
		return nil, false, err
	}
	lctx, cancel := context.WithCancel(ctx)
	go func() {
		defer cancel()
		defer conn.Close(context.Background())
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
				pctx, pcancel := context.WithTimeout(lctx, 5*time.Second)
				err := conn.Ping(pctx)
				pcancel()
				if err != nil {
					return
				}
			}
		}
	}()
	return lctx, true, nil
}
