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
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, registered as "sqlite"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// ErrDuplicate: a pending or running job already has this id.
var ErrDuplicate = errors.New("a pending or running job already has this id")

// ErrNotFound: no such job.
var ErrNotFound = errors.New("job not found")

// FileName is the database's name inside dbs_dir.
const FileName = "scrapyd.db"

const schema = `
CREATE TABLE IF NOT EXISTS jobs (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT,
	id        TEXT NOT NULL,
	project   TEXT NOT NULL,
	spider    TEXT NOT NULL,
	version   TEXT NOT NULL DEFAULT '',
	settings  TEXT NOT NULL DEFAULT '[]',
	args      TEXT NOT NULL DEFAULT '[]',
	priority  REAL NOT NULL DEFAULT 0,
	state     TEXT NOT NULL,
	scheduled INTEGER NOT NULL,
	started   INTEGER,
	ended     INTEGER,
	pid       INTEGER,
	handle    TEXT,
	exit_code INTEGER,
	outcome   TEXT,
	cancelled INTEGER NOT NULL DEFAULT 0,
	stats     TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(priority DESC, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(ended DESC) WHERE state = 'finished';
CREATE INDEX IF NOT EXISTS jobs_id ON jobs(id);
CREATE TABLE IF NOT EXISTS spiders (
	project TEXT NOT NULL,
	version TEXT NOT NULL,
	names   TEXT NOT NULL,
	PRIMARY KEY (project, version)
);
`

// Store is safe for concurrent use. Writes are serialised by mu (SQLite has
// one writer anyway; serialising here avoids SQLITE_BUSY retries), reads run
// in parallel on WAL snapshots.
type Store struct {
	db *sql.DB

	mu     sync.Mutex
	counts map[job.State]int
	// finished mirrors the finished rows, oldest first (a new one is
	// appended; listings read it backwards). Finished jobs never
	// change, so listjobs.json serves them from memory instead of scanning
	// SQLite (a thousand rows took ~10 ms through database/sql).
	finished []*Finished
}

// Finished is a job of the finished history. A finished job never changes,
// so every listing shares the store's *Finished rather than a copy, and
// what a reader derives from the job can be kept with it (Memo).
type Finished struct {
	job.Job
	memo atomic.Pointer[any]
}

// Memo returns what derive makes of the job, derived on first use and kept
// until the job leaves the history: listjobs.json keeps each job's encoded
// fields here, rather than encoding a thousand jobs on every request. One
// reader owns the memo, so derive must always make the same kind of value;
// two first uses at once may both derive it, and one of the results stays.
func (f *Finished) Memo(derive func() any) any {
	if v := f.memo.Load(); v != nil {
		return *v
	}
	v := derive()
	if !f.memo.CompareAndSwap(nil, &v) {
		return *f.memo.Load()
	}
	return v
}

// Open opens (creating if needed) the database in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	// synchronous=NORMAL in WAL mode survives a daemon crash or kill -9 (the
	// WAL is in the OS's hands once written); only a power loss can drop the
	// last transactions.
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "synchronous(NORMAL)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName)+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(0)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{db: db, counts: map[job.State]int{}}
	rows, err := db.Query(`SELECT state, COUNT(*) FROM jobs GROUP BY state`)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			db.Close()
			return nil, fmt.Errorf("open store: %w", err)
		}
		s.counts[job.State(st)] = n
	}
	if err := rows.Err(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	frows, err := db.Query(`SELECT ` + columns + ` FROM jobs WHERE state = 'finished' ORDER BY ended, seq`)
	var finished []job.Job
	if err == nil {
		finished, err = scanJobs(frows)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.finished = make([]*Finished, len(finished))
	for i, j := range finished {
		s.finished[i] = &Finished{Job: j}
	}
	return s, nil
}

// finishedOrder is newest first; the in-memory copy and trimming use it too.
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
	return nil
}

// Enqueue adds a pending job. Client-chosen ids must not collide with a
// pending or running job: they name the crawl's log file and unit.
func (s *Store) Enqueue(spec job.Spec, now time.Time) (job.Job, error) {
	settings, _ := json.Marshal(toPairs(spec.Settings))
	args, _ := json.Marshal(toPairs(spec.Args))
	j := job.Job{Spec: spec, State: job.Pending, Scheduled: now}
	err := s.write(func(tx *sql.Tx, delta map[job.State]int) error {
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM jobs WHERE id = ? AND state != 'finished'`, spec.ID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrDuplicate
		}
		res, err := tx.Exec(`INSERT INTO jobs (id, project, spider, version, settings, args, priority, state, scheduled)
			VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)`,
			spec.ID, spec.Project, spec.Spider, spec.Version, string(settings), string(args), spec.Priority, now.UnixNano())
		if err != nil {
			return err
		}
		j.Seq, err = res.LastInsertId()
		delta[job.Pending]++
		return err
	})
	if err != nil {
		return job.Job{}, fmt.Errorf("enqueue %s: %w", spec.ID, err)
	}
	return j, nil
}

// Claim moves the next pending job (highest priority, then first scheduled,
// across all projects) to running, without a handle yet. It returns nil when
// nothing is pending.
func (s *Store) Claim(now time.Time) (*job.Job, error) {
	var j *job.Job
	err := s.write(func(tx *sql.Tx, delta map[job.State]int) error {
		rows, err := tx.Query(`SELECT ` + columns + ` FROM jobs WHERE state = 'pending' ORDER BY priority DESC, seq LIMIT 1`)
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

// Started records the launch handle of a claimed job. Until it is stored a
// restarted daemon cannot find the crawl, so the dispatcher calls it right
// after the launcher returns.
func (s *Store) Started(seq int64, handle string, pid int) error {
	return s.exec(`UPDATE jobs SET handle = ?, pid = ? WHERE seq = ?`, handle, nullInt(pid), seq)
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
	var done []job.Job
	err := s.write(func(tx *sql.Tx, delta map[job.State]int) error {
		res, err := tx.Exec(`UPDATE jobs SET state = 'finished', ended = ?, exit_code = ?, outcome = ?, stats = ? WHERE seq = ? AND state = 'running'`,
			ended.UnixNano(), exit, string(outcome), nullString(stats), seq)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil // already ended (a second report of the same end)
		}
		rows, err := tx.Query(`SELECT `+columns+` FROM jobs WHERE seq = ?`, seq)
		if err != nil {
			return err
		}
		if done, err = scanJobs(rows); err != nil {
			return err
		}
		delta[job.Running]--
		delta[job.Finished]++
		return trim(tx, delta, keep, s.counts[job.Finished]+delta[job.Finished])
	})
	if err == nil && len(done) == 1 {
		s.mu.Lock()
		s.addFinished(done[0], keep)
		s.mu.Unlock()
	}
	return err
}

// addFinished inserts j into the oldest-first copy (almost always at the
// end) and drops the oldest beyond keep; s.mu held.
func (s *Store) addFinished(j job.Job, keep int) {
	i := sort.Search(len(s.finished), func(i int) bool {
		f := s.finished[i]
		return f.Ended.After(j.Ended) || f.Ended.Equal(j.Ended) && f.Seq > j.Seq
	})
	s.finished = slices.Insert(s.finished, i, &Finished{Job: j})
	s.keepNewest(keep)
}

// keepNewest drops the oldest finished jobs beyond keep; s.mu held.
func (s *Store) keepNewest(keep int) {
	if extra := len(s.finished) - keep; extra > 0 {
		// Reslicing is O(1); the dropped head is freed when append next
		// reallocates the array.
		clear(s.finished[:extra])
		s.finished = s.finished[extra:]
	}
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
	err := s.write(func(tx *sql.Tx, delta map[job.State]int) error {
		return trim(tx, delta, keep, s.counts[job.Finished])
	})
	if err == nil {
		s.mu.Lock()
		s.keepNewest(keep)
		s.mu.Unlock()
	}
	return err
}

// CancelPending removes every pending job with this id in this project and
// says how many there were.
func (s *Store) CancelPending(project, id string) (int, error) {
	var n int64
	err := s.write(func(tx *sql.Tx, delta map[job.State]int) error {
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
}

func (f Filter) where(state job.State) (string, []any) {
	w := []string{"state = ?"}
	args := []any{string(state)}
	if f.Project != "" {
		w = append(w, "project = ?")
		args = append(args, f.Project)
	}
	if f.Spider != "" {
		w = append(w, "spider = ?")
		args = append(args, f.Spider)
	}
	return strings.Join(w, " AND "), args
}

func (f Filter) page() string {
	if f.Limit <= 0 && f.Offset <= 0 {
		return ""
	}
	limit := f.Limit
	if limit <= 0 {
		limit = -1
	}
	return fmt.Sprintf(" LIMIT %d OFFSET %d", limit, f.Offset)
}

// List returns jobs in a state: pending in queue order, running in start
// order, finished newest first (Scrapyd's orders).
func (s *Store) List(ctx context.Context, state job.State, f Filter) ([]job.Job, error) {
	if state == job.Finished {
		var out []job.Job
		for _, j := range s.listFinished(f) {
			out = append(out, j.Job)
		}
		return out, nil
	}
	if p, r, _ := s.Counts(); state == job.Pending && p == 0 || state == job.Running && r == 0 {
		return nil, nil
	}
	order := map[job.State]string{
		job.Pending: "priority DESC, seq",
		job.Running: "started, seq",
	}[state]
	where, args := f.where(state)
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM jobs WHERE `+where+` ORDER BY `+order+f.page(), args...)
	if err != nil {
		return nil, fmt.Errorf("list %s jobs: %w", state, err)
	}
	return scanJobs(rows)
}

// Snapshot lists the three states as of one moment, so that a job that
// starts or ends meanwhile is never shown twice or not at all. The read
// transaction's WAL snapshot is taken under the write lock, together with
// the finished jobs; the queries then run without blocking writers. Only
// states in want are listed. The finished jobs are shared: read only.
func (s *Store) Snapshot(ctx context.Context, f, finished Filter, want map[job.State]bool) (pending, running []job.Job, done []*Finished, err error) {
	// With nothing pending or running (an idle daemon, or only finished
	// jobs wanted) the history in memory is the whole answer, and SQLite
	// is not asked at all.
	s.mu.Lock()
	if !(want[job.Pending] && s.counts[job.Pending] > 0 || want[job.Running] && s.counts[job.Running] > 0) {
		if want[job.Finished] {
			done = s.listFinishedLocked(finished)
		}
		s.mu.Unlock()
		return nil, nil, done, nil
	}
	s.mu.Unlock()
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("snapshot: %w", err)
	}
	defer tx.Rollback()
	s.mu.Lock()
	// Any read starts the WAL snapshot; none can commit while s.mu is held,
	// so the counts are the snapshot's too.
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM jobs LIMIT 1`).Scan(&one)
	if want[job.Finished] {
		done = s.listFinishedLocked(finished)
	}
	nPending, nRunning := s.counts[job.Pending], s.counts[job.Running]
	s.mu.Unlock()
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, nil, nil, fmt.Errorf("snapshot: %w", err)
	}
	for _, sec := range []struct {
		state job.State
		n     int // in the snapshot: a state with none needs no query
		order string
		out   *[]job.Job
	}{{job.Pending, nPending, "priority DESC, seq", &pending}, {job.Running, nRunning, "started, seq", &running}} {
		if !want[sec.state] || sec.n == 0 {
			continue
		}
		where, args := f.where(sec.state)
		rows, err := tx.QueryContext(ctx, `SELECT `+columns+` FROM jobs WHERE `+where+` ORDER BY `+sec.order, args...)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("snapshot: %w", err)
		}
		if *sec.out, err = scanJobs(rows); err != nil {
			return nil, nil, nil, fmt.Errorf("snapshot: %w", err)
		}
	}
	return pending, running, done, nil
}

func (s *Store) listFinished(f Filter) []*Finished {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listFinishedLocked(f)
}

// listFinishedLocked pages the finished jobs, newest first; s.mu held.
func (s *Store) listFinishedLocked(f Filter) []*Finished {
	n := max(len(s.finished)-f.Offset, 0)
	if f.Limit > 0 {
		n = min(n, f.Limit)
	}
	out := make([]*Finished, 0, n) // exact when unfiltered, an upper bound otherwise
	skip := f.Offset
	for i := len(s.finished) - 1; i >= 0; i-- {
		j := s.finished[i]
		if f.Project != "" && j.Project != f.Project || f.Spider != "" && j.Spider != f.Spider {
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
		out = append(out, j)
	}
	return out
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
