package pgstore

import (
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// MaxLogChunk is the most plain bytes one shipped chunk holds: a reader of
// a range asks only for the chunks that can overlap it.
const MaxLogChunk = 1 << 20

// ShipLog appends data, the bytes of job seq's log file from offset off,
// to the job's shipped log, compressed; capped says the cap was reached
// with them, done that the crawl has ended and nothing follows. It returns
// the shipped size after the call. A chunk is taken only at the shipped
// size: one sent again (a retry after a lost answer, a restart) changes
// nothing and the answer tells the sender where to go on from, so no byte
// is ever stored twice or skipped. A job that is not this node's (deleted,
// or claimed again by another node) is refused with store.ErrNotOurs. When
// this node ships a job whose log another node had begun (a job run again
// after its node was lost), that log is replaced from its start.
func (s *Store) ShipLog(ctx context.Context, seq, off int64, data []byte, capped, done bool) (int64, error) {
	if len(data) > MaxLogChunk {
		return 0, fmt.Errorf("ship log: a chunk of %d bytes (at most %d)", len(data), MaxLogChunk)
	}
	var packed []byte
	if len(data) > 0 {
		var b bytes.Buffer
		zw, _ := flate.NewWriter(&b, flate.DefaultCompression)
		zw.Write(data)
		zw.Close()
		packed = b.Bytes()
	}
	var size int64
	err := pgx.BeginFunc(ctx, s.pool, func(t pgx.Tx) error {
		var node string
		err := t.QueryRow(ctx, `SELECT node FROM jobs WHERE seq = $1`, seq).Scan(&node)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && node != s.opts.Node {
			return store.ErrNotOurs
		}
		if err != nil {
			return err
		}
		if _, err := t.Exec(ctx, `INSERT INTO job_logs (seq, node) VALUES ($1, $2) ON CONFLICT (seq) DO NOTHING`, seq, s.opts.Node); err != nil {
			return err
		}
		var was string
		var wasCapped, wasDone bool
		if err := t.QueryRow(ctx, `SELECT node, size, capped, done FROM job_logs WHERE seq = $1 FOR UPDATE`, seq).Scan(&was, &size, &wasCapped, &wasDone); err != nil {
			return err
		}
		if was != s.opts.Node {
			if _, err := t.Exec(ctx, `DELETE FROM job_log_chunks WHERE seq = $1`, seq); err != nil {
				return err
			}
			size, wasCapped, wasDone = 0, false, false
			if _, err := t.Exec(ctx, `UPDATE job_logs SET node = $2, size = 0, capped = false, done = false, modified = now() WHERE seq = $1`, seq, s.opts.Node); err != nil {
				return err
			}
		}
		switch {
		case wasDone:
			return nil
		case wasCapped:
			// Nothing more is shipped past the cap; the end is still
			// recorded, so that the log is no longer listed to ship.
			if done {
				_, err := t.Exec(ctx, `UPDATE job_logs SET done = true WHERE seq = $1`, seq)
				return err
			}
			return nil
		case off != size:
			return nil // already shipped, or ahead of what is: the answer says where to go on
		}
		if len(data) > 0 {
			if _, err := t.Exec(ctx, `INSERT INTO job_log_chunks (seq, off, len, data) VALUES ($1, $2, $3, $4)`, seq, off, len(data), packed); err != nil {
				return err
			}
		}
		size = off + int64(len(data))
		if len(data) == 0 && !capped && !done {
			return nil
		}
		_, err = t.Exec(ctx, `UPDATE job_logs SET size = $2, capped = $3, done = $4, modified = now() WHERE seq = $1`, seq, size, capped, done)
		return err
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23503" {
		err = store.ErrNotOurs // the job row went meanwhile
	}
	if err != nil {
		return 0, fmt.Errorf("ship log: %w", err)
	}
	return size, nil
}

// shippedColumns are a ShippedLog's, from jobs j joined with job_logs l
// (absent: nothing shipped yet).
const shippedColumns = `j.seq, j.project, j.spider, j.id, j.state, j.node,
	COALESCE(l.size, 0), COALESCE(l.capped, false), COALESCE(l.done, false), COALESCE(l.modified, j.started, j.scheduled), COALESCE(l.node, j.node)`

func scanShipped(r pgx.CollectableRow) (store.ShippedLog, error) {
	var l store.ShippedLog
	var state, shipper string
	err := r.Scan(&l.Seq, &l.Project, &l.Spider, &l.ID, &state, &l.Node, &l.Size, &l.Capped, &l.Done, &l.Modified, &shipper)
	l.State = job.State(state)
	if shipper != l.Node {
		// Another node's log of a job run again here: this node
		// starts over.
		l.Size, l.Capped, l.Done = 0, false, false
	}
	return l, err
}

// LogsToShip lists the logs this node has to ship: its running crawls'
// (adopted ones resume where the shipped log ends), those of its crawls
// that ended before their last bytes were shipped, and those of its jobs
// that ended in the last hour with nothing shipped (a start that failed
// writes its reason in the log; a crawl too short to be seen running).
func (s *Store) LogsToShip(ctx context.Context) ([]store.ShippedLog, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+shippedColumns+` FROM jobs j LEFT JOIN job_logs l USING (seq)
		WHERE j.state = 'running' AND j.node = $1 AND NOT COALESCE(l.done AND l.node = j.node, false)
		UNION ALL
		SELECT `+shippedColumns+` FROM job_logs l JOIN jobs j USING (seq)
		WHERE NOT l.done AND j.state = 'finished' AND j.node = $1
		UNION ALL
		SELECT `+shippedColumns+` FROM jobs j LEFT JOIN job_logs l USING (seq)
		WHERE j.state = 'finished' AND j.ended > now() - interval '1 hour' AND j.node = $1 AND l.seq IS NULL`, s.opts.Node)
	if err != nil {
		return nil, fmt.Errorf("logs to ship: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanShipped)
	if err != nil {
		return nil, fmt.Errorf("logs to ship: %w", err)
	}
	return out, nil
}

// ShippedLog describes the log shipped for the newest job of this project,
// spider and id that has one; ok is false when none has.
func (s *Store) ShippedLog(ctx context.Context, project, spider, id string) (l store.ShippedLog, ok bool, err error) {
	rows, err := s.pool.Query(ctx, `SELECT `+shippedColumns+` FROM jobs j JOIN job_logs l USING (seq)
		WHERE j.id = $1 AND j.project = $2 AND j.spider = $3 ORDER BY j.seq DESC LIMIT 1`, id, project, spider)
	if err != nil {
		return l, false, fmt.Errorf("shipped log: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanShipped)
	if err != nil {
		return l, false, fmt.Errorf("shipped log: %w", err)
	}
	if len(list) == 0 {
		return l, false, nil
	}
	return list[0], true, nil
}

// HasShippedLogs says which of the jobs seqs have a shipped log (for
// listjobs' log_url): one query for a whole listing.
func (s *Store) HasShippedLogs(ctx context.Context, seqs []int64) (map[int64]bool, error) {
	out := map[int64]bool{}
	if len(seqs) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT seq FROM job_logs WHERE seq = ANY($1)`, seqs)
	if err != nil {
		return nil, fmt.Errorf("shipped logs: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("shipped logs: %w", err)
	}
	for _, seq := range list {
		out[seq] = true
	}
	return out, nil
}

// ReadShippedLog returns the shipped bytes of job seq's log from off, at
// most n of them; fewer at the shipped end.
func (s *Store) ReadShippedLog(ctx context.Context, seq, off, n int64) ([]byte, error) {
	rows, err := s.pool.Query(ctx, `SELECT off, data FROM job_log_chunks
		WHERE seq = $1 AND off < $2::bigint + $3::bigint AND off > $2::bigint - $4::bigint ORDER BY off`, seq, off, n, MaxLogChunk)
	if err != nil {
		return nil, fmt.Errorf("read shipped log: %w", err)
	}
	defer rows.Close()
	var out []byte
	for rows.Next() {
		var at int64
		var packed []byte
		if err := rows.Scan(&at, &packed); err != nil {
			return nil, fmt.Errorf("read shipped log: %w", err)
		}
		plain, err := io.ReadAll(flate.NewReader(bytes.NewReader(packed)))
		if err != nil {
			return nil, fmt.Errorf("read shipped log: chunk at %d: %w", at, err)
		}
		end := at + int64(len(plain))
		if end <= off {
			continue
		}
		if at > off+int64(len(out)) {
			break // a gap cannot be, but a reader must not join across one
		}
		from := off + int64(len(out)) - at
		plain = plain[from:]
		if want := n - int64(len(out)); int64(len(plain)) > want {
			plain = plain[:want]
		}
		out = append(out, plain...)
		if int64(len(out)) >= n {
			break
		}
	}
	return out, rows.Err()
}
