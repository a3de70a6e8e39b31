// Package store keeps the daemon's state in one SQLite database (WAL): the
// pending queue, running jobs with their launch handles, finished history,
// and the spider-list cache. Every state change is one transaction, so a
// crash or kill -9 never leaves a job in two states or loses an
// acknowledged schedule.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, registered as "sqlite"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// ErrDuplicate: a pending or running job already has this id.
var ErrDuplicate = errors.New("a pending or running job already has this id")

// ErrNotFound: no such job.
var ErrNotFound = errors.New("job not found")

// ErrFenced: a cluster node's write was refused because the cluster
// decided otherwise meanwhile (the node was declared dead, its epoch
// bumped, its jobs reaped). The write must be dropped, never retried: what
// it would overwrite is another node's decision.
var ErrFenced = errors.New("fenced: this node was declared dead and its jobs were reaped")

// ErrUnavailable: the database could not be reached (a shared database
// restarting, a network down); nothing was changed, and the same call may
// work later. The embedded SQLite store never returns it.
var ErrUnavailable = errors.New("the job database is unavailable")

// ErrInDoubt comes with ErrUnavailable when the database went away after
// a change was sent to be committed and before it said it was: the change
// may have been made (a schedule may be in the queue).
var ErrInDoubt = errors.New("it went away before confirming the change, which may have been made")

// FileName is the database's name inside dbs_dir.
const FileName = "scrapyd.db"

// Store is safe for concurrent use. Writes are serialised by mu (SQLite has
// one writer anyway; serialising here avoids SQLITE_BUSY retries), reads run
// in parallel on WAL snapshots. Only the counts per state are kept in
// memory: the history is read from disk a page at a time, so the daemon's
// memory does not grow with it (issue 14 point 5).
type Store struct {
	db *sql.DB

	mu     sync.Mutex
	counts map[job.State]int
	// lastEvent is the ID of the last event the transaction in progress
	// wrote (0: none); onEvent hears of it after the commit.
	lastEvent int64
	onEvent   func(last int64)
}

// Open opens the database in dir, creating it if needed, and brings its
// schema to this release's version.
func Open(dir string) (*Store, error) {
	// The directories above dir are only passed through (a crawl user must
	// reach a data directory beside it); dir itself is the daemon's own, as
	// the daemon makes it.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("open store: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if err := private(path); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	// synchronous=NORMAL in WAL mode survives a daemon crash or kill -9 (the
	// WAL is in the OS's hands once written); only a power loss can drop the
	// last transactions.
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "synchronous(NORMAL)"} {
		q.Add("_pragma", p)
	}
	// Write transactions begin IMMEDIATE: they take SQLite's write lock at
	// BEGIN, where busy_timeout applies. A deferred one that has read
	// first and then finds the lock held gets SQLITE_BUSY at once, without
	// waiting (SQLite does not wait there, to avoid a deadlock): seen once
	// in CI as a schedule.json refused under 50 concurrent clients.
	// Read-only transactions stay deferred.
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(0)
	s := &Store{db: db, counts: map[job.State]int{}}
	if err := migrate(db, path); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	// Each count reads its state's partial index, not the table.
	for _, st := range []job.State{job.Pending, job.Running, job.Finished} {
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM jobs WHERE state = '` + string(st) + `'`).Scan(&n); err != nil {
			db.Close()
			return nil, fmt.Errorf("open store: %w", err)
		}
		s.counts[st] = n
	}
	return s, nil
}

// private makes the database and its WAL files readable by the daemon's
// user only, whatever the umask or an older release left: jobs' settings
// and arguments can hold credentials (issue 13 point 10). SQLite gives the
// -wal and -shm files it creates the database file's mode.
func private(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// finishedOrder is the history's order, newest first (Scrapyd's), and that
// of its indexes.
const finishedOrder = `ended DESC, seq DESC`

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Counts returns how many jobs are pending, running and finished.
func (s *Store) Counts() (pending, running, finished int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[job.Pending], s.counts[job.Running], s.counts[job.Finished]
}

// write runs fn in one transaction under the write lock, and applies the
// count changes fn reports only if the transaction commits.
func (s *Store) write(fn func(tx *sql.Tx, delta map[job.State]int) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	delta := map[job.State]int{}
	s.lastEvent = 0
	if err := fn(tx, delta); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	for k, v := range delta {
		s.counts[k] += v
	}
	if s.lastEvent != 0 && s.onEvent != nil {
		s.onEvent(s.lastEvent)
	}
	return nil
}

// Enqueue adds a pending job. Client-chosen ids must not collide with a
// pending or running job: they name the crawl's log file and unit.
func (s *Store) Enqueue(spec job.Spec, now time.Time) (job.Job, error) {
	settings, args := EncodePairs(spec.Settings), EncodePairs(spec.Args)
	j := job.Job{Spec: spec, State: job.Pending, Scheduled: now}
	err := s.write(func(tx *sql.Tx, delta map[job.State]int) error {
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM jobs WHERE id = ? AND state != 'finished'`, spec.ID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrDuplicate
		}
		var due sql.NullInt64
		if !spec.Due.IsZero() {
			due = sql.NullInt64{Int64: spec.Due.UnixNano(), Valid: true}
		}
		res, err := tx.Exec(`INSERT INTO jobs (id, project, spider, version, settings, args, priority, state, scheduled, schedule, due, attempt)
			VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)`,
			spec.ID, spec.Project, spec.Spider, spec.Version, settings, args, spec.Priority, now.UnixNano(),
			spec.Schedule, due, spec.Attempt)
		if err != nil {
			return err
		}
		if j.Seq, err = res.LastInsertId(); err != nil {
			return err
		}
		delta[job.Pending]++
		return s.addEvent(tx, EventScheduled, j.Seq, "scheduled", now)
	})
	if err != nil {
		return job.Job{}, fmt.Errorf("enqueue %s: %w", spec.ID, err)
	}
	return j, nil
}

// Claim moves the next pending job (highest priority, then first scheduled,
// across all projects) that caps allow to running, without a handle yet.
// It returns nil when no pending job may start. A job held back by a cap
// does not block the ones behind it.
func (s *Store) Claim(now time.Time, caps Caps) (*job.Job, error) {
	var j *job.Job
	err := s.write(func(tx *sql.Tx, delta map[job.State]int) error {
		q := `SELECT ` + columns + ` FROM jobs WHERE state = 'pending'`
		var args []any
		if !caps.None() {
			running, err := runningCounts(tx)
			if err != nil {
				return err
			}
			// The held-back projects and spiders are excluded in the
			// query itself: the queue index is walked past their jobs
			// without reading them into Go, so 10,000 capped jobs ahead
			// cost a scan of the index, not 10,000 rows.
			projects, spiders := caps.Blocked(running)
			for _, p := range projects {
				q += ` AND project != ?`
				args = append(args, p)
			}
			for _, ps := range spiders {
				q += ` AND NOT (project = ? AND spider = ?)`
				args = append(args, ps[0], ps[1])
			}
		}
		rows, err := tx.Query(q+` ORDER BY priority DESC, seq LIMIT 1`, args...)
		if err != nil {
			return err
		}
		list, err := scanJobs(rows)
		if err != nil || len(list) == 0 {
			return err
		}
		j = &list[0]
		if _, err := tx.Exec(`UPDATE jobs SET state = 'running', started = ? WHERE seq = ?`, now.UnixNano(), j.Seq); err != nil {
			return err
		}
		j.State, j.Started = job.Running, now
		delta[job.Pending]--
		delta[job.Running]++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return j, nil
}

// runningCounts counts the running jobs of each project and spider (the
// running index: a handful of rows).
func runningCounts(tx *sql.Tx) (Running, error) {
	rows, err := tx.Query(`SELECT project, spider, COUNT(*) FROM jobs WHERE state = 'running' GROUP BY project, spider`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := Running{}
	for rows.Next() {
		var p, sp string
		var n int
		if err := rows.Scan(&p, &sp, &n); err != nil {
			return nil, err
		}
		out[[2]string{p, sp}] = n
	}
	return out, rows.Err()
}

// Launching records the handle a claimed job's crawl will have, before it
// is started (a planned unit name, or the dispatcher's Starting mark),
// without a pid, so that a daemon that dies during the start can find the
// crawl or know a start was under way. It writes no event: the crawl has
// not started yet.
func (s *Store) Launching(seq int64, handle string) error {
	return s.exec(`UPDATE jobs SET handle = ?, pid = NULL WHERE seq = ? AND state = 'running'`, handle, seq)
}

// Started records the launch handle of a claimed job. Until it is stored a
// restarted daemon cannot find the crawl, so the dispatcher calls it right
// after the launcher returns. Its started event goes with it: a job counts
// as started once a restarted daemon could find its crawl.
func (s *Store) Started(seq int64, handle string, pid int) error {
	return s.write(func(tx *sql.Tx, _ map[job.State]int) error {
		res, err := tx.Exec(`UPDATE jobs SET handle = ?, pid = ? WHERE seq = ? AND state = 'running'`, handle, nullInt(pid), seq)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil
		}
		return s.addEvent(tx, EventStarted, seq, "started", time.Time{})
	})
}

// Requeue returns a claimed job that never got a handle to the queue, keeping
// its place (a daemon died between claim and launch).
func (s *Store) Requeue(seq int64) error {
	return s.write(func(tx *sql.Tx, delta map[job.State]int) error {
		res, err := tx.Exec(`UPDATE jobs SET state = 'pending', started = NULL, pid = NULL WHERE seq = ? AND state = 'running' AND handle IS NULL`, seq)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			delta[job.Running]--
			delta[job.Pending]++
		}
		return nil
	})
}

// End records how a running job ended, then trims the finished history to
// keep entries (Scrapyd's finished_to_keep; 0 keeps none, as its
// SqliteJobStorage does).
func (s *Store) End(seq int64, ended time.Time, exit *int, outcome job.Outcome, stats string, keep int) error {
	return s.write(func(tx *sql.Tx, delta map[job.State]int) error {
		res, err := tx.Exec(`UPDATE jobs SET state = 'finished', ended = ?, exit_code = ?, outcome = ?, stats = ? WHERE seq = ? AND state = 'running'`,
			ended.UnixNano(), exit, string(outcome), nullString(stats), seq)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil // already ended (a second report of the same end)
		}
		delta[job.Running]--
		delta[job.Finished]++
		// Before the trim, which may delete the row (finished_to_keep = 0).
		if err := s.addEvent(tx, EventFinished, seq, "ended", time.Time{}); err != nil {
			return err
		}
		return trim(tx, delta, keep, s.counts[job.Finished]+delta[job.Finished])
	})
}

// SetStats replaces a finished job's stats (the log counts counted after
// its end are added to them); a job no longer finished or kept is left alone.
func (s *Store) SetStats(seq int64, stats string) error {
	return s.exec(`UPDATE jobs SET stats = ? WHERE seq = ? AND state = 'finished'`, nullString(stats), seq)
}

func trim(tx *sql.Tx, delta map[job.State]int, keep, have int) error {
	if have <= keep {
		return nil
	}
	res, err := tx.Exec(`DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE state = 'finished' ORDER BY `+finishedOrder+` LIMIT -1 OFFSET ?)`, keep)
	if err != nil {
		return err
	}
	n, _ := res.RowsAffected()
	delta[job.Finished] -= int(n)
	return nil
}

// Trim applies a new finished_to_keep at once (a live config change).
func (s *Store) Trim(keep int) error {
	return s.write(func(tx *sql.Tx, delta map[job.State]int) error {
		return trim(tx, delta, keep, s.counts[job.Finished])
	})
}

// CancelPending removes every pending job with this id in this project and
// says how many there were. Each gets its finished event (outcome
// cancelled), though it leaves no history, as in Scrapyd: whoever saw it
// scheduled learns that it will never run.
func (s *Store) CancelPending(project, id string) (int, error) {
	var n int64
	now := time.Now()
	err := s.write(func(tx *sql.Tx, delta map[job.State]int) error {
		rows, err := tx.Query(`SELECT seq FROM jobs WHERE state = 'pending' AND project = ? AND id = ? ORDER BY seq`, project, id)
		if err != nil {
			return err
		}
		var seqs []int64
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				rows.Close()
				return err
			}
			seqs = append(seqs, seq)
		}
		rows.Close()
		for _, seq := range seqs {
			if _, err := tx.Exec(`UPDATE jobs SET outcome = 'cancelled', cancelled = 1, ended = ? WHERE seq = ?`, now.UnixNano(), seq); err != nil {
				return err
			}
			if err := s.addEvent(tx, EventFinished, seq, "", now); err != nil {
				return err
			}
		}
		res, err := tx.Exec(`DELETE FROM jobs WHERE state = 'pending' AND project = ? AND id = ?`, project, id)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		delta[job.Pending] -= int(n)
		return nil
	})
	return int(n), err
}

// MarkCancelled records that a cancel was sent to a running job and says
// whether one had been sent before (then the next signal escalates).
func (s *Store) MarkCancelled(seq int64) (before bool, err error) {
	err = s.write(func(tx *sql.Tx, _ map[job.State]int) error {
		var c int
		if err := tx.QueryRow(`SELECT cancelled FROM jobs WHERE seq = ?`, seq).Scan(&c); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		before = c != 0
		_, err := tx.Exec(`UPDATE jobs SET cancelled = 1 WHERE seq = ?`, seq)
		return err
	})
	return before, err
}

func (s *Store) exec(query string, args ...any) error {
	return s.write(func(tx *sql.Tx, _ map[job.State]int) error {
		_, err := tx.Exec(query, args...)
		return err
	})
}

// Filter narrows a listing.
type Filter struct {
	Project string // "" means every project
	Spider  string
	Limit   int // 0 means no limit
	Offset  int
	// Node keeps the jobs one node claimed ("" every job). Only the
	// cluster's store (pgstore) has nodes; the single-node stores ignore it.
	Node string
}

// orders are the listings' orders (Scrapyd's): pending in queue order,
// running in start order, finished newest first. Each is an index's.
var orders = map[job.State]string{
	job.Pending:  "priority DESC, seq",
	job.Running:  "started, seq",
	job.Finished: finishedOrder,
}

// query selects the jobs in a state that f keeps, in the state's order.
// The state is written in the SQL, not bound: SQLite uses a partial index
// (WHERE state = 'finished') only for a query that names its value.
func (f Filter) query(state job.State) (string, []any) {
	q := `SELECT ` + columns + ` FROM jobs WHERE state = '` + string(state) + `'`
	var args []any
	if f.Project != "" {
		q += ` AND project = ?`
		args = append(args, f.Project)
	}
	if f.Spider != "" {
		q += ` AND spider = ?`
		args = append(args, f.Spider)
	}
	q += ` ORDER BY ` + orders[state]
	if f.Limit > 0 || f.Offset > 0 {
		limit := f.Limit
		if limit <= 0 {
			limit = -1
		}
		q += ` LIMIT ? OFFSET ?`
		args = append(args, limit, f.Offset)
	}
	return q, args
}

// querier is what List and Snapshot read through: the database, or one
// read transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func list(ctx context.Context, q querier, state job.State, f Filter) ([]job.Job, error) {
	query, args := f.query(state)
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s jobs: %w", state, err)
	}
	jobs, err := scanJobs(rows)
	if err != nil {
		return nil, fmt.Errorf("list %s jobs: %w", state, err)
	}
	return jobs, nil
}

// List returns the jobs in a state that f keeps, in the state's order
// (pending in queue order, running in start order, finished newest first).
func (s *Store) List(ctx context.Context, state job.State, f Filter) ([]job.Job, error) {
	s.mu.Lock()
	n := s.counts[state]
	s.mu.Unlock()
	if n == 0 {
		return nil, nil
	}
	return list(ctx, s.db, state, f)
}

// Snapshot lists the states in want as of one moment, so that a job that
// starts or ends meanwhile is never shown twice or not at all: f narrows
// pending and running, finished the history (its page). A state with no
// job needs no query, and one query is one moment by itself; for more, a
// read transaction's WAL snapshot is taken under the write lock, together
// with the counts, and the queries then run without blocking writers.
func (s *Store) Snapshot(ctx context.Context, f, finished Filter, want map[job.State]bool) (pending, running, done []job.Job, err error) {
	type section struct {
		state job.State
		f     Filter
		out   *[]job.Job
	}
	// todo is the sections to query; s.mu held.
	todo := func() []section {
		var out []section
		for _, sec := range []section{{job.Pending, f, &pending}, {job.Running, f, &running}, {job.Finished, finished, &done}} {
			if want[sec.state] && s.counts[sec.state] > 0 {
				out = append(out, sec)
			}
		}
		return out
	}
	s.mu.Lock()
	secs := todo()
	s.mu.Unlock()
	var q querier = s.db
	if len(secs) > 1 {
		tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("snapshot: %w", err)
		}
		defer tx.Rollback()
		s.mu.Lock()
		// Any read starts the WAL snapshot; none can commit while s.mu is
		// held, so the counts are the snapshot's too.
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM jobs LIMIT 1`).Scan(&one)
		secs = todo()
		s.mu.Unlock()
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, nil, nil, fmt.Errorf("snapshot: %w", err)
		}
		q = tx
	}
	for _, sec := range secs {
		if *sec.out, err = list(ctx, q, sec.state, sec.f); err != nil {
			return nil, nil, nil, fmt.Errorf("snapshot: %w", err)
		}
	}
	return pending, running, done, nil
}

// Find returns the job with this id the way status.json searches: finished
// (newest first), then running, then pending. project "" matches any.
func (s *Store) Find(ctx context.Context, project, id string) (*job.Job, error) {
	q := `SELECT ` + columns + ` FROM jobs WHERE id = ?`
	args := []any{id}
	if project != "" {
		q += ` AND project = ?`
		args = append(args, project)
	}
	q += ` ORDER BY CASE state WHEN 'finished' THEN 0 WHEN 'running' THEN 1 ELSE 2 END, ended DESC, seq DESC LIMIT 1`
	return s.one(ctx, id, q, args...)
}

// one runs a query for at most one job; ErrNotFound when there is none.
func (s *Store) one(ctx context.Context, id, q string, args ...any) (*job.Job, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("find job %s: %w", id, err)
	}
	list, err := scanJobs(rows)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, ErrNotFound
	}
	return &list[0], nil
}

// IsRunning reports whether a job with this id is running.
func (s *Store) IsRunning(ctx context.Context, id string) bool {
	var one int
	return s.db.QueryRowContext(ctx, `SELECT 1 FROM jobs WHERE id = ? AND state = 'running' LIMIT 1`, id).Scan(&one) == nil
}

// Spiders returns the cached spider list of a project version.
func (s *Store) Spiders(ctx context.Context, project, version string) ([]string, bool, error) {
	var raw string
	err := s.db.QueryRowContext(ctx, `SELECT names FROM spiders WHERE project = ? AND version = ?`, project, version).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("spider cache: %w", err)
	}
	var names []string
	if err := json.Unmarshal([]byte(raw), &names); err != nil {
		return nil, false, fmt.Errorf("spider cache: %w", err)
	}
	return names, true, nil
}

// SetSpiders caches a project version's spider list.
func (s *Store) SetSpiders(project, version string, names []string) error {
	raw, _ := json.Marshal(names)
	return s.exec(`INSERT INTO spiders (project, version, names) VALUES (?, ?, ?)
		ON CONFLICT (project, version) DO UPDATE SET names = excluded.names`, project, version, string(raw))
}

// ForgetSpiders drops the cached lists of one version, or of every version
// when version is "".
func (s *Store) ForgetSpiders(project, version string) error {
	if version == "" {
		return s.exec(`DELETE FROM spiders WHERE project = ?`, project)
	}
	return s.exec(`DELETE FROM spiders WHERE project = ? AND version = ?`, project, version)
}

// CancelRequest is a cancel another node asked for a crawl this node runs
// (cluster mode): the signal to send, and how many requests the job has
// had, which the delivery records.
type CancelRequest struct {
	Seq      int64
	Signal   syscall.Signal
	Requests int
}

// SpiderList is one project version's cached spider list.
type SpiderList struct {
	Project, Version string
	Names            []string
}

// SpiderLists returns the whole spider cache (a node's store moving into a
// cluster's database: `scrapyd cluster import`).
func (s *Store) SpiderLists(ctx context.Context) ([]SpiderList, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT project, version, names FROM spiders ORDER BY project, version`)
	if err != nil {
		return nil, fmt.Errorf("spider cache: %w", err)
	}
	defer rows.Close()
	var out []SpiderList
	for rows.Next() {
		var l SpiderList
		var raw string
		if err := rows.Scan(&l.Project, &l.Version, &raw); err != nil {
			return nil, fmt.Errorf("spider cache: %w", err)
		}
		if err := json.Unmarshal([]byte(raw), &l.Names); err != nil {
			return nil, fmt.Errorf("spider cache: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}
