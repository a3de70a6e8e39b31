package store

import (
	"database/sql"
	"encoding/json"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

const columns = `seq, id, project, spider, version, settings, args, priority, state, scheduled, started, ended, pid, handle, exit_code, outcome, cancelled, stats, schedule, due, attempt`

// life is the columns of what happened to a job, as scanned from the
// jobs table or an event row, which keeps the same columns.
type life struct {
	scheduled                 int64
	started, ended, pid, exit sql.NullInt64
	outcome, stats            sql.NullString
	cancelled                 int
}

// fill sets j's fields from l.
func (l *life) fill(j *job.Job) {
	j.Scheduled = time.Unix(0, l.scheduled)
	if l.started.Valid {
		j.Started = time.Unix(0, l.started.Int64)
	}
	if l.ended.Valid {
		j.Ended = time.Unix(0, l.ended.Int64)
	}
	j.PID = int(l.pid.Int64)
	if l.exit.Valid {
		c := int(l.exit.Int64)
		j.ExitCode = &c
	}
	j.Outcome, j.Cancelled, j.Stats = job.Outcome(l.outcome.String), l.cancelled != 0, l.stats.String
}

func scanJobs(rows *sql.Rows) ([]job.Job, error) {
	defer rows.Close()
	var out []job.Job
	for rows.Next() {
		var (
			j                     job.Job
			settings, args, state string
			l                     life
			handle                sql.NullString
			due                   sql.NullInt64
		)
		if err := rows.Scan(&j.Seq, &j.ID, &j.Project, &j.Spider, &j.Version, &settings, &args, &j.Priority, &state,
			&l.scheduled, &l.started, &l.ended, &l.pid, &handle, &l.exit, &l.outcome, &l.cancelled, &l.stats, &j.Schedule, &due, &j.Attempt); err != nil {
			return nil, err
		}
		j.State = job.State(state)
		l.fill(&j)
		j.Handle = handle.String
		if due.Valid {
			j.Due = time.Unix(0, due.Int64)
		}
		j.Settings, j.Args = fromPairs(settings), fromPairs(args)
		out = append(out, j)
	}
	return out, rows.Err()
}

// EncodePairs is how every store keeps a job's settings or arguments: a
// JSON list of [name, value] pairs, repeated names and their order kept.
func EncodePairs(ps []job.Pair) string {
	raw, _ := json.Marshal(toPairs(ps))
	return string(raw)
}

// DecodePairs reads EncodePairs' JSON.
func DecodePairs(raw string) []job.Pair { return fromPairs(raw) }

func toPairs(ps []job.Pair) [][2]string {
	out := make([][2]string, len(ps))
	for i, p := range ps {
		out[i] = [2]string{p.Name, p.Value}
	}
	return out
}

func fromPairs(raw string) []job.Pair {
	var ps [][2]string
	json.Unmarshal([]byte(raw), &ps)
	var out []job.Pair
	for _, p := range ps {
		out = append(out, job.Pair{Name: p[0], Value: p[1]})
	}
	return out
}

func nullInt(n int) sql.NullInt64 { return sql.NullInt64{Int64: int64(n), Valid: n != 0} }

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }
