package dispatch

import (
	"context"
	"syscall"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
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
	Claim(now time.Time, caps store.Caps) (*job.Job, error)
	// Launching stores the handle (or Starting mark) before a start,
	// Started the launched crawl's handle (and its started event).
	Launching(seq int64, handle string) error
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

// Caps are cfg's [project:NAME] slot caps as the store's claim takes them.
func Caps(cfg *config.Config) store.Caps {
	if len(cfg.Caps) == 0 {
		return nil
	}
	out := make(store.Caps, len(cfg.Caps))
	for p, c := range cfg.Caps {
		out[p] = store.Cap{MaxProc: c.MaxProc, SpiderMaxProc: c.SpiderMaxProc}
	}
	return out
}

// Remote is how a cluster's nodes cancel each other's crawls through the
// database (pgstore's node view); nil on a single node. RequestCancel asks
// the nodes running a project's job id, but the jobs in skip, to signal
// their crawls (sig, or SIGKILL for a job asked before) and says how many
// it asked for; CancelRequests lists the requests this node has not
// delivered yet, CancelDelivered records one's delivery.
type Remote interface {
	RequestCancel(project, id string, sig syscall.Signal, skip []int64) (int, error)
	CancelRequests(ctx context.Context) ([]store.CancelRequest, error)
	CancelDelivered(seq int64, requests int) error
}
