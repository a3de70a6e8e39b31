package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// ProjectCount is how many of a project's jobs are in one state.
type ProjectCount struct {
	Project string
	State   job.State
	Jobs    int
}

// ActiveByProject counts each project's pending and running jobs, for
// /metrics at every scrape (issue 17); a project with none in a state has
// no entry for it. Each state's count walks its partial index (the queue,
// the running set), so a scrape reads the active jobs only, never the
// history, however long finished_to_keep makes it: the finished jobs are
// counted as they end (scrapyd_jobs_finished_total) and their total kept
// is in Counts, in memory.
func (s *Store) ActiveByProject(ctx context.Context) ([]ProjectCount, error) {
	// The state is written in the SQL, not bound, for the partial indexes
	// (see Filter.query).
	const q = `SELECT project, 'pending', COUNT(*) FROM jobs WHERE state = 'pending' GROUP BY project
		UNION ALL SELECT project, 'running', COUNT(*) FROM jobs WHERE state = 'running' GROUP BY project`
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("active jobs by project: %w", err)
	}
	defer rows.Close()
	var out []ProjectCount
	for rows.Next() {
		var c ProjectCount
		if err := rows.Scan(&c.Project, &c.State, &c.Jobs); err != nil {
			return nil, fmt.Errorf("active jobs by project: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("active jobs by project: %w", err)
	}
	return out, nil
}

// SpiderSuccess is the end of a spider's newest crawl whose outcome is
// job.OutcomeFinished.
type SpiderSuccess struct {
	Project, Spider string
	Ended           time.Time
}

// LastSuccesses returns, per project and spider in the history, when its
// newest successful crawl ended; a spider with none is left out. The
// daemon reads it after every start, so that "last success" survives a
// restart for as long as finished_to_keep remembers the crawl. It skips
// along the jobs_successes index, two probes per spider, whatever the
// history's length: a daemon that sleeps (idle_timeout) starts often.
func (s *Store) LastSuccesses(ctx context.Context) ([]SpiderSuccess, error) {
	const success = `state = 'finished' AND outcome = '` + string(job.OutcomeFinished) + `'`
	var out []SpiderSuccess
	var p, sp string
	first := true
	for {
		var err error
		if first {
			err = s.db.QueryRowContext(ctx, `SELECT project, spider FROM jobs WHERE `+success+` ORDER BY project, spider LIMIT 1`).Scan(&p, &sp)
			first = false
		} else {
			err = s.db.QueryRowContext(ctx, `SELECT project, spider FROM jobs WHERE `+success+` AND (project, spider) > (?, ?) ORDER BY project, spider LIMIT 1`, p, sp).Scan(&p, &sp)
		}
		if errors.Is(err, sql.ErrNoRows) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("last successes: %w", err)
		}
		var ended int64
		if err := s.db.QueryRowContext(ctx, `SELECT MAX(ended) FROM jobs WHERE `+success+` AND project = ? AND spider = ?`, p, sp).Scan(&ended); err != nil {
			return nil, fmt.Errorf("last successes: %w", err)
		}
		out = append(out, SpiderSuccess{Project: p, Spider: sp, Ended: time.Unix(0, ended)})
	}
}

// Ping reads the database, for the readiness probe: the file is there and
// readable, and no lock holds it past ctx.
func (s *Store) Ping(ctx context.Context) error {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM jobs WHERE seq = 0`).Scan(&n); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}
