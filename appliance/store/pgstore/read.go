package pgstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

const columns = `seq, id, project, spider, version, settings, args, priority, state, scheduled, started, ended, pid, handle, exit_code, outcome, cancelled, stats, schedule, due, attempt, node, items`

// finishedOrder is the history's order, newest first (Scrapyd's), and that
// of its indexes.
const finishedOrder = `ended DESC, seq DESC`

// orders are the listings' orders, each an index's.
var orders = map[job.State]string{
	job.Pending:  "priority DESC, seq",
	job.Running:  "started, seq",
	job.Finished: finishedOrder,
}

func scanJobs(rows pgx.Rows) ([]job.Job, error) {
	defer rows.Close()
	var out []job.Job
	for rows.Next() {
		var (
			j                      job.Job
			settings, args, state  string
			started, ended, due    *time.Time
			pid, exit              *int32
			handle, outcome, stats *string
		)
		if err := rows.Scan(&j.Seq, &j.ID, &j.Project, &j.Spider, &j.Version, &settings, &args, &j.Priority, &state,
			&j.Scheduled, &started, &ended, &pid, &handle, &exit, &outcome, &j.Cancelled, &stats, &j.Schedule, &due, &j.Attempt, &j.Node, &j.Items); err != nil {
			return nil, err
		}
		j.State = job.State(state)
		j.Started, j.Ended, j.Due = deref(started), deref(ended), deref(due)
		if pid != nil {
			j.PID = int(*pid)
		}
		if exit != nil {
			c := int(*exit)
			j.ExitCode = &c
		}
		j.Handle, j.Outcome, j.Stats = str(handle), job.Outcome(str(outcome)), str(stats)
		j.Settings, j.Args = store.DecodePairs(settings), store.DecodePairs(args)
		out = append(out, j)
	}
	return out, rows.Err()
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func nullInt(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// query selects the jobs in a state that f keeps, in the state's order;
// those a node claimed when node (or f.Node) is not "".
func query(state job.State, f store.Filter, node string) (string, []any) {
	q := `SELECT ` + columns + ` FROM jobs WHERE state = '` + string(state) + `'`
	var args []any
	if node == "" {
		node = f.Node
	}
	if node != "" {
		args = append(args, node)
		q += ` AND node = $1`
	}
	if f.Project != "" {
		args = append(args, f.Project)
		q += fmt.Sprintf(` AND project = $%d`, len(args))
	}
	if f.Spider != "" {
		args = append(args, f.Spider)
		q += fmt.Sprintf(` AND spider = $%d`, len(args))
	}
	q += ` ORDER BY ` + orders[state]
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += fmt.Sprintf(` LIMIT $%d`, len(args))
	}
	if f.Offset > 0 {
		args = append(args, f.Offset)
		q += fmt.Sprintf(` OFFSET $%d`, len(args))
	}
	return q, args
}

func list(ctx context.Context, q querier, state job.State, f store.Filter, node string) ([]job.Job, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	sql, args := query(state, f, node)
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s jobs: %w", state, unavailable(err))
	}
	jobs, err := scanJobs(rows)
	if err != nil {
		return nil, fmt.Errorf("list %s jobs: %w", state, unavailable(err))
	}
	return jobs, nil
}

// List returns the jobs in a state that f keeps, in the state's order.
func (s *Store) List(ctx context.Context, state job.State, f store.Filter) ([]job.Job, error) {
	return list(ctx, s.pool, state, f, "")
}

// Snapshot lists the states in want as of one moment: one REPEATABLE READ
// transaction reads them all.
func (s *Store) Snapshot(ctx context.Context, f, finished store.Filter, want map[job.State]bool) (pending, running, done []job.Job, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		for _, sec := range []struct {
			state job.State
			f     store.Filter
			out   *[]job.Job
		}{{job.Pending, f, &pending}, {job.Running, f, &running}, {job.Finished, finished, &done}} {
			if !want[sec.state] {
				continue
			}
			var err error
			if *sec.out, err = list(ctx, tx, sec.state, sec.f, ""); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("snapshot: %w", unavailable(err))
	}
	return pending, running, done, nil
}

// Find returns the job with this id the way status.json searches:
// finished (newest first), then running, then pending. project "" matches
// any.
func (s *Store) Find(ctx context.Context, project, id string) (*job.Job, error) {
	q := `SELECT ` + columns + ` FROM jobs WHERE id = $1`
	args := []any{id}
	if project != "" {
		q += ` AND project = $2`
		args = append(args, project)
	}
	q += ` ORDER BY CASE state WHEN 'finished' THEN 0 WHEN 'running' THEN 1 ELSE 2 END, ended DESC NULLS LAST, seq DESC LIMIT 1`
	ctx, cancel := bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("find job %s: %w", id, unavailable(err))
	}
	list, err := scanJobs(rows)
	if err != nil {
		return nil, fmt.Errorf("find job %s: %w", id, unavailable(err))
	}
	if len(list) == 0 {
		return nil, store.ErrNotFound
	}
	return &list[0], nil
}

// IsRunning reports whether a job with this id is running.
func (s *Store) IsRunning(ctx context.Context, id string) bool {
	var one int
	return s.pool.QueryRow(ctx, `SELECT 1 FROM jobs WHERE id = $1 AND state = 'running' LIMIT 1`, id).Scan(&one) == nil
}

// ActiveByProject counts each project's pending and running jobs.
func (s *Store) ActiveByProject(ctx context.Context) ([]store.ProjectCount, error) {
	rows, err := s.pool.Query(ctx, `SELECT project, 'pending', count(*) FROM jobs WHERE state = 'pending' GROUP BY project
		UNION ALL SELECT project, 'running', count(*) FROM jobs WHERE state = 'running' GROUP BY project`)
	if err != nil {
		return nil, fmt.Errorf("active jobs by project: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.ProjectCount, error) {
		var c store.ProjectCount
		err := r.Scan(&c.Project, &c.State, &c.Jobs)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("active jobs by project: %w", err)
	}
	return out, nil
}

// lastSuccesses walks the index jobs_successes from spider to spider
// (PostgreSQL has no skip scan: GROUP BY would read every success in it)
// and reads each one's newest end at the end of its range: one probe per
// spider however long the history. The outcome is written out, not a
// parameter, so that the partial index matches in every plan.
const lastSuccesses = `WITH RECURSIVE spiders (project, spider) AS (
	(SELECT project, spider FROM jobs WHERE state = 'finished' AND outcome = 'finished' ORDER BY project, spider LIMIT 1)
	UNION ALL
	SELECT n.project, n.spider FROM spiders s, LATERAL (SELECT project, spider FROM jobs
		WHERE state = 'finished' AND outcome = 'finished' AND (project, spider) > (s.project, s.spider)
		ORDER BY project, spider LIMIT 1) n
)
SELECT project, spider, (SELECT max(ended) FROM jobs j WHERE state = 'finished' AND outcome = 'finished'
	AND j.project = s.project AND j.spider = s.spider) FROM spiders s`

// LastSuccesses returns, per project and spider in the history, when its
// newest successful crawl ended.
func (s *Store) LastSuccesses(ctx context.Context) ([]store.SpiderSuccess, error) {
	rows, err := s.pool.Query(ctx, lastSuccesses)
	if err != nil {
		return nil, fmt.Errorf("last successes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.SpiderSuccess, error) {
		var sc store.SpiderSuccess
		err := r.Scan(&sc.Project, &sc.Spider, &sc.Ended)
		return sc, err
	})
	if err != nil {
		return nil, fmt.Errorf("last successes: %w", err)
	}
	return out, nil
}

// ScheduleRuns returns a schedule's runs in every state, newest first, at
// most limit (0: all).
func (s *Store) ScheduleRuns(ctx context.Context, id string, limit int) ([]job.Job, error) {
	var lim any
	if limit > 0 {
		lim = limit
	}
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM jobs WHERE schedule = $1 ORDER BY seq DESC LIMIT $2`, id, lim)
	if err != nil {
		return nil, fmt.Errorf("schedule runs: %w", err)
	}
	return scanJobs(rows)
}

// ActiveRuns counts a schedule's pending and running jobs.
func (s *Store) ActiveRuns(ctx context.Context, id string) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE schedule = $1 AND state != 'finished'`, id).Scan(&n); err != nil {
		return 0, fmt.Errorf("schedule runs: %w", err)
	}
	return n, nil
}

// SaveSchedule adds a schedule or replaces the one with its id, and
// announces the change to the other nodes (ScheduleChange).
func (s *Store) SaveSchedule(sc job.Schedule) error {
	return s.write(false, func(t *tx) error {
		if _, err := t.Exec(t.ctx, saveSchedule, scheduleArgs(sc)...); err != nil {
			return err
		}
		return s.scheduleChanged(t, sc.Project)
	})
}

// saveSchedule adds or replaces a schedule, with scheduleArgs.
const saveSchedule = `INSERT INTO schedules (id, project, spider, definition, created, next_run, last_run, last_job, paused, retry_at, retry_attempt, queued)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (id) DO UPDATE SET project = excluded.project, spider = excluded.spider, definition = excluded.definition,
		next_run = excluded.next_run, last_run = excluded.last_run, last_job = excluded.last_job, paused = excluded.paused,
		retry_at = excluded.retry_at, retry_attempt = excluded.retry_attempt, queued = excluded.queued`

func scheduleArgs(sc job.Schedule) []any {
	return []any{sc.ID, sc.Project, sc.Spider, store.EncodeDefinition(sc), sc.Created, nullTime(sc.NextRun), nullTime(sc.LastRun),
		sc.LastJob, sc.Paused, nullTime(sc.RetryAt), sc.RetryAttempt, sc.Queued}
}

// ScheduleChanges begins the payload of an announcement that a node
// changed a project's schedules: ScheduleChanges, the node's name, a
// newline and the project.
const ScheduleChanges = "schedules "

// scheduleChanged announces in t that this node changed project's
// schedules: the lead makes the runs from its own copy of them, which it
// reads again.
func (s *Store) scheduleChanged(t *tx, project string) error {
	_, err := t.Exec(t.ctx, `SELECT pg_notify('`+Channel+`', $1)`, ScheduleChanges+s.opts.Node+"\n"+project)
	return err
}

// ScheduleChange reads an announcement's payload: the node that changed
// a project's schedules, and the project; ok is false for another kind
// of announcement.
func ScheduleChange(payload string) (node, project string, ok bool) {
	rest, ok := strings.CutPrefix(payload, ScheduleChanges)
	if !ok {
		return "", "", false
	}
	node, project, ok = strings.Cut(rest, "\n")
	return node, project, ok
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// Schedules lists the schedules of a project ("" for all), oldest first.
func (s *Store) Schedules(ctx context.Context, project string) ([]job.Schedule, error) {
	q := `SELECT id, project, spider, definition, created, next_run, last_run, last_job, paused, retry_at, retry_attempt, queued FROM schedules`
	var args []any
	if project != "" {
		q += ` WHERE project = $1`
		args = append(args, project)
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY created, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("schedules: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (job.Schedule, error) {
		var (
			sc                job.Schedule
			def               string
			next, last, retry *time.Time
		)
		if err := r.Scan(&sc.ID, &sc.Project, &sc.Spider, &def, &sc.Created, &next, &last, &sc.LastJob, &sc.Paused, &retry, &sc.RetryAttempt, &sc.Queued); err != nil {
			return sc, err
		}
		sc.NextRun, sc.LastRun, sc.RetryAt = deref(next), deref(last), deref(retry)
		return sc, store.DecodeDefinition(def, &sc)
	})
	if err != nil {
		return nil, fmt.Errorf("schedules: %w", err)
	}
	return out, nil
}

// DeleteSchedule removes a project's schedule, and announces it as
// SaveSchedule does; ErrNoSchedule when it has none with this id.
func (s *Store) DeleteSchedule(project, id string) error {
	return s.write(false, func(t *tx) error {
		tag, err := t.Exec(t.ctx, `DELETE FROM schedules WHERE project = $1 AND id = $2`, project, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNoSchedule
		}
		return s.scheduleChanged(t, project)
	})
}
