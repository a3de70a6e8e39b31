// Package job defines what a crawl job is (its spec, state and outcome) and
// which names are safe to use for projects, versions, spiders and job ids.
// It imports nothing of ours, so every other package can depend on it.
package job

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// State is where a job is in its life. Scrapyd's wire names are kept.
type State string

const (
	Pending  State = "pending"
	Running  State = "running"
	Finished State = "finished"
)

// Outcome says how a finished job ended. Scrapyd never recorded this
// (scrapyd issue #555, "How to determine if a job failed").
type Outcome string

const (
	// OutcomeFinished: the crawl exited 0 without being cancelled.
	OutcomeFinished Outcome = "finished"
	// OutcomeFailed: the crawl exited non-zero, was killed by a signal it
	// was not sent by us, or could not be started at all.
	OutcomeFailed Outcome = "failed"
	// OutcomeCancelled: a user cancelled it while it ran.
	OutcomeCancelled Outcome = "cancelled"
	// OutcomeLost: the daemon could not learn how it ended (an exec-launched
	// crawl whose parent daemon was restarted, so its exit status was reaped
	// by init, not by us).
	OutcomeLost Outcome = "lost"
)

// Spec is everything a user asked for when scheduling: the queued message.
type Spec struct {
	ID       string
	Project  string
	Spider   string
	Version  string // empty: the latest version at launch time
	Settings []Pair // `-s NAME=VALUE`, in order: Scrapy applies them in order
	Args     []Pair // spider arguments `-a name=value`, in the order the client sent them
	Priority float64
	// Schedule is the id of the recurring schedule that made this run ("":
	// none), Due the time the run was meant to start, and Attempt its
	// retry number (0: the first try).
	Schedule string
	Due      time.Time
	Attempt  int
}

// Pair is one setting or spider argument.
type Pair struct{ Name, Value string }

// Job is a Spec plus what happened to it.
type Job struct {
	Spec
	Seq       int64 // global schedule order; ties of priority run first-scheduled first
	State     State
	Scheduled time.Time
	Started   time.Time // zero while pending
	Ended     time.Time // zero unless finished
	PID       int       // 0 when unknown
	Handle    string    // the launcher's serialised handle, stored before the job counts as running
	ExitCode  *int      // nil when unknown
	Outcome   Outcome   // empty unless finished
	Cancelled bool      // a cancel was requested while running (the next cancel escalates)
	Stats     string    // last known crawl stats as JSON (from the crawl web service), may be empty
	// Node is the node that claimed the job, in cluster mode (issue 15):
	// the one that runs or ran its crawl. "" while pending, and always
	// with the single-node store.
	Node string
	// Items: in cluster mode, its node found its items file when the crawl
	// ended, so that every node links it (the file stays on that node,
	// and other nodes forward requests for it).
	Items bool
}

// NewID returns a fresh job id: 32 lowercase hex characters, the shape
// Scrapyd's uuid1().hex ids have and that clients' regexes expect.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("job: no randomness: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}
