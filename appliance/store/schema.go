package store

import (
	"database/sql"
	"errors"
	"fmt"
)

// ErrNewerSchema: the database was written by a newer release, whose
// schema this one cannot know; it is left untouched.
var ErrNewerSchema = errors.New("database written by a newer release")

// migrations[i] takes the schema from version i to version i+1; the version
// is the database's PRAGMA user_version. A released migration is never
// edited: a change to the schema is a new one at the end.
var migrations = []string{
	// 1: the schema of the releases before versions, exactly. They made it
	// with IF NOT EXISTS and left user_version at 0, so on their databases
	// this creates nothing and only the version is recorded.
	`CREATE TABLE IF NOT EXISTS jobs (
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
);`,
	// 2: the finished history is read from disk, a page at a time, in the
	// listings' order (newest first) with or without a project or spider
	// (issue 14 point 5); the running jobs in start order without a scan
	// of the history.
	`DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs(ended DESC, seq DESC) WHERE state = 'finished';
CREATE INDEX jobs_finished_project ON jobs(project, ended DESC, seq DESC) WHERE state = 'finished';
CREATE INDEX jobs_finished_spider ON jobs(spider, ended DESC, seq DESC) WHERE state = 'finished';
CREATE INDEX jobs_running ON jobs(started, seq) WHERE state = 'running';`,
	// 3: job events (issue 17 point 3), written in the same transaction
	// as the state change they record, and each consumer's delivery cursor
	// (a webhook URL's last delivered event), so that a restart drops none.
	// AUTOINCREMENT: an event ID is never reused, even after a trim.
	`CREATE TABLE events (
	event_id  INTEGER PRIMARY KEY AUTOINCREMENT,
	type      TEXT NOT NULL,
	time      INTEGER NOT NULL,
	seq       INTEGER NOT NULL,
	id        TEXT NOT NULL,
	project   TEXT NOT NULL,
	spider    TEXT NOT NULL,
	version   TEXT NOT NULL,
	priority  REAL NOT NULL,
	scheduled INTEGER NOT NULL,
	started   INTEGER,
	ended     INTEGER,
	pid       INTEGER,
	exit_code INTEGER,
	outcome   TEXT,
	cancelled INTEGER NOT NULL,
	stats     TEXT
);
CREATE TABLE event_cursors (
	name      TEXT PRIMARY KEY,
	delivered INTEGER NOT NULL
);`,
	// 4: recurring schedules (issue 16). A run is an ordinary job that
	// names its schedule, the time it was due and its retry number; the
	// schedule keeps its definition as JSON (it is read whole, never
	// queried by its parts) beside the state the scheduler keeps.
	`ALTER TABLE jobs ADD COLUMN schedule TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN due INTEGER;
ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_schedule ON jobs(schedule, seq) WHERE schedule != '';
CREATE TABLE schedules (
	id            TEXT PRIMARY KEY,
	project       TEXT NOT NULL,
	spider        TEXT NOT NULL,
	definition    TEXT NOT NULL,
	created       INTEGER NOT NULL,
	next_run      INTEGER,
	last_run      INTEGER,
	last_job      TEXT NOT NULL DEFAULT '',
	paused        TEXT NOT NULL DEFAULT '',
	retry_at      INTEGER,
	retry_attempt INTEGER NOT NULL DEFAULT 0,
	queued        INTEGER NOT NULL DEFAULT 0
);`,
	// 5: each spider's last success, read at every start (a daemon that
	// sleeps starts often, issue 19): one index probe per spider instead
	// of a scan of the history (LastSuccesses).
	`CREATE INDEX jobs_successes ON jobs(project, spider, ended) WHERE state = 'finished' AND outcome = 'finished';`,
}

// schemaVersion is the schema this release writes.
var schemaVersion = len(migrations)

// migrate brings the database at path to schemaVersion in one transaction:
// a failure leaves it as it was. A newer database is refused, not touched.
func migrate(db *sql.DB, path string) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		return err
	}
	if v > schemaVersion {
		return fmt.Errorf("%s has schema version %d, this release knows up to version %d: %w (run that release, or restore a backup made for this one)",
			path, v, schemaVersion, ErrNewerSchema)
	}
	if v == schemaVersion {
		return nil
	}
	for i := v; i < schemaVersion; i++ {
		if _, err := tx.Exec(migrations[i]); err != nil {
			return fmt.Errorf("schema version %d: %w", i+1, err)
		}
	}
	// The version is in the database header, written with the transaction.
	if _, err := tx.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, schemaVersion)); err != nil {
		return err
	}
	return tx.Commit()
}
