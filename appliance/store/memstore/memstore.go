// Package memstore is a job store in memory: the second implementation of
// the contract in storetest, for unit tests of the store's consumers that
// need no SQLite. It keeps nothing across a restart.
package memstore

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Store is safe for concurrent use; one lock makes every call atomic, so a
// Snapshot is one moment.
type Store struct {
	mu      sync.Mutex
	seq     int64
	jobs    map[int64]*job.Job
	spiders map[[2]string][]string
	scheds  map[string]job.Schedule

	events  []store.Event // oldest first
	eventID int64         // the last event's ID, never reused
	cursors map[string]int64
	onEvent func(last int64)
}

// New returns an empty store.
func New() *Store {
	return &Store{jobs: map[int64]*job.Job{}, spiders: map[[2]string][]string{}, scheds: map[string]job.Schedule{}, cursors: map[string]int64{}}
}

// event records a step of j's life and tells the listener; s.mu held, as
// the change it records is made under it.
func (s *Store) event(typ store.EventType, at time.Time, j *job.Job) {
	s.eventID++
	c := copyOf(j)
	c.Settings, c.Args, c.Handle = nil, nil, ""
	c.State = map[store.EventType]job.State{store.EventScheduled: job.Pending, store.EventStarted: job.Running, store.EventFinished: job.Finished}[typ]
	s.events = append(s.events, store.Event{ID: s.eventID, Type: typ, Time: at, Job: c})
	if s.onEvent != nil {
		s.onEvent(s.eventID)
	}
}

// OnEvent sets fn to hear of each event's ID once it is recorded.
func (s *Store) OnEvent(fn func(last int64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onEvent = fn
}

// Events returns up to limit events after the ID after, oldest first.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]store.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := slices.BinarySearchFunc(s.events, after+1, func(e store.Event, id int64) int { return cmp.Compare(e.ID, id) })
	out := slices.Clone(s.events[i:min(len(s.events), i+limit)])
	return out, nil
}

// LastEventID is the newest event's ID, 0 when there was none.
func (s *Store) LastEventID(ctx context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eventID, nil
}

// Cursor returns a consumer's last delivered event.
func (s *Store) Cursor(ctx context.Context, name string) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.cursors[name]
	return id, ok, nil
}

// SetCursor records a consumer's last delivered event.
func (s *Store) SetCursor(name string, id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cursors[name] = id
	return nil
}

// TrimEvents deletes the events up to and including id.
func (s *Store) TrimEvents(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = slices.DeleteFunc(s.events, func(e store.Event) bool { return e.ID <= id })
	return nil
}

// orders are store.Store's: pending by priority then schedule order,
// running in start order, finished newest first.
var orders = map[job.State]func(a, b *job.Job) int{
	job.Pending: func(a, b *job.Job) int { return cmp.Or(cmp.Compare(b.Priority, a.Priority), cmp.Compare(a.Seq, b.Seq)) },
	job.Running: func(a, b *job.Job) int { return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.Seq, b.Seq)) },
	job.Finished: func(a, b *job.Job) int {
		return cmp.Or(b.Ended.Compare(a.Ended), cmp.Compare(b.Seq, a.Seq))
	},
}

// inState returns the jobs in a state, in its order; s.mu held.
func (s *Store) inState(state job.State) []*job.Job {
	var out []*job.Job
	for _, j := range s.jobs {
		if j.State == state {
			out = append(out, j)
		}
	}
	slices.SortFunc(out, orders[state])
	return out
}

// copyOf is a job the caller may keep: the store's own keeps changing.
func copyOf(j *job.Job) job.Job {
	c := *j
	c.Settings, c.Args = slices.Clone(j.Settings), slices.Clone(j.Args)
	if j.ExitCode != nil {
		code := *j.ExitCode
		c.ExitCode = &code
	}
	return c
}

// Counts returns how many jobs are pending, running and finished.
func (s *Store) Counts() (pending, running, finished int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := map[job.State]int{}
	for _, j := range s.jobs {
		n[j.State]++
	}
	return n[job.Pending], n[job.Running], n[job.Finished]
}

// Enqueue adds a pending job; store.ErrDuplicate when a pending or running
// job has its id.
func (s *Store) Enqueue(spec job.Spec, now time.Time) (job.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if j.ID == spec.ID && j.State != job.Finished {
			return job.Job{}, store.ErrDuplicate
		}
	}
	s.seq++
	j := &job.Job{Spec: spec, Seq: s.seq, State: job.Pending, Scheduled: now}
	j.Settings, j.Args = slices.Clone(spec.Settings), slices.Clone(spec.Args)
	s.jobs[j.Seq] = j
	s.event(store.EventScheduled, now, j)
	return copyOf(j), nil
}

// Claim moves the next pending job that caps allow to running; nil when
// none may start.
func (s *Store) Claim(now time.Time, caps store.Caps) (*job.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	running := s.running()
	var j *job.Job
	for _, p := range s.inState(job.Pending) {
		if caps.Waiting(running, p.Project, p.Spider) == "" {
			j = p
			break
		}
	}
	if j == nil {
		return nil, nil
	}
	j.State, j.Started = job.Running, now
	c := copyOf(j)
	return &c, nil
}

// Launching records a claimed job's handle before its start; no event.
func (s *Store) Launching(seq int64, handle string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[seq]; ok && j.State == job.Running {
		j.Handle, j.PID = handle, 0
	}
	return nil
}

// Started records a claimed job's launch handle.
func (s *Store) Started(seq int64, handle string, pid int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[seq]; ok && j.State == job.Running {
		j.Handle, j.PID = handle, pid
		s.event(store.EventStarted, j.Started, j)
	}
	return nil
}

// Requeue returns a running job that has no handle to the queue, in its
// place.
func (s *Store) Requeue(seq int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[seq]; ok && j.State == job.Running && j.Handle == "" {
		j.State, j.Started, j.PID = job.Pending, time.Time{}, 0
	}
	return nil
}

// End records how a running job ended and keeps the newest keep finished.
func (s *Store) End(seq int64, ended time.Time, exit *int, outcome job.Outcome, stats string, keep int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[seq]
	if !ok || j.State != job.Running {
		return nil // already ended
	}
	j.State, j.Ended, j.Outcome, j.Stats, j.ExitCode = job.Finished, ended, outcome, stats, nil
	if exit != nil {
		code := *exit
		j.ExitCode = &code
	}
	s.event(store.EventFinished, ended, j)
	s.trim(keep)
	return nil
}

// SetStats replaces a finished job's stats.
func (s *Store) SetStats(seq int64, stats string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[seq]; ok && j.State == job.Finished {
		j.Stats = stats
	}
	return nil
}

// Trim keeps the newest keep finished jobs.
func (s *Store) Trim(keep int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trim(keep)
	return nil
}

func (s *Store) trim(keep int) {
	if fin := s.inState(job.Finished); len(fin) > keep {
		for _, j := range fin[keep:] {
			delete(s.jobs, j.Seq)
		}
	}
}

// CancelPending removes the pending jobs with this id in this project.
func (s *Store) CancelPending(project, id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone []*job.Job
	for _, j := range s.jobs {
		if j.State == job.Pending && j.Project == project && j.ID == id {
			gone = append(gone, j)
		}
	}
	// In schedule order, as the events of store.Store.
	slices.SortFunc(gone, func(a, b *job.Job) int { return cmp.Compare(a.Seq, b.Seq) })
	now := time.Now()
	for _, j := range gone {
		j.Outcome, j.Cancelled, j.Ended = job.OutcomeCancelled, true, now
		s.event(store.EventFinished, now, j)
		delete(s.jobs, j.Seq)
	}
	return len(gone), nil
}

// MarkCancelled records a cancel and says whether one was recorded before.
func (s *Store) MarkCancelled(seq int64) (before bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[seq]
	if !ok {
		return false, store.ErrNotFound
	}
	before, j.Cancelled = j.Cancelled, true
	return before, nil
}

// list pages the jobs in a state that f keeps; s.mu held.
func (s *Store) list(state job.State, f store.Filter) []job.Job {
	var out []job.Job
	skip := f.Offset
	for _, j := range s.inState(state) {
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
		out = append(out, copyOf(j))
	}
	return out
}

// List returns the jobs in a state that f keeps, in the state's order.
func (s *Store) List(ctx context.Context, state job.State, f store.Filter) ([]job.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.list(state, f), nil
}

// Snapshot lists the states in want as of one moment.
func (s *Store) Snapshot(ctx context.Context, f, finished store.Filter, want map[job.State]bool) (pending, running, done []job.Job, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if want[job.Pending] {
		pending = s.list(job.Pending, f)
	}
	if want[job.Running] {
		running = s.list(job.Running, f)
	}
	if want[job.Finished] {
		done = s.list(job.Finished, finished)
	}
	return pending, running, done, nil
}

// Find returns the job with this id as status.json searches: finished
// (newest first), then running, then pending; store.ErrNotFound if none.
func (s *Store) Find(ctx context.Context, project, id string) (*job.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, state := range []job.State{job.Finished, job.Running, job.Pending} {
		for _, j := range s.inState(state) {
			if j.ID == id && (project == "" || j.Project == project) {
				c := copyOf(j)
				return &c, nil
			}
		}
	}
	return nil, store.ErrNotFound
}

// IsRunning reports whether a job with this id is running.
func (s *Store) IsRunning(ctx context.Context, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if j.ID == id && j.State == job.Running {
			return true
		}
	}
	return false
}

// Spiders returns the cached spider list of a project version.
func (s *Store) Spiders(ctx context.Context, project, version string) ([]string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names, ok := s.spiders[[2]string{project, version}]
	return slices.Clone(names), ok, nil
}

// SetSpiders caches a project version's spider list.
func (s *Store) SetSpiders(project, version string, names []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spiders[[2]string{project, version}] = slices.Clone(names)
	return nil
}

// ForgetSpiders drops one version's list, or every version's when version
// is "".
func (s *Store) ForgetSpiders(project, version string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.spiders {
		if k[0] == project && (version == "" || k[1] == version) {
			delete(s.spiders, k)
		}
	}
	return nil
}

// ActiveByProject counts each project's pending and running jobs, in no
// order.
func (s *Store) ActiveByProject(ctx context.Context) ([]store.ProjectCount, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := map[store.ProjectCount]int{}
	for _, j := range s.jobs {
		if j.State != job.Finished {
			n[store.ProjectCount{Project: j.Project, State: j.State}]++
		}
	}
	out := make([]store.ProjectCount, 0, len(n))
	for c, jobs := range n {
		c.Jobs = jobs
		out = append(out, c)
	}
	return out, nil
}

// LastSuccesses returns when each spider's newest successful crawl in the
// history ended, in no order.
func (s *Store) LastSuccesses(ctx context.Context) ([]store.SpiderSuccess, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := map[[2]string]time.Time{}
	for _, j := range s.jobs {
		k := [2]string{j.Project, j.Spider}
		if j.State == job.Finished && j.Outcome == job.OutcomeFinished && j.Ended.After(last[k]) {
			last[k] = j.Ended
		}
	}
	out := make([]store.SpiderSuccess, 0, len(last))
	for k, t := range last {
		out = append(out, store.SpiderSuccess{Project: k[0], Spider: k[1], Ended: t})
	}
	return out, nil
}
