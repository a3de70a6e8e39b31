package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// migrations[i] takes the schema from version i to version i+1, recorded in
// schema_version. A released migration is never edited: a change is a new
// one at the end. PostgreSQL's list is its own (SQLite's starts from the
// releases before versions); version 1 is the SQLite schema's version 4.
var migrations = []string{
	// 1: jobs, spider cache, events, schedules. Times are timestamptz (the
	// database's clock can write them). A job id is unique among pending
	// and running jobs by a partial unique index, so that two nodes
	// scheduling the same id at once cannot both succeed; finished jobs
	// may share an id (ScrapydWeb reuses them).
	`CREATE TABLE jobs (
	seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id        text NOT NULL,
	project   text NOT NULL,
	spider    text NOT NULL,
	version   text NOT NULL DEFAULT '',
	settings  text NOT NULL DEFAULT '[]',
	args      text NOT NULL DEFAULT '[]',
	priority  double precision NOT NULL DEFAULT 0,
	state     text NOT NULL CHECK (state IN ('pending', 'running', 'finished')),
	scheduled timestamptz NOT NULL,
	started   timestamptz,
	ended     timestamptz,
	pid       integer,
	handle    text,
	exit_code integer,
	outcome   text,
	cancelled boolean NOT NULL DEFAULT false,
	stats     text,
	schedule  text NOT NULL DEFAULT '',
	due       timestamptz,
	attempt   integer NOT NULL DEFAULT 0,
	node      text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX jobs_active_id ON jobs (id) WHERE state IN ('pending', 'running');
CREATE INDEX jobs_queue ON jobs (priority DESC, seq) WHERE state = 'pending';
CREATE INDEX jobs_running ON jobs (started, seq) WHERE state = 'running';
CREATE INDEX jobs_finished ON jobs (ended DESC, seq DESC) WHERE state = 'finished';
CREATE INDEX jobs_finished_project ON jobs (project, ended DESC, seq DESC) WHERE state = 'finished';
CREATE INDEX jobs_finished_spider ON jobs (spider, ended DESC, seq DESC) WHERE state = 'finished';
CREATE INDEX jobs_id ON jobs (id);
CREATE INDEX jobs_schedule ON jobs (schedule, seq) WHERE schedule != '';
CREATE TABLE spiders (
	project text NOT NULL,
	version text NOT NULL,
	names   text NOT NULL,
	PRIMARY KEY (project, version)
);
CREATE TABLE events (
	event_id  bigint PRIMARY KEY,
	type      text NOT NULL,
	time      timestamptz NOT NULL,
	seq       bigint NOT NULL,
	id        text NOT NULL,
	project   text NOT NULL,
	spider    text NOT NULL,
	version   text NOT NULL,
	priority  double precision NOT NULL,
	scheduled timestamptz NOT NULL,
	started   timestamptz,
	ended     timestamptz,
	pid       integer,
	exit_code integer,
	outcome   text,
	cancelled boolean NOT NULL,
	stats     text
);
CREATE TABLE event_counter (last bigint NOT NULL);
INSERT INTO event_counter VALUES (0);
CREATE TABLE event_cursors (
	name      text PRIMARY KEY,
	delivered bigint NOT NULL
);
CREATE TABLE schedules (
	id            text PRIMARY KEY,
	project       text NOT NULL,
	spider        text NOT NULL,
	definition    text NOT NULL,
	created       timestamptz NOT NULL,
	next_run      timestamptz,
	last_run      timestamptz,
	last_job      text NOT NULL DEFAULT '',
	paused        text NOT NULL DEFAULT '',
	retry_at      timestamptz,
	retry_attempt integer NOT NULL DEFAULT 0,
	queued        boolean NOT NULL DEFAULT false
);`,
	// 2: the finished jobs' count, kept by the transactions that end and
	// trim jobs: counting a long history at every state change took
	// 170-400 ms at 1,000,000 finished jobs. (Pending and running jobs are
	// few and counted on their partial indexes.)
	`CREATE TABLE job_counts (finished bigint NOT NULL);
INSERT INTO job_counts SELECT count(*) FROM jobs WHERE state = 'finished';`,
	// 3: crawl logs, shipped by the node that runs the crawl so that every
	// node can serve them (issue 15 point 5): how far each job's log is
	// shipped, and its chunks, deflated, keyed by their offset in the log
	// file (a chunk sent again is recognised by it). Both go with their
	// job's row (ON DELETE CASCADE), so a log is kept as long as its job is.
	`CREATE TABLE job_logs (
	seq      bigint PRIMARY KEY REFERENCES jobs (seq) ON DELETE CASCADE,
	node     text NOT NULL,
	size     bigint NOT NULL DEFAULT 0,
	capped   boolean NOT NULL DEFAULT false,
	done     boolean NOT NULL DEFAULT false,
	modified timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_logs_unfinished ON job_logs (seq) WHERE NOT done;
CREATE TABLE job_log_chunks (
	seq  bigint NOT NULL REFERENCES job_logs (seq) ON DELETE CASCADE,
	off  bigint NOT NULL,
	len  integer NOT NULL,
	data bytea NOT NULL,
	PRIMARY KEY (seq, off)
);`,
	// 4: the nodes of the cluster and their leases (every time by the
	// database's clock), and the epoch under which a node claimed each
	// job: a node's write is fenced by its name and epoch, which reaping
	// bumps. renewing_since is when the node's present unbroken run of
	// renewals began (a reaper reaps only what expired while it renewed);
	// lease is kept so that any node reaps by the dead node's own lease,
	// lost_jobs by the dead node's own mode (requeue is safe only from a
	// node that stops its crawls when it cannot renew).
	`CREATE TABLE nodes (
	name           text PRIMARY KEY,
	epoch          bigint NOT NULL,
	lease          interval NOT NULL,
	lease_until    timestamptz NOT NULL,
	renewing_since timestamptz NOT NULL,
	advertise_url  text NOT NULL DEFAULT '',
	max_proc       integer NOT NULL DEFAULT 0,
	version        text NOT NULL DEFAULT '',
	lost_jobs      text NOT NULL DEFAULT 'mark' CHECK (lost_jobs IN ('mark', 'requeue')),
	started        timestamptz NOT NULL,
	renewed        timestamptz NOT NULL,
	stopped        boolean NOT NULL DEFAULT false,
	reaped         boolean NOT NULL DEFAULT false
);
ALTER TABLE jobs ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
CREATE INDEX jobs_node ON jobs (node) WHERE state = 'running';`,
	// 5: cancels across nodes (issue 15 point 6): a cancel.json on one
	// node for a crawl on another counts a request on the job's row with
	// the signal to send (a second cancel's is SIGKILL) and announces it;
	// the crawl's node sends the signal and records how many requests it
	// has delivered. And the cluster's secret, made once by the first node
	// that needs it, which a node presents when it forwards a request
	// about a crawl (its items, its web service) to the crawl's node.
	`ALTER TABLE jobs ADD COLUMN cancel_requests integer NOT NULL DEFAULT 0,
	ADD COLUMN cancels_delivered integer NOT NULL DEFAULT 0,
	ADD COLUMN cancel_signal integer;
CREATE TABLE cluster_secret (
	only_one boolean PRIMARY KEY DEFAULT true CHECK (only_one),
	secret   text NOT NULL
);`,
	// 6: the cluster's eggs (issue 15 point 4). One egg per project and
	// egg.Sanitize stem, as eggs_dir holds one file per stem (an upload of
	// "1_0" replaces "1.0"); version is the name as uploaded. sha256 is
	// what a node's cached copy must hold; env names the Python
	// environment, built on each node from requirements and wheels.
	`CREATE TABLE eggs (
	project      text NOT NULL,
	stem         text NOT NULL,
	version      text NOT NULL,
	data         bytea NOT NULL,
	sha256       text NOT NULL,
	env          text NOT NULL DEFAULT '',
	requirements text NOT NULL DEFAULT '',
	wheels       bytea,
	uploaded     timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (project, stem)
);`,
	// 7: the single nodes' stores imported into the database (`scrapyd
	// cluster import`), so that a second import of one is refused.
	`CREATE TABLE imports (
	node     text PRIMARY KEY,
	imported timestamptz NOT NULL DEFAULT now(),
	jobs     integer NOT NULL
);`,
	// 8: whether a finished crawl left an items file on its node, which
	// that node records at the crawl's end: every node then links the
	// file, and forwards a request for it to the node (issue 15 point 5).
	`ALTER TABLE jobs ADD COLUMN items boolean NOT NULL DEFAULT false;`,
	// 9: each spider's last success, read at every start (LastSuccesses):
	// one index probe per spider, as in SQLite, instead of a scan of the
	// history's rows.
	`CREATE INDEX jobs_successes ON jobs (project, spider, ended) WHERE state = 'finished' AND outcome = 'finished';`,
	// 10: a recurring schedule makes at most one run per due time and
	// attempt, whichever node leads: a lead that stops (killed, cut off)
	// between queueing a run and recording the schedule's next due time
	// leaves that time due for the next lead, which this refuses.
	`CREATE UNIQUE INDEX jobs_schedule_due ON jobs (schedule, due, attempt) WHERE schedule != '' AND due IS NOT NULL;`,
	// 11: the node that recorded each job event: each node's /metrics
	// counts its own (its crawls' starts and ends, the pending jobs
	// cancelled through it, the crawls of the dead nodes it reaped), so
	// that the nodes' counters add up to the cluster's.
	`ALTER TABLE events ADD COLUMN node text NOT NULL DEFAULT '';`,
	// 12: the schedule and attempt of each event's job: in a cluster the
	// lead follows the ends of every node's schedule runs (retries, runs
	// queued behind them), so that it alone writes the schedules' run state.
	`ALTER TABLE events ADD COLUMN schedule text NOT NULL DEFAULT '', ADD COLUMN attempt integer NOT NULL DEFAULT 0;`,
}

// schemaVersion is the schema this release writes.
var schemaVersion = len(migrations)

// migrateLock is the advisory lock key under which nodes migrate: several
// nodes starting at once migrate once, the others wait and find it done.
const migrateLock = 0x5c7a9d15

// migrate brings the database to schemaVersion in one transaction; a
// database from a newer release is refused, untouched.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)`); err != nil {
			return err
		}
		var v int
		err := tx.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v)
		if err == pgx.ErrNoRows {
			if _, err := tx.Exec(ctx, `INSERT INTO schema_version VALUES (0)`); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		if v > schemaVersion {
			return fmt.Errorf("the database has schema version %d, this release knows up to version %d: %w (upgrade this node)",
				v, schemaVersion, store.ErrNewerSchema)
		}
		for i := v; i < schemaVersion; i++ {
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return fmt.Errorf("schema version %d: %w", i+1, err)
			}
		}
		_, err = tx.Exec(ctx, `UPDATE schema_version SET version = $1`, schemaVersion)
		return err
	})
}
