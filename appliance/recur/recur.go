// Package recur runs recurring schedules (issue 16): it keeps every
// schedule in memory with the time it is next due, sleeps on one timer set
// for the earliest, and at each due time queues an ordinary job that names
// its schedule. Idle schedules cost nothing but their memory: no poll walks
// them. A run missed while the daemon was stopped is made once when it
// starts again, never once per missed time; a failed or lost run is run
// again with backoff, up to the schedule's retries.
package recur

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// Store is the job store as the scheduler uses it (store.Store, or any
// store that passes appliance/store/storetest). DeleteSchedule fails with
// an error wrapping ErrNotFound's meaning when the project has no such
// schedule; the scheduler checks that itself first.
type Store interface {
	Enqueue(spec job.Spec, now time.Time) (job.Job, error)
	ActiveRuns(ctx context.Context, id string) (int, error)
	SaveSchedule(sc job.Schedule) error
	Schedules(ctx context.Context, project string) ([]job.Schedule, error)
	DeleteSchedule(project, id string) error
}

// ErrNotFound: the project has no schedule with this id.
var ErrNotFound = errors.New("no such schedule")

// OtherProjectError is Put's refusal of an id another project's schedule
// has: an update names its own project's schedule.
type OtherProjectError struct{ ID, Project string }

func (e *OtherProjectError) Error() string {
	return fmt.Sprintf("schedule %q belongs to project %q", e.ID, e.Project)
}

// Options are the scheduler's collaborators.
type Options struct {
	Store Store
	// Wake tells the dispatcher a job was queued.
	Wake func()
	Log  *slog.Logger
	// Zone is the daemon's timezone, for cron schedules without one;
	// nil means time.Local.
	Zone func() *time.Location
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Scheduler is safe for concurrent use.
type Scheduler struct {
	o Options

	// op serialises the changes that read and write the store (runs,
	// adds, pauses), so that a run and an update never interleave; mu
	// guards the in-memory state, which listings read without waiting
	// for the store.
	op   sync.Mutex
	mu   sync.Mutex
	byID map[string]*entry
	due  dueHeap
	kick chan struct{}
}

// entry is one schedule, its timing and its place in the heap.
type entry struct {
	sc     job.Schedule
	timing Timing
	at     time.Time // when the timer fires for it (next run with jitter, or retry); zero: never
	index  int       // in the heap, -1 when not in it
}

// New returns a Scheduler; Load it, then Run it. Run may be stopped and
// called again (a cluster node that loses the lead, then takes it back):
// Load it again first, for what another node did meanwhile.
func New(o Options) *Scheduler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Zone == nil {
		o.Zone = func() *time.Location { return time.Local }
	}
	if o.Wake == nil {
		o.Wake = func() {}
	}
	return &Scheduler{o: o, byID: map[string]*entry{}, kick: make(chan struct{}, 1)}
}

// Load reads the schedules from the store, in place of those it holds.
// One whose time passed while the daemon was stopped (or another node
// led) is due at once, for one run however many times it missed.
func (s *Scheduler) Load(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	list, err := s.o.Store.Schedules(ctx, "")
	if err != nil {
		return fmt.Errorf("load schedules: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// New entries: a run settled meanwhile does not re-arm the old ones.
	s.byID, s.due = make(map[string]*entry, len(list)), nil
	for _, sc := range list {
		s.set(sc)
	}
	if len(list) > 1000 {
		// Reading thousands of rows leaves garbage several times the
		// schedules' own size; the daemon idles for hours after, so it is
		// returned to the system now rather than by the slow scavenger.
		list = nil
		debug.FreeOSMemory()
	}
	return nil
}

// Refresh reads a project's schedules from the store again, in place of
// those of the project it holds: in a cluster, another node changed them
// (the lead makes the runs from its own copy).
func (s *Scheduler) Refresh(ctx context.Context, project string) error {
	s.op.Lock()
	defer s.op.Unlock()
	list, err := s.o.Store.Schedules(ctx, project)
	if err != nil {
		return fmt.Errorf("read schedules: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range s.byID {
		if e.sc.Project == project {
			s.drop(id)
		}
	}
	for _, sc := range list {
		s.set(sc)
	}
	return nil
}

// set holds sc as a new entry, armed; s.mu held, and s.op (a run settled
// meanwhile does not re-arm an entry replaced).
func (s *Scheduler) set(sc job.Schedule) {
	tm, err := ParseTiming(sc, s.o.Zone())
	if err != nil {
		// A timezone removed from the system's database, say: the
		// schedule is kept, paused, and says why.
		s.o.Log.Error("schedule cannot run", "schedule", sc.ID, "err", err)
		if sc.Paused == "" {
			sc.Paused = err.Error()
		}
	}
	s.drop(sc.ID)
	e := &entry{sc: sc, timing: tm, index: -1}
	s.byID[sc.ID] = e
	s.arm(e)
}

// drop forgets a schedule; s.mu held.
func (s *Scheduler) drop(id string) {
	if e := s.byID[id]; e != nil && e.index >= 0 {
		heap.Remove(&s.due, e.index)
	}
	delete(s.byID, id)
}

// arm puts e in the heap at its next time, or out of it when it has none;
// s.mu held.
func (s *Scheduler) arm(e *entry) {
	at := time.Time{}
	if e.sc.Paused == "" {
		at = e.sc.NextRun
		if !at.IsZero() && e.sc.Jitter > 0 {
			at = at.Add(jitter(e.sc.Jitter))
		}
		if r := e.sc.RetryAt; !r.IsZero() && (at.IsZero() || r.Before(at)) {
			at = r
		}
	}
	e.at = at
	switch {
	case at.IsZero() && e.index >= 0:
		heap.Remove(&s.due, e.index)
	case at.IsZero():
	case e.index >= 0:
		heap.Fix(&s.due, e.index)
	default:
		heap.Push(&s.due, e)
	}
	if s.due.Len() > 0 && s.due[0] == e {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// Next is when the next run is due, and false when no schedule has one: a
// daemon going to sleep leaves a timer to be awake by then (issue 19).
func (s *Scheduler) Next() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.due.Len() == 0 {
		return time.Time{}, false
	}
	return s.due[0].at, true
}

// Run makes runs at their times until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		wait := time.Duration(-1)
		if s.due.Len() > 0 {
			wait = max(s.due[0].at.Sub(s.o.Now()), 0)
		}
		s.mu.Unlock()
		if wait >= 0 {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
			continue
		case <-timer.C:
		}
		s.fireDue(ctx)
	}
}

// fireDue makes the runs that are due.
func (s *Scheduler) fireDue(ctx context.Context) {
	s.op.Lock()
	defer s.op.Unlock()
	for {
		now := s.o.Now()
		s.mu.Lock()
		if s.due.Len() == 0 || s.due[0].at.After(now) {
			s.mu.Unlock()
			return
		}
		e := s.due[0]
		sc, at := e.sc, e.at
		s.mu.Unlock()
		if err := s.settle(e, s.fire(ctx, sc, at, now)); err != nil {
			s.o.Log.Error("cannot record a schedule's run", "schedule", sc.ID, "err", err)
		}
	}
}

// fire makes the run (or retry) of sc due at at, and returns the schedule
// as it stands after: its next time set past now. s.op held.
func (s *Scheduler) fire(ctx context.Context, sc job.Schedule, at, now time.Time) job.Schedule {
	log := s.o.Log.With("schedule", sc.ID, "project", sc.Project, "spider", sc.Spider)
	if !sc.RetryAt.IsZero() && !sc.RetryAt.After(now) {
		attempt := sc.RetryAttempt
		sc.RetryAt, sc.RetryAttempt = time.Time{}, 0
		if id, ok := s.enqueue(sc, at, attempt, now, log); ok {
			sc.LastJob = id
		}
		return sc
	}
	tm, err := ParseTiming(sc, s.o.Zone())
	if err != nil {
		sc.Paused = err.Error()
		return sc
	}
	due := sc.NextRun
	// The next time is after now, not after due: the times missed while
	// the daemon was stopped (or the machine asleep) coalesce into this
	// one run.
	sc.NextRun = tm.After(now, due)
	run := true
	if sc.Overlap != job.OverlapAllow {
		n, err := s.o.Store.ActiveRuns(ctx, sc.ID)
		if err != nil {
			log.Error("cannot count the schedule's runs; this run is skipped", "err", err)
			return sc
		}
		if n > 0 {
			run = false
			if sc.Overlap == job.OverlapQueue {
				sc.Queued = true
				log.Info("schedule due while its last run is active; queued for its end", "due", due)
			} else {
				log.Info("schedule due while its last run is active; skipped (overlap skip)", "due", due)
			}
		}
	}
	if run {
		if id, ok := s.enqueue(sc, at, 0, now, log); ok {
			sc.LastRun, sc.LastJob = now, id
		}
	}
	return sc
}

// enqueue queues one run of sc; s.op held.
func (s *Scheduler) enqueue(sc job.Schedule, due time.Time, attempt int, now time.Time, log *slog.Logger) (string, bool) {
	spec := job.Spec{ID: job.NewID(), Project: sc.Project, Spider: sc.Spider, Version: sc.Version,
		Settings: sc.Settings, Args: sc.Args, Priority: sc.Priority, Schedule: sc.ID, Due: due, Attempt: attempt}
	if _, err := s.o.Store.Enqueue(spec, now); errors.Is(err, job.ErrRunMade) {
		log.Info("the schedule's run for this due time was made already (by the node that led before)", "due", due, "attempt", attempt)
		return "", false
	} else if err != nil {
		log.Error("cannot queue the schedule's run", "err", err)
		return "", false
	}
	log.Info("schedule made a run", "job", spec.ID, "due", due, "attempt", attempt)
	s.o.Wake()
	return spec.ID, true
}

// Ended is told of every job's end: a failed or lost run of a schedule
// with retries left is run again after its backoff, and a run queued
// behind this one (overlap queue) is made now.
func (s *Scheduler) Ended(ctx context.Context, j job.Job) {
	if j.Schedule == "" {
		return
	}
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	e, ok := s.byID[j.Schedule]
	var sc job.Schedule
	if ok {
		sc = e.sc
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	now := s.o.Now()
	log := s.o.Log.With("schedule", sc.ID, "project", sc.Project, "spider", sc.Spider)
	changed := false
	if (j.Outcome == job.OutcomeFailed || j.Outcome == job.OutcomeLost) && j.Attempt < sc.Retries && sc.Paused == "" {
		sc.RetryAttempt = j.Attempt + 1
		sc.RetryAt = now.Add(backoff(sc, sc.RetryAttempt))
		log.Info("schedule's run ended "+string(j.Outcome)+"; retrying", "job", j.ID, "retry", sc.RetryAttempt, "at", sc.RetryAt)
		changed = true
	}
	if sc.Queued && sc.Paused == "" {
		if n, err := s.o.Store.ActiveRuns(ctx, sc.ID); err == nil && n == 0 {
			sc.Queued = false
			if id, ok := s.enqueue(sc, now, 0, now, log); ok {
				sc.LastRun, sc.LastJob = now, id
			}
			changed = true
		}
	}
	if !changed {
		return
	}
	if err := s.settle(e, sc); err != nil {
		log.Error("cannot record the schedule's retry", "err", err)
	}
}

// settle makes sc e's schedule and re-arms it, unless a Put or Delete
// replaced e meanwhile, and saves sc; s.op held.
func (s *Scheduler) settle(e *entry, sc job.Schedule) error {
	s.mu.Lock()
	if cur, ok := s.byID[sc.ID]; ok && cur == e {
		e.sc = sc
		s.arm(e)
	}
	s.mu.Unlock()
	return s.o.Store.SaveSchedule(sc)
}

// Put adds a schedule, or replaces the one with its id (keeping its
// history: last run and job). Its first run is at the first due time
// after now. It returns the schedule as stored.
func (s *Scheduler) Put(sc job.Schedule) (job.Schedule, error) {
	tm, err := ParseTiming(sc, s.o.Zone())
	if err != nil {
		return job.Schedule{}, err
	}
	s.op.Lock()
	defer s.op.Unlock()
	now := s.o.Now()
	s.mu.Lock()
	old, exists := s.byID[sc.ID]
	s.mu.Unlock()
	sc.Created = now
	if exists {
		if old.sc.Project != sc.Project {
			return job.Schedule{}, &OtherProjectError{ID: sc.ID, Project: old.sc.Project}
		}
		sc.Created, sc.LastRun, sc.LastJob, sc.Paused = old.sc.Created, old.sc.LastRun, old.sc.LastJob, old.sc.Paused
	}
	sc.NextRun = tm.After(now, time.Time{})
	if sc.Paused != "" {
		sc.NextRun = time.Time{}
	}
	if err := s.o.Store.SaveSchedule(sc); err != nil {
		return job.Schedule{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := old
	if !exists {
		e = &entry{index: -1}
		s.byID[sc.ID] = e
	}
	e.sc, e.timing = sc, tm
	s.arm(e)
	return sc, nil
}

// Delete removes a project's schedule; ErrNotFound when it has none with
// this id. Its runs stay, and one that is running runs on.
func (s *Scheduler) Delete(project, id string) error {
	s.op.Lock()
	defer s.op.Unlock()
	if _, err := s.get(project, id); err != nil {
		return err
	}
	if err := s.o.Store.DeleteSchedule(project, id); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop(id)
	return nil
}

// get returns a project's schedule; ErrNotFound when it has none with
// this id.
func (s *Scheduler) get(project, id string) (job.Schedule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byID[id]
	if !ok || e.sc.Project != project {
		return job.Schedule{}, ErrNotFound
	}
	return e.sc, nil
}

// Pause stops a schedule's runs, saying why ("" is a user's pause).
func (s *Scheduler) Pause(project, id, why string) (job.Schedule, error) {
	if why == "" {
		why = "paused by a user"
	}
	return s.change(project, id, func(sc *job.Schedule, now time.Time) {
		sc.Paused, sc.NextRun, sc.RetryAt, sc.Queued = why, time.Time{}, time.Time{}, false
	})
}

// Resume lets a paused schedule run again, from its next due time after
// now: what it missed while paused is not made up.
func (s *Scheduler) Resume(project, id string) (job.Schedule, error) {
	var perr error
	sc, err := s.change(project, id, func(sc *job.Schedule, now time.Time) {
		tm, err := ParseTiming(*sc, s.o.Zone())
		if err != nil {
			perr = err
			return
		}
		sc.Paused, sc.NextRun = "", tm.After(now, time.Time{})
	})
	if err == nil && perr != nil {
		return sc, perr
	}
	return sc, err
}

// change applies fn to a project's schedule and stores the result.
func (s *Scheduler) change(project, id string, fn func(sc *job.Schedule, now time.Time)) (job.Schedule, error) {
	s.op.Lock()
	defer s.op.Unlock()
	sc, err := s.get(project, id)
	if err != nil {
		return job.Schedule{}, err
	}
	fn(&sc, s.o.Now())
	if err := s.o.Store.SaveSchedule(sc); err != nil {
		return job.Schedule{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.byID[id]; e != nil {
		e.sc = sc
		s.arm(e)
	}
	return sc, nil
}

// PauseWhere pauses, with why, the running schedules of a project that
// match: every one when version is "", else those pinned to that version.
func (s *Scheduler) PauseWhere(project, version, why string) {
	for _, sc := range s.List(project) {
		if sc.Paused != "" || version != "" && sc.Version != version {
			continue
		}
		if _, err := s.Pause(project, sc.ID, why); err != nil {
			s.o.Log.Error("cannot pause schedule", "schedule", sc.ID, "err", err)
		}
	}
}

// List returns a project's schedules ("" for all), oldest first.
func (s *Scheduler) List(project string) []job.Schedule {
	s.mu.Lock()
	out := make([]job.Schedule, 0, len(s.byID))
	for _, e := range s.byID {
		if project == "" || e.sc.Project == project {
			out = append(out, e.sc)
		}
	}
	s.mu.Unlock()
	sortSchedules(out)
	return out
}

// Get returns one schedule.
func (s *Scheduler) Get(project, id string) (job.Schedule, error) { return s.get(project, id) }
