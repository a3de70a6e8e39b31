package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// ErrNoSchedule: no schedule has this id (in this project).
var ErrNoSchedule = errors.New("schedule not found")

// definition is what a schedule's definition column keeps.
type definition struct {
	Version    string      `json:"version,omitempty"`
	Settings   [][2]string `json:"settings"`
	Args       [][2]string `json:"args"`
	Priority   float64     `json:"priority"`
	Cron       string      `json:"cron,omitempty"`
	Timezone   string      `json:"timezone,omitempty"`
	Every      int64       `json:"every,omitempty"`
	Overlap    string      `json:"overlap"`
	Jitter     int64       `json:"jitter,omitempty"`
	Retries    int         `json:"retries,omitempty"`
	RetryDelay int64       `json:"retry_delay,omitempty"`
}

func nullTime(t time.Time) sql.NullInt64 {
	return sql.NullInt64{Int64: t.UnixNano(), Valid: !t.IsZero()}
}

func fromNull(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64)
}

// EncodeDefinition is what a schedules row keeps of sc's definition (JSON;
// read whole, never queried by its parts), for every store.
func EncodeDefinition(sc job.Schedule) string {
	def, _ := json.Marshal(definition{
		Version: sc.Version, Settings: toPairs(sc.Settings), Args: toPairs(sc.Args), Priority: sc.Priority,
		Cron: sc.Cron, Timezone: sc.Timezone, Every: int64(sc.Every), Overlap: string(sc.Overlap),
		Jitter: int64(sc.Jitter), Retries: sc.Retries, RetryDelay: int64(sc.RetryDelay),
	})
	return string(def)
}

// DecodeDefinition fills sc's definition from EncodeDefinition's JSON.
func DecodeDefinition(raw string, sc *job.Schedule) error {
	var d definition
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		return fmt.Errorf("schedule %s: %w", sc.ID, err)
	}
	sc.Version, sc.Priority, sc.Cron, sc.Timezone = d.Version, d.Priority, d.Cron, d.Timezone
	sc.Settings, sc.Args = pairsOf(d.Settings), pairsOf(d.Args)
	sc.Every, sc.Overlap, sc.Jitter = time.Duration(d.Every), job.Overlap(d.Overlap), time.Duration(d.Jitter)
	sc.Retries, sc.RetryDelay = d.Retries, time.Duration(d.RetryDelay)
	return nil
}

// SaveSchedule adds a schedule or replaces the one with its id.
func (s *Store) SaveSchedule(sc job.Schedule) error {
	def := EncodeDefinition(sc)
	queued := 0
	if sc.Queued {
		queued = 1
	}
	return s.exec(`INSERT INTO schedules (id, project, spider, definition, created, next_run, last_run, last_job, paused, retry_at, retry_attempt, queued)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET project = excluded.project, spider = excluded.spider, definition = excluded.definition,
		next_run = excluded.next_run, last_run = excluded.last_run, last_job = excluded.last_job, paused = excluded.paused,
		retry_at = excluded.retry_at, retry_attempt = excluded.retry_attempt, queued = excluded.queued`,
		sc.ID, sc.Project, sc.Spider, def, sc.Created.UnixNano(), nullTime(sc.NextRun), nullTime(sc.LastRun),
		sc.LastJob, sc.Paused, nullTime(sc.RetryAt), sc.RetryAttempt, queued)
}

// Schedules lists the schedules of a project ("" for all), oldest first.
func (s *Store) Schedules(ctx context.Context, project string) ([]job.Schedule, error) {
	q := `SELECT id, project, spider, definition, created, next_run, last_run, last_job, paused, retry_at, retry_attempt, queued FROM schedules`
	var args []any
	if project != "" {
		q += ` WHERE project = ?`
		args = append(args, project)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY created, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("schedules: %w", err)
	}
	defer rows.Close()
	var out []job.Schedule
	for rows.Next() {
		var (
			sc                job.Schedule
			def               string
			created           int64
			next, last, retry sql.NullInt64
			queued            int
		)
		if err := rows.Scan(&sc.ID, &sc.Project, &sc.Spider, &def, &created, &next, &last, &sc.LastJob, &sc.Paused, &retry, &sc.RetryAttempt, &queued); err != nil {
			return nil, fmt.Errorf("schedules: %w", err)
		}
		if err := DecodeDefinition(def, &sc); err != nil {
			return nil, err
		}
		sc.Created, sc.NextRun, sc.LastRun, sc.RetryAt = time.Unix(0, created), fromNull(next), fromNull(last), fromNull(retry)
		sc.Queued = queued != 0
		out = append(out, sc)
	}
	return out, rows.Err()
}

func pairsOf(ps [][2]string) []job.Pair {
	var out []job.Pair
	for _, p := range ps {
		out = append(out, job.Pair{Name: p[0], Value: p[1]})
	}
	return out
}

// DeleteSchedule removes a project's schedule; ErrNoSchedule when it has
// none with this id. Its runs stay in the history.
func (s *Store) DeleteSchedule(project, id string) error {
	return s.write(func(tx *sql.Tx, _ map[job.State]int) error {
		res, err := tx.Exec(`DELETE FROM schedules WHERE project = ? AND id = ?`, project, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNoSchedule
		}
		return nil
	})
}

// ScheduleRuns returns a schedule's runs in every state, newest first, at
// most limit (0: all).
func (s *Store) ScheduleRuns(ctx context.Context, id string, limit int) ([]job.Job, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM jobs WHERE schedule = ? ORDER BY seq DESC LIMIT ?`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("schedule runs: %w", err)
	}
	return scanJobs(rows)
}

// ActiveRuns counts a schedule's pending and running jobs.
func (s *Store) ActiveRuns(ctx context.Context, id string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM jobs WHERE schedule = ? AND state != 'finished'`, id).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("schedule runs: %w", err)
	}
	return n, nil
}

// RunningCounts counts the running jobs of each project and spider.
func (s *Store) RunningCounts(ctx context.Context) (Running, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return runningCounts(tx)
}
