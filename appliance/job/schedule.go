package job

import (
	"errors"
	"time"
)

// Overlap says what a schedule does when it is due while one of its runs
// is still pending or running.
type Overlap string

const (
	// OverlapSkip: no new run (the default).
	OverlapSkip Overlap = "skip"
	// OverlapAllow: a new run anyway.
	OverlapAllow Overlap = "allow"
	// OverlapQueue: one run, made when the current one ends.
	OverlapQueue Overlap = "queue"
)

// ErrRunMade is a store's refusal of a schedule's run for a due time (and
// attempt) it already has a run for: in a cluster, the lead that made it
// may have stopped before it recorded the schedule's next due time, and
// the next lead finds that time due again.
var ErrRunMade = errors.New("the schedule's run for this due time was made already")

// Schedule is a recurring crawl (issue 16): what to run, when (a cron
// expression in a timezone, or a fixed period), and where it stands.
type Schedule struct {
	ID       string
	Project  string
	Spider   string
	Version  string // "" the latest at each run
	Settings []Pair
	Args     []Pair
	Priority float64

	Cron     string        // five fields or a @descriptor; "" when Every is set
	Timezone string        // IANA name for Cron; "" the daemon's
	Every    time.Duration // 0 when Cron is set
	Overlap  Overlap
	Jitter   time.Duration // each run starts up to this much after its time, at random
	Retries  int           // a failed or lost run is run again up to this many times
	// RetryDelay is the wait before the first retry; it doubles with each.
	RetryDelay time.Duration

	Created time.Time
	NextRun time.Time // zero while paused
	LastRun time.Time // when the last run was made (zero: never)
	LastJob string    // the last run's job id
	// Paused is why the schedule does not run ("" when it does): a user's
	// pause, or the project or version it needs having been deleted.
	Paused string
	// RetryAt and RetryAttempt are a retry waiting for its time (zero: none).
	RetryAt      time.Time
	RetryAttempt int
	// Queued: a run was due while another ran and waits for its end
	// (overlap queue).
	Queued bool
}
