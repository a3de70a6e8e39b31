// Package pgstore keeps the job store in PostgreSQL (issue 15), so that
// several daemons can share one queue and one history. It passes the same
// contract as the SQLite store (appliance/store/storetest) and adds what
// sharing needs: a schedule commits its job and a NOTIFY together, Listen
// hears them, a claim skips rows another node holds (FOR UPDATE SKIP
// LOCKED), and a duplicate job id is refused by a unique index.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Channel is the NOTIFY channel a change to the queue, and every job
// event, is announced on.
const Channel = "scrapyd_jobs"

// claimLock serialises claims that apply slot caps across nodes: a cap
// counts the whole cluster's running jobs, which two claims at once would
// both read below it.
const claimLock = 0x5c7a9d16

// Options are how a store is opened.
type Options struct {
	// Password, when not empty, replaces the URL's (read from the root-only
	// database_password_file); without either, ~/.pgpass or PGPASSFILE is
	// read by the driver.
	Password string
	// Node is recorded on the jobs this node claims.
	Node string
	// ServerClock: the times the callers pass are replaced by the
	// database's (now()), so that nodes whose clocks differ still order
	// and date jobs by one clock. The contract tests pass it false: they
	// check the times they give.
	ServerClock bool
	// What Register records of this node. Lease is node_lease (30 s when
	// 0); LostJobs is lost_jobs (LostMark or LostRequeue), what reaping
	// does to this node's running jobs should it die.
	Lease        time.Duration
	LostJobs     string
	AdvertiseURL string
	Version      string
	MaxProc      int
}

// Store is a job store on PostgreSQL; safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	cfg  *pgxpool.Config
	opts Options

	mu      sync.Mutex
	counts  [3]int // the last counts read: Counts' answer while the database is away
	onEvent func(last int64)

	// The node's registration (nodes.go): its epoch (0: not registered,
	// writes not fenced), and its own connection, which holds the node's
	// lock and renews its lease.
	epoch    atomic.Int64
	nodeMu   sync.Mutex
	nodeConn *pgx.Conn
	// registered is when the last registration began (monotonic): its
	// lease ends no earlier than a lease later.
	registered time.Time
}

// Open connects to the database at url, migrates it and returns the store.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message can quote the URL, password included.
		return nil, errors.New("open database: the database URL cannot be parsed")
	}
	if opts.Password != "" {
		cfg.ConnConfig.Password = opts.Password
	}
	if opts.Lease > 0 {
		// A node cut off from the database in the middle of a
		// transaction holds its row locks until the server gives up on
		// it: within a lease, so that reaping it is not held up.
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = fmt.Sprint(max(opts.Lease.Milliseconds(), 1000))
	}
	if cfg.MaxConns < 8 {
		cfg.MaxConns = 8
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	s := &Store{pool: pool, cfg: cfg, opts: opts}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open database %s: %w", Redact(url), err)
	}
	return s, nil
}

// Redact is url without its password, for messages.
func Redact(url string) string {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return "(unparsable URL)"
	}
	return fmt.Sprintf("postgresql://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// Close closes the connections. A registered node is marked stopped
// cleanly first: its crawls keep running, for its next start to adopt.
func (s *Store) Close() error {
	s.stop()
	s.pool.Close()
	return nil
}

// ReadPasswordFile reads database_password_file: the first line, which
// must be readable by its owner only (it is a credential).
func ReadPasswordFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("readable by others (mode %v): chmod 600 it", fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	return strings.TrimRight(line, "\r"), nil
}

// at is a caller's time as bound: nil (the database's now()) with
// ServerClock or when zero. Every time column is written COALESCE($n, now()).
func (s *Store) at(t time.Time) any {
	if s.opts.ServerClock || t.IsZero() {
		return nil
	}
	return t
}

// tx is one writing transaction. Its first statement locks the event
// counter when events may be written, so that events commit in ID order
// (a reader that has seen ID n has seen every event before it, as with
// SQLite's one writer) and no transaction waits for the counter while it
// holds a row another waits for.
type tx struct {
	pgx.Tx
	ctx       context.Context
	node      string // this node's name, which its events record
	lastEvent int64  // the counter as locked, then as events were added
	locked    bool
	wrote     bool
	notified  bool
}

// write runs fn in one transaction, bounded by CallBound; events says
// whether fn may add events. After the commit, OnEvent's function hears
// of the last event written.
func (s *Store) write(events bool, fn func(*tx) error) error {
	ctx, cancel := bound(context.Background())
	defer cancel()
	return s.writeCtx(ctx, events, fn)
}

// CallBound bounds each store call the API makes (a schedule, a
// listing): a node cut off from the database (a partition black-holes its
// connections, which neither side can tell from a slow peer) would
// otherwise hold schedule.json until the partition heals. Past it the call
// fails as store.ErrUnavailable, which the API answers in Scrapyd's error
// style; a write whose COMMIT was sent is store.ErrInDoubt as well. It is
// long enough for a loaded database, and for a write waiting behind a
// lock the server gives back within a short lease. An egg's upload and
// its download (AddEgg, EggData) carry megabytes and keep their caller's
// bound.
const CallBound = 10 * time.Second

// bound is ctx bounded by CallBound (an earlier deadline of ctx stays).
func bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, CallBound)
}

// writeCtx is write bounded by ctx only.
func (s *Store) writeCtx(ctx context.Context, events bool, fn func(*tx) error) error {
	var err error
	for try := 0; try < s.staleTries(); try++ {
		if err = s.writeOnce(ctx, events, fn); !pgconn.SafeToRetry(err) {
			break
		}
	}
	return unavailable(err)
}

// staleTries is how many times a write is tried while it fails without
// having reached the database, on a pooled connection the database closed
// when it restarted (the pool pings only connections idle for a second):
// each failed try drops one, so one more than the pool holds is enough.
func (s *Store) staleTries() int { return int(s.cfg.MaxConns) + 1 }

// writeOnce is writeCtx's one try.
func (s *Store) writeOnce(ctx context.Context, events bool, fn func(*tx) error) error {
	var last int64
	var wrote, committing bool
	err := pgx.BeginFunc(ctx, s.pool, func(t pgx.Tx) error {
		w := &tx{Tx: t, ctx: ctx, node: s.opts.Node}
		if events {
			if err := t.QueryRow(ctx, `SELECT last FROM event_counter FOR UPDATE`).Scan(&w.lastEvent); err != nil {
				return err
			}
			w.locked = true
		}
		if err := fn(w); err != nil {
			return err
		}
		if w.wrote {
			if _, err := t.Exec(ctx, `UPDATE event_counter SET last = $1`, w.lastEvent); err != nil {
				return err
			}
			// Other nodes' event readers (/events, metrics) are woken
			// by the announcement too.
			if err := w.notify(); err != nil {
				return err
			}
		}
		last, wrote = w.lastEvent, w.wrote
		committing = true
		return nil
	})
	if err != nil {
		if committing && !pgconn.SafeToRetry(err) && unreachable(err) {
			// The COMMIT may have reached the server.
			return fmt.Errorf("%w: %w", store.ErrInDoubt, err)
		}
		return err
	}
	if wrote {
		s.mu.Lock()
		fn := s.onEvent
		s.mu.Unlock()
		if fn != nil {
			fn(last)
		}
	}
	return nil
}

// exec runs one statement in its own transaction, bounded by CallBound.
func (s *Store) exec(q string, args ...any) error {
	ctx, cancel := bound(context.Background())
	defer cancel()
	return s.execCtx(ctx, q, args...)
}

// execCtx is exec bounded by ctx only.
func (s *Store) execCtx(ctx context.Context, q string, args ...any) error {
	var err error
	for try := 0; try < s.staleTries(); try++ {
		if _, err = s.pool.Exec(ctx, q, args...); !pgconn.SafeToRetry(err) {
			break
		}
	}
	return unavailable(err)
}

// notify announces a change to the queue in the transaction: delivered
// to every listener at its commit, never before, never after a rollback.
// PostgreSQL delivers one announcement per transaction anyway (equal ones
// are folded), so a second call costs nothing, not another round trip: a
// schedule's and an end's own announcement and their events' are one.
func (t *tx) notify() error {
	if t.notified {
		return nil
	}
	_, err := t.Exec(t.ctx, `SELECT pg_notify('`+Channel+`', '')`)
	t.notified = err == nil
	return err
}

// Counts returns how many jobs are pending, running and finished in the
// whole database: the pending and running counted on their partial
// indexes, the finished kept in job_counts. While the database cannot be
// read the last counts are returned.
func (s *Store) Counts() (pending, running, finished int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var c [3]int
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM jobs WHERE state = 'pending'),
		(SELECT count(*) FROM jobs WHERE state = 'running'),
		(SELECT finished FROM job_counts)`).Scan(&c[0], &c[1], &c[2])
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.counts = c
	}
	return s.counts[0], s.counts[1], s.counts[2]
}

// isDuplicate: err is the active-id index refusing a second pending or
// running job with one id.
func isDuplicate(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "jobs_active_id"
}

// isRunMade: err is jobs_schedule_due refusing a second run of a
// schedule for one due time and attempt.
func isRunMade(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "jobs_schedule_due"
}

// Enqueue adds a pending job and announces it (NOTIFY) in the same
// transaction; job.ErrRunMade when it is a schedule's run for a due time
// and attempt that has one.
func (s *Store) Enqueue(spec job.Spec, now time.Time) (job.Job, error) {
	j := job.Job{Spec: spec, State: job.Pending}
	var due any
	if !spec.Due.IsZero() {
		due = spec.Due
	}
	err := s.write(true, func(t *tx) error {
		err := t.QueryRow(t.ctx, `INSERT INTO jobs (id, project, spider, version, settings, args, priority, state, scheduled, schedule, due, attempt)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', COALESCE($8, now()), $9, $10, $11) RETURNING seq, scheduled`,
			spec.ID, spec.Project, spec.Spider, spec.Version, store.EncodePairs(spec.Settings), store.EncodePairs(spec.Args),
			spec.Priority, s.at(now), spec.Schedule, due, spec.Attempt).Scan(&j.Seq, &j.Scheduled)
		if isDuplicate(err) {
			return store.ErrDuplicate
		}
		if isRunMade(err) {
			return job.ErrRunMade
		}
		if err != nil {
			return err
		}
		if err := t.addEvent(store.EventScheduled, j.Seq, "scheduled", nil); err != nil {
			return err
		}
		return t.notify()
	})
	if err != nil {
		return job.Job{}, fmt.Errorf("enqueue %s: %w", spec.ID, err)
	}
	return j, nil
}

// Claim moves the next pending job (highest priority, then first
// scheduled, across all projects and nodes) that caps allow to running.
// Rows another node is claiming are skipped, not waited for.
func (s *Store) Claim(now time.Time, caps store.Caps) (*job.Job, error) {
	var j *job.Job
	err := s.write(false, func(t *tx) error {
		if err := s.fence(t, true); err != nil {
			return err
		}
		q := `SELECT ` + columns + ` FROM jobs WHERE state = 'pending'`
		var args []any
		if !caps.None() {
			if _, err := t.Exec(t.ctx, `SELECT pg_advisory_xact_lock($1)`, claimLock); err != nil {
				return err
			}
			running, err := runningCounts(t.ctx, t)
			if err != nil {
				return err
			}
			projects, spiders := caps.Blocked(running)
			for _, p := range projects {
				args = append(args, p)
				q += fmt.Sprintf(` AND project != $%d`, len(args))
			}
			for _, ps := range spiders {
				args = append(args, ps[0], ps[1])
				q += fmt.Sprintf(` AND NOT (project = $%d AND spider = $%d)`, len(args)-1, len(args))
			}
		}
		rows, err := t.Query(t.ctx, q+` ORDER BY priority DESC, seq LIMIT 1 FOR UPDATE SKIP LOCKED`, args...)
		if err != nil {
			return err
		}
		list, err := scanJobs(rows)
		if err != nil || len(list) == 0 {
			return err
		}
		j = &list[0]
		// clock_timestamp(), not now() (the transaction's start): the
		// start time is when the claim holds the row, so that claims are
		// dated in the order they took their rows, but for the claims in
		// flight at once.
		if err := t.QueryRow(t.ctx, `UPDATE jobs SET state = 'running', started = COALESCE($1, clock_timestamp()), node = $2, epoch = $3 WHERE seq = $4 RETURNING started`,
			s.at(now), s.opts.Node, s.epoch.Load(), j.Seq).Scan(&j.Started); err != nil {
			return err
		}
		j.State = job.Running
		return nil
	})
	if errors.Is(err, errNoLease) {
		return nil, nil // nothing is claimed until the lease is renewed
	}
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return j, nil
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func runningCounts(ctx context.Context, q querier) (store.Running, error) {
	rows, err := q.Query(ctx, `SELECT project, spider, count(*) FROM jobs WHERE state = 'running' GROUP BY project, spider`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := store.Running{}
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

// RunningCounts counts the running jobs of each project and spider.
func (s *Store) RunningCounts(ctx context.Context) (store.Running, error) {
	return runningCounts(ctx, s.pool)
}

// Launching records the handle a claimed job's crawl will have, before it
// is started; no event.
func (s *Store) Launching(seq int64, handle string) error {
	own, args := s.owned(3)
	return s.nodeWrite(false, seq, func(t *tx) (int64, error) {
		tag, err := t.Exec(t.ctx, `UPDATE jobs SET handle = $1, pid = NULL WHERE seq = $2 AND state = 'running'`+own, append([]any{handle, seq}, args...)...)
		return tag.RowsAffected(), err
	}, nil)
}

// nodeWrite runs update, a change to job seq this node claimed, in one
// transaction, fenced: store.ErrFenced when the node was declared dead, or
// the job is no longer its own (update changed no row, and done, if set,
// does not say the row is this node's own earlier write). update adds
// the condition s.owned gives to its statement and says how many rows it
// changed.
func (s *Store) nodeWrite(events bool, seq int64, update func(t *tx) (int64, error), done func(state string) bool) error {
	return s.write(events, func(t *tx) error {
		if err := s.fence(t, false); err != nil {
			return err
		}
		n, err := update(t)
		if err != nil || n > 0 {
			return err
		}
		if done == nil {
			done = func(string) bool { return false }
		}
		return s.fencedJob(t, seq, done)
	})
}

// Started records the launch handle of a claimed job, with its started
// event.
func (s *Store) Started(seq int64, handle string, pid int) error {
	own, args := s.owned(4)
	return s.nodeWrite(true, seq, func(t *tx) (int64, error) {
		tag, err := t.Exec(t.ctx, `UPDATE jobs SET handle = $1, pid = $2 WHERE seq = $3 AND state = 'running'`+own, append([]any{handle, nullInt(pid), seq}, args...)...)
		if err != nil || tag.RowsAffected() != 1 {
			return tag.RowsAffected(), err
		}
		return 1, t.addEvent(store.EventStarted, seq, "started", nil)
	}, nil)
}

// Requeue returns a claimed job that never got a handle to the queue,
// keeping its place, and announces it.
func (s *Store) Requeue(seq int64) error {
	own, args := s.owned(2)
	return s.nodeWrite(false, seq, func(t *tx) (int64, error) {
		tag, err := t.Exec(t.ctx, `UPDATE jobs SET state = 'pending', started = NULL, pid = NULL, node = '', epoch = 0 WHERE seq = $1 AND state = 'running' AND handle IS NULL`+own, append([]any{seq}, args...)...)
		if err != nil || tag.RowsAffected() != 1 {
			return tag.RowsAffected(), err
		}
		return 1, t.notify()
	}, nil)
}

// End records how a running job ended, then trims the finished history to
// keep entries. It announces the end: a slot cap may now let another
// node's claim through.
func (s *Store) End(seq int64, ended time.Time, exit *int, outcome job.Outcome, stats string, keep int) error {
	own, args := s.owned(6)
	// A row this node already finished is a second report of the same end.
	again := func(state string) bool { return state == string(job.Finished) }
	return s.nodeWrite(true, seq, func(t *tx) (int64, error) {
		tag, err := t.Exec(t.ctx, `UPDATE jobs SET state = 'finished', ended = COALESCE($1, now()), exit_code = $2, outcome = $3, stats = $4 WHERE seq = $5 AND state = 'running'`+own,
			append([]any{s.at(ended), exit, string(outcome), nullString(stats), seq}, args...)...)
		if err != nil || tag.RowsAffected() != 1 {
			return tag.RowsAffected(), err
		}
		// Before the trim, which may delete the row.
		if err := t.addEvent(store.EventFinished, seq, "ended", nil); err != nil {
			return 1, err
		}
		if _, err := t.Exec(t.ctx, `UPDATE job_counts SET finished = finished + 1`); err != nil {
			return 1, err
		}
		if err := trim(t, keep); err != nil {
			return 1, err
		}
		return 1, t.notify()
	}, again)
}

// trim deletes the finished jobs after the keep newest, and counts them
// out. The transaction holds the event counter (see write), so that trims
// on several nodes run one at a time.
func trim(t *tx, keep int) error {
	// The count first: the DELETE walks keep rows of the history's index
	// before it finds any to delete, at every crawl's end (10,000 jobs
	// through a cluster that keeps as many ran at 79 jobs/s, with the
	// count first at 203: BenchmarkThreeNodes10000Jobs).
	var have int
	if err := t.QueryRow(t.ctx, `SELECT finished FROM job_counts`).Scan(&have); err != nil || have <= keep {
		return err
	}
	tag, err := t.Exec(t.ctx, `DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE state = 'finished' ORDER BY `+finishedOrder+` OFFSET $1)`, keep)
	if err != nil || tag.RowsAffected() == 0 {
		return err
	}
	_, err = t.Exec(t.ctx, `UPDATE job_counts SET finished = finished - $1`, tag.RowsAffected())
	return err
}

// Trim applies a new finished_to_keep at once. Not bounded by CallBound:
// a finished_to_keep lowered by a reload may delete a long history.
func (s *Store) Trim(keep int) error {
	return s.writeCtx(context.Background(), true, func(t *tx) error { return trim(t, keep) })
}

// SetStats replaces a finished job's stats.
func (s *Store) SetStats(seq int64, stats string) error {
	return s.exec(`UPDATE jobs SET stats = $1 WHERE seq = $2 AND state = 'finished'`, nullString(stats), seq)
}

// CancelPending removes every pending job with this id in this project,
// each with its finished event (outcome cancelled), and says how many.
func (s *Store) CancelPending(project, id string) (int, error) {
	var n int
	err := s.write(true, func(t *tx) error {
		if _, err := t.updateWithEvents(store.EventFinished, "ended", `UPDATE jobs SET outcome = 'cancelled', cancelled = true, ended = now()
			WHERE state = 'pending' AND project = $1 AND id = $2 RETURNING seq`, project, id); err != nil {
			return err
		}
		tag, err := t.Exec(t.ctx, `DELETE FROM jobs WHERE state = 'pending' AND project = $1 AND id = $2`, project, id)
		n = int(tag.RowsAffected())
		return err
	})
	return n, err
}

// MarkCancelled records that a cancel was sent to a running job and says
// whether one had been sent before.
func (s *Store) MarkCancelled(seq int64) (before bool, err error) {
	err = s.write(false, func(t *tx) error {
		err := t.QueryRow(t.ctx, `SELECT cancelled FROM jobs WHERE seq = $1 FOR UPDATE`, seq).Scan(&before)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		_, err = t.Exec(t.ctx, `UPDATE jobs SET cancelled = true WHERE seq = $1`, seq)
		return err
	})
	return before, err
}

// Spiders returns the cached spider list of a project version.
func (s *Store) Spiders(ctx context.Context, project, version string) ([]string, bool, error) {
	var raw string
	err := s.pool.QueryRow(ctx, `SELECT names FROM spiders WHERE project = $1 AND version = $2`, project, version).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("spider cache: %w", unavailable(err))
	}
	names := []string{}
	if err := json.Unmarshal([]byte(raw), &names); err != nil {
		return nil, false, fmt.Errorf("spider cache: %w", err)
	}
	return names, true, nil
}

// SetSpiders caches a project version's spider list.
func (s *Store) SetSpiders(project, version string, names []string) error {
	if names == nil {
		names = []string{}
	}
	raw, _ := json.Marshal(names)
	return s.exec(`INSERT INTO spiders (project, version, names) VALUES ($1, $2, $3)
		ON CONFLICT (project, version) DO UPDATE SET names = excluded.names`, project, version, string(raw))
}

// ForgetSpiders drops the cached lists of one version, or of every version
// when version is "".
func (s *Store) ForgetSpiders(project, version string) error {
	if version == "" {
		return s.exec(`DELETE FROM spiders WHERE project = $1`, project)
	}
	return s.exec(`DELETE FROM spiders WHERE project = $1 AND version = $2`, project, version)
}

// Ping reads the database, for the readiness probe.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Local is the store as one node's dispatcher sees it: the running jobs it
// lists are this node's (Options.Node) only, so that adopting crawls at
// start, and polling their live stats, never touch another node's. The
// queue, the history and every other call are the cluster's.
type Local struct{ *Store }

// Local returns the node's view.
func (s *Store) Local() Local { return Local{s} }

// List lists like Store.List, the running jobs of this node only.
func (l Local) List(ctx context.Context, state job.State, f store.Filter) ([]job.Job, error) {
	node := ""
	if state == job.Running {
		node = l.opts.Node
	}
	return list(ctx, l.pool, state, f, node)
}
