package service

import (
	"context"
	"io"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Jobs is the job store as the service uses it: store.Store on SQLite, or
// any store that passes appliance/store/storetest. Enqueue fails with
// store.ErrDuplicate when a pending or running job has the id; Find with
// store.ErrNotFound when no job has it.
type Jobs interface {
	Counts() (pending, running, finished int)
	Enqueue(spec job.Spec, now time.Time) (job.Job, error)
	Find(ctx context.Context, project, id string) (*job.Job, error)
	// Snapshot lists the states in want as of one moment: f narrows
	// pending and running, finished pages the history.
	Snapshot(ctx context.Context, f, finished store.Filter, want map[job.State]bool) (pending, running, done []job.Job, err error)
	Spiders(ctx context.Context, project, version string) (names []string, cached bool, err error)
	SetSpiders(project, version string, names []string) error
	ForgetSpiders(project, version string) error
	// ScheduleRuns returns a recurring schedule's runs, newest first.
	ScheduleRuns(ctx context.Context, id string, limit int) ([]job.Job, error)
	// RunningCounts counts the running jobs of each project and spider.
	RunningCounts(ctx context.Context) (store.Running, error)
}

// Eggs is the egg store as the service uses it: egg.Store on disk, or any
// store that passes appliance/egg/eggtest. An unknown project has no
// versions (not an error); Find, Delete and DeleteProject fail with
// egg.ErrNotFound.
type Eggs interface {
	Projects() ([]string, error)
	Versions(project string) ([]egg.Version, error)
	// Find matches a version as uploaded or by its egg.Sanitize stem; ""
	// is the latest. Its Path is a file holding the egg: a cluster's store
	// fetches it (and builds the version's environment) here, so lookups
	// that need no file use Versions and egg.Match.
	Find(project, version string) (egg.Version, error)
	// Stage writes an egg read from r to disk, not yet visible.
	Stage(project string, r io.Reader) (egg.Staged, error)
	Delete(project, version string) error
	DeleteProject(project string) error
}
