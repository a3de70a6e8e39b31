package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// EventType is a step of a job's life (issue 17 point 3).
type EventType string

const (
	// EventScheduled: the job was queued (schedule.json).
	EventScheduled EventType = "scheduled"
	// EventStarted: its crawl was launched and its handle stored; from
	// then on it counts as running.
	EventStarted EventType = "started"
	// EventFinished: it ended, with an outcome: a crawl's end, a crawl
	// that could not start (failed, without a started event), or a
	// pending job cancelled (cancelled, without a started event). Every
	// scheduled job gets exactly one.
	EventFinished EventType = "finished"
)

// Event is one step of a job's life, written in the same transaction as
// the state change it records (a transactional outbox), so a committed
// change always has its event and an event always its change. Its ID
// grows with every event and is never reused: SQLite assigns it under the
// store's one writer, so events commit in ID order and a reader that has
// seen ID n has seen every event before it.
type Event struct {
	ID   int64
	Type EventType
	Time time.Time
	// Job is the job as the event left it. Its settings and arguments are
	// not kept: events go to other systems, and arguments may carry
	// credentials.
	Job job.Job
	// Node is the cluster node that recorded the event (the one that
	// started or ended the crawl, cancelled the pending job, or declared
	// the crawl's node dead); "" with SQLite.
	Node string
}

// OnEvent sets fn to be called, under the store's write lock and after
// the commit, with the ID of the last event a transaction wrote. fn must
// not block (the events package's Notifier closes a channel).
func (s *Store) OnEvent(fn func(last int64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onEvent = fn
}

// eventColumns are what an event row keeps of its job.
const eventColumns = `seq, id, project, spider, version, priority, scheduled, started, ended, pid, exit_code, outcome, cancelled, stats`

// addEvent records an event for the job row seq as the transaction left
// it; timeColumn is the row's column that gives the event's time ("" for
// a time given as at). s.mu held (inside write).
func (s *Store) addEvent(tx *sql.Tx, typ EventType, seq int64, timeColumn string, at time.Time) error {
	tcol := "?"
	args := []any{string(typ)}
	if timeColumn != "" {
		tcol = timeColumn
	} else {
		args = append(args, at.UnixNano())
	}
	args = append(args, seq)
	res, err := tx.Exec(`INSERT INTO events (type, time, `+eventColumns+`)
		SELECT ?, `+tcol+`, `+eventColumns+` FROM jobs WHERE seq = ?`, args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n > 0 {
		s.lastEvent, err = res.LastInsertId()
	}
	return err
}

// Events returns up to limit events after the ID after, oldest first.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT event_id, type, time, `+eventColumns+` FROM events WHERE event_id > ? ORDER BY event_id LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var (
			e   Event
			typ string
			at  int64
			l   life
		)
		j := &e.Job
		if err := rows.Scan(&e.ID, &typ, &at, &j.Seq, &j.ID, &j.Project, &j.Spider, &j.Version, &j.Priority,
			&l.scheduled, &l.started, &l.ended, &l.pid, &l.exit, &l.outcome, &l.cancelled, &l.stats); err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
		e.Type, e.Time = EventType(typ), time.Unix(0, at)
		l.fill(j)
		j.State = map[EventType]job.State{EventScheduled: job.Pending, EventStarted: job.Running, EventFinished: job.Finished}[e.Type]
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return out, nil
}

// LastEventID is the ID of the newest event, 0 when there is none.
func (s *Store) LastEventID(ctx context.Context) (int64, error) {
	var id sql.NullInt64
	// sqlite_sequence keeps AUTOINCREMENT's high-water mark, which pruning
	// does not lower.
	err := s.db.QueryRowContext(ctx, `SELECT seq FROM sqlite_sequence WHERE name = 'events'`).Scan(&id)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("last event: %w", err)
	}
	return id.Int64, nil
}

// Cursor returns the ID of the last event delivered to a consumer (a
// webhook URL); ok is false when the consumer has none yet.
func (s *Store) Cursor(ctx context.Context, name string) (id int64, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT delivered FROM event_cursors WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("event cursor: %w", err)
	}
	return id, true, nil
}

// SetCursor records that a consumer has every event up to id.
func (s *Store) SetCursor(name string, id int64) error {
	return s.exec(`INSERT INTO event_cursors (name, delivered) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET delivered = excluded.delivered`, name, id)
}

// TrimEvents deletes the events up to and including id.
func (s *Store) TrimEvents(id int64) error {
	return s.exec(`DELETE FROM events WHERE event_id <= ?`, id)
}
