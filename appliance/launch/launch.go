// Package launch defines how a crawl process is started, found again and
// stopped, independently of what starts it (a child process, or a transient
// systemd unit). The dispatcher is its only user.
package launch

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Command is one crawl, fully resolved: what to run, where, with what.
// The scrapy package builds it; launchers run it unchanged, so both launchers
// give a crawl the same command line, environment and working directory.
type Command struct {
	Job     string   // the job id: launchers derive names (unit, log prefix) from it
	Project string   // for labels and logs only
	Spider  string   // for labels and logs only
	Path    string   // executable, absolute (the configured python)
	Args    []string // argv[1:]
	Env     []string // full environment, KEY=VALUE
	Dir     string   // working directory
	Stdout  string   // file the crawl's stdout is appended to ("" discards)
	Stderr  string   // file the crawl's stderr is appended to ("" discards)
	Limits  Limits
	Sandbox Sandbox
}

// Sandbox is what a crawl may see and change of the file system: uploaded
// code must not touch the daemon's state, other projects' eggs or the
// system. The systemd launcher enforces it on the unit (everything else
// read-only, a private /tmp); the exec launcher cannot, and leaves it to the
// crawl user's file permissions.
type Sandbox struct {
	// Writable are the directories the crawl writes: its log, items, JOBDIR
	// and socket directories. They must exist when the crawl starts.
	Writable []string
	// Optional are writable directories an administrator added; one that
	// does not exist is skipped, not an error.
	Optional []string
	// Hidden are directories the crawl must not even read (the egg store
	// and the job database): they appear empty.
	Hidden []string
	// Exposed are files under Hidden the crawl still reads (its own egg).
	Exposed []string
	// NoNetwork cuts the command off every network but its own loopback:
	// an environment's install from a wheelhouse or offline needs none, and
	// a package's setup.py must not fetch or send anything. Crawls fetch
	// the web and never set it.
	NoNetwork bool
}

// Limits are per-crawl resource limits; zero means unlimited. The exec
// launcher only honours MaxRuntime; the systemd launcher sets all on the unit.
type Limits struct {
	MemoryMax  int64         // bytes
	CPUQuota   int           // percent of one CPU
	TasksMax   int           // processes and threads
	MaxRuntime time.Duration // the crawl is stopped after this long
}

// Handle identifies a started crawl. It is stored (as Handle.String) before
// the job counts as running, so that a restarted daemon can find the crawl
// again with Launcher.Recover.
type Handle struct {
	ID  string // launcher-specific: a unit name, or "pid:pid:starttime"
	PID int    // the crawl's main process, 0 if not known yet
	Job string // the job id, when the launcher can tell (Start, Running); "" otherwise
}

// Exit is how a crawl ended.
type Exit struct {
	Code   *int           // exit status; nil if killed by a signal or unknown
	Signal syscall.Signal // the signal that killed it, 0 if none
	Known  bool           // false when the launcher could not learn the status
}

// String words the exit for messages: "exit status 1", "killed by
// signal N" as the signal is named, or "exit unknown".
func (e Exit) String() string {
	switch {
	case e.Code != nil:
		return fmt.Sprintf("exit status %d", *e.Code)
	case e.Signal != 0:
		return "killed by " + e.Signal.String()
	}
	return "exit unknown"
}

// ErrGone is returned by Recover and Signal when the crawl no longer exists.
var ErrGone = errors.New("crawl process is gone")

// Launcher starts and controls crawls. Implementations must be safe for
// concurrent use.
type Launcher interface {
	// Name is "exec" or "systemd", shown in daemonstatus and logs.
	Name() string
	// Start starts the crawl and returns once the process exists. The
	// returned Watch ends when the crawl does.
	Start(ctx context.Context, cmd Command) (Handle, Watch, error)
	// Recover finds a crawl started by an earlier daemon from its stored
	// handle. It returns ErrGone, with the exit if still known, when the
	// crawl ended while the daemon was away.
	Recover(ctx context.Context, h Handle) (Watch, Exit, error)
	// Signal sends sig to the crawl's main process. KILL may take down the
	// whole crawl (a unit's cgroup). ErrGone if it already ended.
	Signal(ctx context.Context, h Handle, sig syscall.Signal) error
	// Running lists the crawls of this daemon that run (or ended and still
	// hold their exit status) but that this launcher did not start: those an
	// earlier daemon left. A restarted daemon calls it once, matches them to
	// its jobs, and stops those no job claims (a crash between start and
	// record).
	Running(ctx context.Context) ([]Handle, error)
	// Planned returns the handle a crawl of this job will have, when the
	// launcher knows it before the start (a unit name is derived from the
	// job id): the dispatcher stores it before starting, so that no crash
	// can leave a crawl no record points at.
	Planned(job string) (Handle, bool)
}

// Watch reports the end of one crawl, exactly once.
type Watch interface {
	// Done is closed when the crawl has ended.
	Done() <-chan struct{}
	// Exit is valid after Done is closed.
	Exit() Exit
}
