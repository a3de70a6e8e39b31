package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Reaped is what reaping did to one dead node.
type Reaped struct {
	Node     string
	Lost     int // running jobs finished with outcome lost
	Requeued int // running jobs pending again (requeue mode)
	Returned int // jobs it had claimed but not started, pending again
}

// reapMargin is how long after a lease ran out (the database's clock)
// other nodes wait before reaping it, as SQL over the dead node's row.
const reapMargin = `(d.lease / 10 + interval '1 second')`

// Reap declares dead the nodes whose lease ran out, and deals with their
// jobs in one transaction with the bump of their epoch, which fences
// whatever they write later: running jobs become finished with outcome
// lost, or pending again in their original place when the dead node ran
// with lost_jobs = requeue (it stopped its crawls before its lease ran
// out); a cancelled one ends cancelled; jobs claimed but not started are
// pending again. Each end gets its finished event, each requeued running
// job a scheduled event.
//
// A node reaps only while its own lease runs, and only a node that failed
// to renew for a whole lease while the reaper itself renewed without a
// break (renewing_since) and the database ran (pg_postmaster_start_time):
// right after the database or the reaper comes back, every node gets a
// lease's time to renew first.
func (s *Store) Reap(ctx context.Context, keep int) ([]Reaped, error) {
	if s.epoch.Load() == 0 {
		return nil, nil
	}
	var out []Reaped
	err := s.writeCtx(ctx, true, func(t *tx) error {
		rows, err := t.Query(t.ctx, `SELECT d.name FROM nodes d, nodes me
			WHERE me.name = $1 AND me.epoch = $2 AND me.lease_until > now()
				AND d.name != me.name AND NOT d.reaped
				AND greatest(d.lease_until, me.renewing_since + d.lease) + `+reapMargin+` < now()
				AND pg_postmaster_start_time() + d.lease + `+reapMargin+` < now()
			ORDER BY d.name FOR UPDATE OF d SKIP LOCKED`, s.opts.Node, s.epoch.Load())
		if err != nil {
			return err
		}
		dead, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, name := range dead {
			// keep < 0: no trim (a caller that does not know finished_to_keep).
			r, err := reapNode(t, name, keep)
			if err != nil {
				return fmt.Errorf("node %s: %w", name, err)
			}
			out = append(out, r)
		}
		if len(dead) > 0 {
			return t.notify()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reap: %w", err)
	}
	return out, nil
}

// reapNode deals with one dead node's jobs and fences it.
func reapNode(t *tx, name string, keep int) (Reaped, error) {
	r := Reaped{Node: name}
	var mode string
	// A node that stopped cleanly left its crawls running on purpose, and
	// no daemon of its stops them now: they are never queued again.
	if err := t.QueryRow(t.ctx, `UPDATE nodes SET epoch = epoch + 1, reaped = true WHERE name = $1
		RETURNING CASE WHEN stopped THEN 'mark' ELSE lost_jobs END`, name).Scan(&mode); err != nil {
		return r, err
	}
	tag, err := t.Exec(t.ctx, `UPDATE jobs SET state = 'pending', started = NULL, pid = NULL, node = '', epoch = 0
		WHERE node = $1 AND state = 'running' AND handle IS NULL`, name)
	if err != nil {
		return r, err
	}
	r.Returned = int(tag.RowsAffected())
	if mode == LostRequeue {
		n, err := t.updateWithEvents(store.EventScheduled, "scheduled", `UPDATE jobs SET state = 'pending', started = NULL, pid = NULL, handle = NULL, node = '', epoch = 0
			WHERE node = $1 AND state = 'running' AND NOT cancelled RETURNING seq`, name)
		if err != nil {
			return r, err
		}
		r.Requeued = n
	}
	// What is left running ends: lost, or cancelled when a cancel was
	// sent (requeue never reruns a job a user cancelled).
	lost, err := t.updateWithEvents(store.EventFinished, "ended", `UPDATE jobs SET state = 'finished', ended = now(),
			outcome = CASE WHEN cancelled THEN 'cancelled' ELSE 'lost' END
		WHERE node = $1 AND state = 'running' RETURNING seq`, name)
	if err != nil {
		return r, err
	}
	r.Lost = lost
	if lost == 0 {
		return r, nil
	}
	if _, err := t.Exec(t.ctx, `UPDATE job_counts SET finished = finished + $1`, lost); err != nil || keep < 0 {
		return r, err
	}
	return r, trim(t, keep)
}

// errNoLease: this node's lease has run out; it claims nothing until it
// renews.
var errNoLease = errors.New("this node's lease has run out")

// fence locks this node's row in t for the rest of t: store.ErrFenced
// when the node was declared dead since it registered; with lease,
// errNoLease when its lease ran out. A node that has not registered is not
// fenced. FOR KEY SHARE conflicts with the reaper's FOR UPDATE (a reaper
// skips a node with a write in flight, a write waits for a reap under way
// and then finds the epoch bumped) but not with renewals, which change no
// key: a node's writes never hold up its own lease.
func (s *Store) fence(t *tx, lease bool) error {
	e := s.epoch.Load()
	if e == 0 {
		return nil
	}
	var valid bool
	err := t.QueryRow(t.ctx, `SELECT lease_until > now() FROM nodes WHERE name = $1 AND epoch = $2 FOR KEY SHARE`, s.opts.Node, e).Scan(&valid)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrFenced
	}
	if err != nil {
		return err
	}
	if lease && !valid {
		return errNoLease
	}
	return nil
}

// owned is the condition, on a jobs row, that this node claimed it under
// its present epoch, with its two arguments numbered from n; "" and none
// for a node that has not registered.
func (s *Store) owned(n int) (string, []any) {
	e := s.epoch.Load()
	if e == 0 {
		return "", nil
	}
	return fmt.Sprintf(` AND node = $%d AND epoch = $%d`, n, n+1), []any{s.opts.Node, e}
}

// fencedJob says why a write to job seq that changed no row changed
// nothing: store.ErrFenced when the job is no longer this node's under
// its present epoch (reaped, requeued, claimed by another); nil when it is
// gone, or when done says the row already holds this node's own write.
func (s *Store) fencedJob(t *tx, seq int64, done func(state string) bool) error {
	if s.epoch.Load() == 0 {
		return nil
	}
	var (
		state, node string
		epoch       int64
	)
	err := t.QueryRow(t.ctx, `SELECT state, node, epoch FROM jobs WHERE seq = $1`, seq).Scan(&state, &node, &epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if node == s.opts.Node && epoch == s.epoch.Load() && done(state) {
		return nil
	}
	return store.ErrFenced
}
