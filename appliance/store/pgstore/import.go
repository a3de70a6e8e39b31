package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Import is what a single node's store holds, moved into the cluster's
// database by `scrapyd cluster import` (issue 15 point 7).
type Import struct {
	// Jobs in every state. They are written in their Seq order, so that the
	// pending ones keep their place among themselves (priority, then first
	// scheduled) behind the cluster's own, and ties in the history keep
	// theirs.
	Jobs      []job.Job
	Spiders   []store.SpiderList
	Schedules []job.Schedule
	// Eggs are the node's eggs_dir. A version the database holds with the
	// same hash is left as it is; with another, the import is refused.
	Eggs []egg.Upload
	// Logs are the ids of the finished jobs whose log file the node holds:
	// they are listed for the node to ship once it runs on the database
	// (LogsToShip), so that every node serves them.
	Logs []string
}

// ErrImported: this node's store was imported into the database before.
var ErrImported = errors.New("already imported")

// importColumns are the job columns an import writes.
const importColumns = `id, project, spider, version, settings, args, priority, state, scheduled, started, ended, pid, handle, exit_code, outcome, cancelled, stats, schedule, due, attempt, node`

// Import writes a single node's store into the database as this node's
// (Options.Node): its running jobs with their handles, so that this node
// adopts their crawls when it starts on the database, its finished jobs
// as run by it. It is one transaction, refused whole (ErrImported) when
// the node's store was imported before, when a node of its name is in the
// cluster, or when one of its pending or running job ids, a schedule id or
// an egg version (with another egg) is already in the database. Other
// nodes are told of the new pending jobs.
func (s *Store) Import(ctx context.Context, im Import) error {
	jobs := slices.Clone(im.Jobs)
	slices.SortFunc(jobs, func(a, b job.Job) int { return int(a.Seq - b.Seq) })
	return pgx.BeginFunc(ctx, s.pool, func(t pgx.Tx) error {
		var when time.Time
		err := t.QueryRow(ctx, `SELECT imported FROM imports WHERE node = $1`, s.opts.Node).Scan(&when)
		if err == nil {
			return fmt.Errorf("node %s's store was imported on %s: %w", s.opts.Node, when.UTC().Format(time.RFC3339), ErrImported)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		// The imported crawls must wait for this node's daemon to adopt
		// them: a node of this name already in the cluster would adopt
		// none of them (a live one), or have them reaped (a dead one).
		var one int
		err = t.QueryRow(ctx, `SELECT 1 FROM nodes WHERE name = $1`, s.opts.Node).Scan(&one)
		if err == nil {
			return fmt.Errorf("node_name %s is already a node of the cluster: an import is for a node joining it (give this node its own node_name)", s.opts.Node)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if _, err := t.Exec(ctx, `INSERT INTO imports (node, jobs) VALUES ($1, $2)`, s.opts.Node, len(jobs)); err != nil {
			return err
		}
		rows := make([][]any, len(jobs))
		finished := 0
		for i, j := range jobs {
			node := s.opts.Node
			if j.State == job.Pending {
				node = ""
			}
			if j.State == job.Finished {
				finished++
			}
			var exit any
			if j.ExitCode != nil {
				exit = *j.ExitCode
			}
			rows[i] = []any{j.ID, j.Project, j.Spider, j.Version, store.EncodePairs(j.Settings), store.EncodePairs(j.Args), j.Priority,
				string(j.State), j.Scheduled, nullTime(j.Started), nullTime(j.Ended), nullInt(j.PID), nullString(j.Handle), exit,
				nullString(string(j.Outcome)), j.Cancelled, nullString(j.Stats), j.Schedule, nullTime(j.Due), j.Attempt, node}
		}
		// COPY: a history of 100,000 jobs is one round trip, not 100,000.
		// Its rows are numbered (seq) in the order given.
		if _, err := t.CopyFrom(ctx, pgx.Identifier{"jobs"}, strings.Split(importColumns, ", "), pgx.CopyFromRows(rows)); err != nil {
			if isDuplicate(err) {
				return fmt.Errorf("a job id of this node is already pending or running in the database: %w", err)
			}
			return err
		}
		if _, err := t.Exec(ctx, `UPDATE job_counts SET finished = finished + $1`, finished); err != nil {
			return err
		}
		// The node's jobs are the imported ones (a node the cluster knows
		// cannot import).
		if _, err := t.Exec(ctx, `INSERT INTO job_logs (seq, node) SELECT seq, node FROM jobs
			WHERE node = $1 AND state = 'finished' AND id = ANY($2) ON CONFLICT DO NOTHING`, s.opts.Node, im.Logs); err != nil {
			return err
		}
		for _, l := range im.Spiders {
			raw, _ := json.Marshal(l.Names)
			// Another node's list of the same version is the same list.
			if _, err := t.Exec(ctx, `INSERT INTO spiders (project, version, names) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
				l.Project, l.Version, string(raw)); err != nil {
				return err
			}
		}
		for _, sc := range im.Schedules {
			var project string
			err := t.QueryRow(ctx, `SELECT project FROM schedules WHERE id = $1`, sc.ID).Scan(&project)
			if err == nil {
				return fmt.Errorf("schedule %s is already in the database (project %s)", sc.ID, project)
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			if _, err := t.Exec(ctx, saveSchedule, scheduleArgs(sc)...); err != nil {
				return err
			}
		}
		if err := importEggs(ctx, t, im.Eggs); err != nil {
			return err
		}
		_, err = t.Exec(ctx, `SELECT pg_notify('`+Channel+`', '')`)
		return err
	})
}

// importEggs adds the eggs the database lacks (nodes see them at the
// commit's announcement) and refuses one it holds with another hash.
func importEggs(ctx context.Context, t pgx.Tx, eggs []egg.Upload) error {
	for _, u := range eggs {
		stem := egg.Sanitize(u.Version)
		var version, sum string
		err := t.QueryRow(ctx, `SELECT version, sha256 FROM eggs WHERE project = $1 AND stem = $2`, u.Project, stem).Scan(&version, &sum)
		if err == nil && sum == u.SHA256 {
			continue
		}
		if err == nil {
			return fmt.Errorf("project %s version %s is in the database as another egg (version %s, sha256 %s; this node's is %s): delete one of them first",
				u.Project, u.Version, version, sum, u.SHA256)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if _, err := t.Exec(ctx, `INSERT INTO eggs (project, stem, version, data, sha256, env, requirements, wheels, uploaded)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			u.Project, stem, u.Version, u.Data, u.SHA256, u.Env, u.Requirements, u.Wheels, u.Uploaded); err != nil {
			return err
		}
	}
	if len(eggs) == 0 {
		return nil
	}
	return eggNotify(ctx, t)
}
