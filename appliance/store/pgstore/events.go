package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// eventColumns are what an event row keeps of its job.
const eventColumns = `seq, id, project, spider, version, priority, scheduled, started, ended, pid, exit_code, outcome, cancelled, stats, schedule, attempt`

// OnEvent sets fn to be called after each commit that wrote events, with
// the ID of the last one. fn must not block. It hears this node's events
// only.
func (s *Store) OnEvent(fn func(last int64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onEvent = fn
}

// addEvent records an event for the job row seq as the transaction left
// it, at its timeColumn, as this node's. Its ID is the next of the counter the
// transaction locked first (see write): gapless and in commit order.
// updateWithEvents runs an UPDATE … RETURNING seq and adds an event of
// typ (dated by timeColumn) for each job it changed, in the same
// transaction; it says how many changed.
func (t *tx) updateWithEvents(typ store.EventType, timeColumn, q string, args ...any) (int, error) {
	rows, err := t.Query(t.ctx, q, args...)
	if err != nil {
		return 0, err
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, err
	}
	for _, seq := range seqs {
		if err := t.addEvent(typ, seq, timeColumn, nil); err != nil {
			return 0, err
		}
	}
	return len(seqs), nil
}

func (t *tx) addEvent(typ store.EventType, seq int64, timeColumn string, _ any) error {
	if !t.locked {
		return errors.New("an event written without the event counter locked")
	}
	tag, err := t.Exec(t.ctx, `INSERT INTO events (event_id, type, time, node, `+eventColumns+`)
		SELECT $1, $2, `+timeColumn+`, $4, `+eventColumns+` FROM jobs WHERE seq = $3`, t.lastEvent+1, string(typ), seq, t.node)
	if err != nil {
		return err
	}
	if tag.RowsAffected() > 0 {
		t.lastEvent++
		t.wrote = true
	}
	return nil
}

// Events returns up to limit events after the ID after, oldest first.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]store.Event, error) {
	rows, err := s.pool.Query(ctx, `SELECT event_id, type, time, node, `+eventColumns+` FROM events WHERE event_id > $1 ORDER BY event_id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Event, error) {
		var (
			e              store.Event
			typ            string
			started, ended *time.Time
			pid, exit      *int32
			outcome, stats *string
		)
		j := &e.Job
		if err := r.Scan(&e.ID, &typ, &e.Time, &e.Node, &j.Seq, &j.ID, &j.Project, &j.Spider, &j.Version, &j.Priority,
			&j.Scheduled, &started, &ended, &pid, &exit, &outcome, &j.Cancelled, &stats, &j.Schedule, &j.Attempt); err != nil {
			return e, err
		}
		e.Type = store.EventType(typ)
		j.Started, j.Ended = deref(started), deref(ended)
		if pid != nil {
			j.PID = int(*pid)
		}
		if exit != nil {
			c := int(*exit)
			j.ExitCode = &c
		}
		j.Outcome, j.Stats = job.Outcome(str(outcome)), str(stats)
		j.State = map[store.EventType]job.State{store.EventScheduled: job.Pending, store.EventStarted: job.Running, store.EventFinished: job.Finished}[e.Type]
		return e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return out, nil
}

// LastEventID is the ID of the newest event, 0 when there is none: the
// counter, which a trim does not lower.
func (s *Store) LastEventID(ctx context.Context) (int64, error) {
	var id int64
	if err := s.pool.QueryRow(ctx, `SELECT last FROM event_counter`).Scan(&id); err != nil {
		return 0, fmt.Errorf("last event: %w", err)
	}
	return id, nil
}

// Cursor returns the ID of the last event delivered to a consumer; ok is
// false when the consumer has none yet.
func (s *Store) Cursor(ctx context.Context, name string) (id int64, ok bool, err error) {
	err = s.pool.QueryRow(ctx, `SELECT delivered FROM event_cursors WHERE name = $1`, name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("event cursor: %w", err)
	}
	return id, true, nil
}

// SetCursor records that a consumer has every event up to id.
func (s *Store) SetCursor(name string, id int64) error {
	return s.exec(`INSERT INTO event_cursors (name, delivered) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET delivered = excluded.delivered`, name, id)
}

// TrimEvents deletes the events up to and including id (not bounded by
// CallBound: they may be many).
func (s *Store) TrimEvents(id int64) error {
	return s.execCtx(context.Background(), `DELETE FROM events WHERE event_id <= $1`, id)
}
