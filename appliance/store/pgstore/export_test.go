package pgstore

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Crash closes the store as a killed daemon's connections are closed: the
// node is not marked stopped.
func (s *Store) Crash() {
	s.nodeMu.Lock()
	s.dropNodeConn()
	s.nodeMu.Unlock()
	s.pool.Close()
}

// LastSuccessesQuery is LastSuccesses' statement, for its plan.
const LastSuccessesQuery = lastSuccesses

// HoldEventCounter begins a transaction on one of the store's pooled
// connections that locks the event counter, as every job-event write
// does first, and leaves it open: a node cut off at that moment.
func (s *Store) HoldEventCounter(ctx context.Context) (pgx.Tx, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `SELECT last FROM event_counter FOR UPDATE`); err != nil {
		tx.Rollback(ctx)
		return nil, err
	}
	return tx, nil
}
