package dispatch

import (
	"context"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Jobs is the job store as the dispatcher uses it: store.Store on SQLite,
// or any store that passes appliance/store/storetest. Each call is one
// atomic change; Find fails with store.ErrNotFound, MarkCancelled too when
// no job has the seq.
type Jobs interface {
	List(ctx context.Context, state job.State, f store.Filter) ([]job.Job, error)
	// Claim moves the next pending job to running; nil when none is pending.
	Claim(now time.Time) (*job.Job, error)
	Started(seq int64, handle string, pid int) error
	Requeue(seq int64) error
	End(seq int64, ended time.Time, exit *int, outcome job.Outcome, stats string, keep int) error
	Find(ctx context.Context, project, id string) (*job.Job, error)
	CancelPending(project, id string) (int, error)
	MarkCancelled(seq int64) (before bool, err error)
}

// Eggs is the egg store as the dispatcher uses it: egg.Store on disk, or
// any store that passes appliance/egg/eggtest. Find matches a version as
// uploaded or by its egg.Sanitize stem, "" being the latest, and fails with
// egg.ErrNotFound; the version's Path is a file the crawl reads.
type Eggs interface {
	Find(project, version string) (egg.Version, error)
}
