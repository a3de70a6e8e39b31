// Package dispatch runs pending jobs: it starts the next one the moment a
// slot is free (a schedule or a crawl's end wakes it; the poll interval is
// only a safety net), records each crawl's handle before the job counts as
// running, records how each crawl ended, adopts crawls a previous daemon
// started, and escalates a repeated cancel to SIGKILL.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/pyenv"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapy"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Hooks let other parts take part in a crawl's life (the crawl web
// service). Both methods must be fast and must not fail the crawl.
type Hooks interface {
	// Extras returns what to add to the crawl's command.
	Extras(j job.Job, settingsModule string) scrapy.Extras
	// Ended is called once a crawl has ended and returns its final stats
	// as JSON ("" if none).
	Ended(j job.Job) string
}

// Options are the dispatcher's collaborators.
type Options struct {
	Config   func() *config.Config
	Store    Jobs
	Eggs     Eggs
	Launcher launch.Launcher
	Hooks    Hooks        // optional
	Log      *slog.Logger // required
	Env      []string     // the environment crawls start from (scrapy.CrawlEnv of the daemon's)
	// OnChange, if set, is called after every change of the running set
	// (for sd_notify STATUS=).
	OnChange func()
	// MakeDir creates a directory a crawl writes into (its log and items
	// directories); nil means os.MkdirAll. A root daemon gives them to the
	// crawl user.
	MakeDir func(dir string) error
	// Crash is for tests only: it is called at each named point of a
	// start (see CrashPoints), and a test makes it end the goroutine there
	// (runtime.Goexit) as a daemon's crash would, then restarts.
	Crash func(point string)
	// OnEnd, if set, is told of each job's end once it is recorded, with
	// its outcome (the recurring schedules' retries). It must not block.
	OnEnd func(j job.Job)
	// MayClaim, if set, says whether the node may claim jobs now: a
	// cluster node that cannot renew its lease must not.
	MayClaim func() bool
	// Remote, in a cluster, carries cancels to and from the other nodes.
	Remote Remote
	// Exited, if set, is called once a watched crawl has exited, on the
	// crawl's own goroutine, before its end goes to the dispatch loop to be
	// recorded: the log shipper sends the log's last bytes there, so that
	// whoever sees the job finished finds its whole log. It may take a
	// moment (bounded by itself); the dispatch loop never waits for it.
	Exited func(j job.Job)
}

// CrashPoints are the points of a start where a crash leaves a different
// record behind, in order: the job claimed; its handle (planned, or the
// Starting mark) stored; the crawl started; its real handle stored.
var CrashPoints = []string{"claimed", "persisted", "launched", "recorded"}

// Starting is the handle stored before a start whose handle the launcher
// cannot know in advance (exec: a pid). A restarted daemon that finds it
// matches the job to a crawl of its id, or records the job lost: it is
// never started twice.
const Starting = "starting"

// Dispatcher owns the process slots.
type Dispatcher struct {
	Options

	wake  chan struct{}
	ended chan ended

	// mu guards the slots only: no file, store or launcher call is made
	// while it is held, so a hung start never blocks a cancel.
	mu       sync.Mutex
	active   map[int64]*slot
	claiming int // slots reserved while a claim is in flight

	// unsure, owned by the dispatch loop: a claim failed with the database
	// away, and its COMMIT may have been made with the answer lost (see
	// settle).
	unsure bool

	adopted chan struct{} // closed once the crawls a previous daemon left are known

	delivering sync.Mutex // one DeliverCancels at a time: a request is signalled once
}

// slot is one job holding a process slot: starting, then running.
type slot struct {
	j        job.Job
	starting bool           // Launcher.Start has not returned (or its handle is not yet stored)
	signal   syscall.Signal // a cancel's signal that waits for the start to end
	stopped  string         // why StopAll killed the crawl: its end is recorded lost
	launched *launch.Handle // a starting crawl's handle once Launcher.Start returned it
}

type ended struct {
	j       job.Job
	stats   *string // the final stats, asked once (a retried end keeps them)
	exit    launch.Exit
	reason  string      // why the dispatcher ended it, for a job that did not run its course
	outcome job.Outcome // with a reason: failed unless set
}

// New returns a Dispatcher; call Run to start it.
func New(o Options) *Dispatcher {
	return &Dispatcher{Options: o, wake: make(chan struct{}, 1), ended: make(chan ended, 64), active: map[int64]*slot{}, adopted: make(chan struct{})}
}

// Wake asks the dispatcher to look for startable jobs now. It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Adopted is closed once Run has recorded the ends of the crawls that
// ended while the daemon was away: until then the store may call a job
// running that is not (the recurring schedules' overlap check waits).
func (d *Dispatcher) Adopted() <-chan struct{} { return d.adopted }

// Running reports how many crawls hold a slot (starting ones included).
func (d *Dispatcher) Running() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.active)
}

// Run adopts the crawls a previous daemon left, then dispatches until ctx
// ends. Crawls keep running when it returns: they outlive the daemon.
func (d *Dispatcher) Run(ctx context.Context) error {
	if err := d.adopt(ctx); err != nil {
		return err
	}
	close(d.adopted)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		d.fill(ctx)
		timer.Reset(d.Config().PollInterval)
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		case <-timer.C:
			if d.Remote != nil {
				// The safety net of cancel requests too: an announcement
				// made while this node's listener was away is lost.
				go d.DeliverCancels(ctx)
			}
		case e := <-d.ended:
			d.end(ctx, e)
		}
	}
}

// adopt re-attaches every job the store says is running to its crawl,
// matched against the crawls the launcher finds; crawls no job claims are
// stopped.
func (d *Dispatcher) adopt(ctx context.Context) error {
	jobs, err := d.Store.List(ctx, job.Running, store.Filter{})
	if err != nil {
		return fmt.Errorf("adopt: %w", err)
	}
	// Jobs with their crawl's handle first: they need no listing, and the
	// daemon answers for them at once.
	claimed := map[string]bool{}
	var unsure []job.Job
	for _, j := range jobs {
		if j.Handle == "" || j.Handle == Starting {
			unsure = append(unsure, j)
			continue
		}
		claimed[j.Handle] = true
		d.attach(ctx, j)
	}
	found, err := d.Launcher.Running(ctx)
	if err != nil {
		// Jobs with a stored handle were recovered one by one.
		d.Log.Error("cannot list the launcher's crawls; crawls no job points at may keep running", "err", err)
	}
	byID := map[string]launch.Handle{}
	byJob := map[string]launch.Handle{}
	for _, h := range found {
		if claimed[h.ID] {
			continue
		}
		byID[h.ID] = h
		if h.Job != "" {
			byJob[h.Job] = h
		}
	}
	for _, j := range unsure {
		log := d.Log.With("project", j.Project, "spider", j.Spider, "job", j.ID)
		r, ok := byJob[j.ID]
		if !ok {
			if p, planned := d.Launcher.Planned(j.ID); planned {
				r, ok = byID[p.ID]
			}
		}
		switch {
		case ok:
			// The crawl started but its handle was not recorded.
			log.Warn("found the crawl of a job whose start was not recorded; adopting it", "handle", r.ID)
			if err := d.Store.Started(j.Seq, r.ID, r.PID); err != nil {
				return fmt.Errorf("adopt: %w", err)
			}
			delete(byID, r.ID)
			d.attach(ctx, withHandle(j, r))
		case j.Handle == "":
			// Claimed, but the daemon died before anything was started:
			// a handle (planned or Starting) is stored before every start.
			log.Warn("job was claimed but never started; queued again")
			if err := d.Store.Requeue(j.Seq); err != nil {
				return fmt.Errorf("adopt: %w", err)
			}
		default:
			// Its start was under way: it may have run and ended, so it
			// is not run again.
			d.end(ctx, ended{j: j, outcome: job.OutcomeLost, reason: "the daemon stopped while this crawl was starting, and no crawl of it runs"})
		}
	}
	for _, h := range byID {
		d.stopStray(ctx, h)
	}
	d.changed()
	return nil
}

// attach gives a running job with its crawl's handle its slot back, and
// re-attaches it to the crawl.
func (d *Dispatcher) attach(ctx context.Context, j job.Job) {
	d.mu.Lock()
	d.active[j.Seq] = &slot{j: j}
	d.mu.Unlock()
	d.recover(ctx, d.Log.With("project", j.Project, "spider", j.Spider, "job", j.ID), j)
}

// stopStray kills a crawl no job tracks. It is watched first, so that the
// launcher releases what it keeps of it (a unit's exit status) once it ends.
func (d *Dispatcher) stopStray(ctx context.Context, h launch.Handle) {
	log := d.Log.With("handle", h.ID, "pid", h.PID, "job", h.Job)
	w, _, err := d.Launcher.Recover(ctx, h)
	if errors.Is(err, launch.ErrGone) {
		log.Warn("released an ended crawl no job tracks")
		return
	}
	log.Error("stopping a crawl no job tracks")
	if err := d.Launcher.Signal(ctx, h, syscall.SIGKILL); err != nil && !errors.Is(err, launch.ErrGone) {
		log.Error("cannot stop a crawl no job tracks", "err", err)
	}
	if w != nil {
		go func() {
			select {
			case <-w.Done():
				log.Info("the crawl no job tracks has ended", "exit", w.Exit().String())
			case <-ctx.Done():
			}
		}()
	}
}

func withHandle(j job.Job, h launch.Handle) job.Job {
	j.Handle, j.PID = h.ID, h.PID
	return j
}

// recover re-attaches a running job (its slot held) to its crawl. A crawl
// that cannot be re-attached is killed, and its slot stays held until the
// launcher reports it gone: a slot is never freed while its crawl may run.
func (d *Dispatcher) recover(ctx context.Context, log *slog.Logger, j job.Job) {
	h := launch.Handle{ID: j.Handle, PID: j.PID, Job: j.ID}
	w, exit, err := d.Launcher.Recover(ctx, h)
	switch {
	case err == nil:
		log.Info("adopted running crawl", "handle", j.Handle, "pid", j.PID)
		go d.await(ctx, j, w)
	case errors.Is(err, launch.ErrGone):
		log.Info("crawl ended while the daemon was away", "handle", j.Handle)
		d.end(ctx, ended{j: j, exit: exit})
	default:
		log.Error("cannot re-attach to the crawl; stopping it", "handle", j.Handle, "err", err)
		go d.reattach(ctx, j, err)
	}
}

// reattach kills a crawl Recover failed for, and retries Recover until the
// crawl is gone or watched again.
func (d *Dispatcher) reattach(ctx context.Context, j job.Job, first error) {
	h := launch.Handle{ID: j.Handle, PID: j.PID, Job: j.ID}
	reason := fmt.Sprintf("the daemon could not re-attach to the crawl (%v), so it was stopped", first)
	for {
		if err := d.Launcher.Signal(ctx, h, syscall.SIGKILL); err != nil && !errors.Is(err, launch.ErrGone) {
			d.Log.Error("cannot stop a crawl the daemon lost", "job", j.ID, "handle", h.ID, "err", err)
		}
		w, exit, err := d.Launcher.Recover(ctx, h)
		switch {
		case err == nil:
			select {
			case <-w.Done():
				d.exited(j)
				d.report(ctx, ended{j: j, exit: w.Exit(), reason: reason})
			case <-ctx.Done():
			}
			return
		case errors.Is(err, launch.ErrGone):
			d.report(ctx, ended{j: j, exit: exit, reason: reason})
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.Config().PollInterval):
		}
	}
}

// fill starts pending jobs while slots are free. Each start runs on its
// own goroutine: the loop goes on while it is under way.
func (d *Dispatcher) fill(ctx context.Context) {
	if d.unsure {
		d.settle(ctx)
	}
	for {
		cfg := d.Config()
		if d.MayClaim != nil && !d.MayClaim() {
			return
		}
		d.mu.Lock()
		if len(d.active)+d.claiming >= cfg.Slots() {
			d.mu.Unlock()
			return
		}
		d.claiming++
		d.mu.Unlock()
		j, err := d.Store.Claim(time.Now(), Caps(cfg))
		d.mu.Lock()
		d.claiming--
		if err != nil || j == nil {
			d.mu.Unlock()
			if err != nil {
				d.Log.Error("cannot take the next pending job", "err", err)
			}
			if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrInDoubt) {
				// A shared database (never SQLite) may have made the
				// claim and lost its answer: the job would stay running
				// on this node with no crawl.
				d.unsure = true
			}
			return
		}
		s := &slot{j: *j, starting: true}
		d.active[j.Seq] = s
		d.mu.Unlock()
		d.changed()
		go d.start(ctx, cfg, s)
	}
}

// settle returns to the queue, in their places, the jobs a claim whose
// answer was lost left running on this node: running with no handle, and
// holding no slot here. Every job this dispatcher claimed holds its slot
// from the claim's answer until its end is recorded, and only this loop
// claims and frees slots, so a job being started is never among them. It is
// tried again at each fill until the store answers.
func (d *Dispatcher) settle(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	jobs, err := d.Store.List(lctx, job.Running, store.Filter{})
	if err != nil {
		d.Log.Warn("cannot check yet for a job claimed while the job database went away", "err", err)
		return
	}
	for _, j := range jobs {
		d.mu.Lock()
		held := d.active[j.Seq] != nil
		d.mu.Unlock()
		if j.Handle != "" || held {
			continue
		}
		log := d.Log.With("project", j.Project, "spider", j.Spider, "job", j.ID)
		switch err := d.Store.Requeue(j.Seq); {
		case errors.Is(err, store.ErrFenced):
			// The cluster reaped this node meanwhile: the job's fate is
			// its decision.
			log.Warn("a job claimed while the job database went away is no longer this node's", "err", err)
		case err != nil:
			log.Warn("cannot queue again a job claimed while the job database went away", "err", err)
			return
		default:
			log.Warn("job was claimed while the job database went away and never started; queued again")
		}
	}
	d.unsure = false
}

// start launches a claimed job: it stores the handle before the start
// (planned) or a Starting mark, starts the crawl within start_timeout, and
// stores the real handle.
func (d *Dispatcher) start(ctx context.Context, cfg *config.Config, s *slot) {
	j := s.j
	log := d.Log.With("project", j.Project, "spider", j.Spider, "job", j.ID)
	d.crash("claimed")
	fail := func(c scrapy.Crawl, reason string) {
		log.Error("crawl could not be started", "err", reason)
		if c.LogFile != "" {
			appendLine(c.LogFile, fmt.Sprintf("%s [scrapyd] ERROR: crawl could not be started: %s", time.Now().Format("2006-01-02 15:04:05"), reason))
		}
		d.report(ctx, ended{j: j, reason: reason})
	}
	planned, known := d.Launcher.Planned(j.ID)
	mark := Starting
	if known {
		mark = planned.ID
	}
	if err := d.Store.Launching(j.Seq, mark); err != nil {
		fail(scrapy.Crawl{}, fmt.Sprintf("cannot record the start: %v", err))
		return
	}
	d.crash("persisted")
	c, err := d.crawl(cfg, j)
	if err != nil {
		// A job that cannot start ends at once, with its reason in its
		// log: it never vanishes and never holds a slot (Scrapyd issue #543).
		fail(c, err.Error())
		return
	}
	h, w, err := d.launch(ctx, cfg, scrapy.Command(c), planned, known, log)
	if err != nil {
		fail(c, err.Error())
		return
	}
	d.crash("launched")
	// StopAll can reach the crawl now, while its handle is being stored
	// (a store cut off may take long to answer).
	d.mu.Lock()
	s.launched = &h
	stopNow := s.stopped != ""
	d.mu.Unlock()
	if stopNow {
		d.Launcher.Signal(ctx, h, syscall.SIGKILL)
	}
	if err := d.Store.Started(j.Seq, h.ID, h.PID); err != nil && (!known || errors.Is(err, store.ErrFenced)) {
		// No record points at the crawl: it must not run untracked. A
		// fenced node's job may be another node's by now: it must not
		// run twice.
		log.Error("crawl started but its handle could not be stored; stopping it", "err", err)
		d.Launcher.Signal(ctx, h, syscall.SIGKILL)
		select {
		case <-w.Done():
		case <-ctx.Done():
			return
		}
		fail(c, fmt.Sprintf("its handle could not be stored (%v), so it was stopped", err))
		return
	} else if err != nil {
		log.Warn("cannot store the crawl's pid; its planned handle is stored", "err", err)
	}
	d.crash("recorded")
	j = withHandle(j, h)
	d.mu.Lock()
	s.j, s.starting = j, false
	sig := s.signal
	d.mu.Unlock()
	log.Info("crawl started", "pid", h.PID, "handle", h.ID, "launcher", d.Launcher.Name())
	if sig != 0 {
		d.signal(ctx, j, sig)
	}
	d.await(ctx, j, w)
}

// launch calls Launcher.Start, bounded by start_timeout even for a
// launcher that ignores its context: an abandoned start's crawl is stopped
// if it appears.
func (d *Dispatcher) launch(ctx context.Context, cfg *config.Config, c launch.Command, planned launch.Handle, known bool, log *slog.Logger) (launch.Handle, launch.Watch, error) {
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	type result struct {
		h   launch.Handle
		w   launch.Watch
		err error
	}
	done := make(chan result, 1)
	go func() {
		h, w, err := d.Launcher.Start(sctx, c)
		done <- result{h, w, err}
	}()
	select {
	case r := <-done:
		cancel()
		return r.h, r.w, r.err
	case <-sctx.Done():
	}
	// Abandoned: whatever the start still does, its crawl must not run.
	stop := context.WithoutCancel(ctx)
	go func() {
		defer cancel()
		if known {
			d.Launcher.Signal(stop, planned, syscall.SIGKILL)
		}
		r := <-done
		if r.err == nil {
			log.Warn("an abandoned start completed late; stopping its crawl", "handle", r.h.ID)
			d.Launcher.Signal(stop, r.h, syscall.SIGKILL)
		}
	}()
	if ctx.Err() != nil {
		return launch.Handle{}, nil, ctx.Err()
	}
	return launch.Handle{}, nil, fmt.Errorf("the crawl did not start within start_timeout (%s); the start was abandoned", timeout)
}

func (d *Dispatcher) crash(point string) {
	if d.Crash != nil {
		d.Crash(point)
	}
}

// crawl resolves everything a job's command needs.
func (d *Dispatcher) crawl(cfg *config.Config, j job.Job) (scrapy.Crawl, error) {
	paths := jobfiles.Of(cfg, j.Project, j.Spider, j.ID)
	c := scrapy.Crawl{
		Python: cfg.Python, BaseEnv: d.Env, Dir: jobfiles.CrawlDir(cfg), Spec: j.Spec, Version: j.Version,
		LogFile: paths.Log, JobDir: paths.JobDir,
		Stdout: filepath.Join(filepath.Dir(cfg.LogFile), "scrapyd.out"),
		Stderr: filepath.Join(filepath.Dir(cfg.LogFile), "scrapyd.err"),
		Limits: launch.Limits{MemoryMax: cfg.CrawlMemoryMax, CPUQuota: cfg.CrawlCPUQuota, TasksMax: cfg.CrawlTasksMax, MaxRuntime: cfg.CrawlMaxRuntime},
	}
	c.Project = scrapy.Project{Name: j.Project}
	if mod, ok := cfg.Settings[j.Project]; ok && j.Version == "" {
		c.Project.SettingsModule = mod
	} else {
		v, err := d.Eggs.Find(j.Project, j.Version)
		if err != nil {
			return c, fmt.Errorf("version %q of project %q: %w", j.Version, j.Project, err)
		}
		mod, err := egg.SettingsModuleOf(v.Path)
		if err != nil {
			return c, err
		}
		c.Project.Egg, c.Project.SettingsModule = v.Path, mod
		if v.Env != "" {
			// The version's own environment (its uploaded requirements):
			// read-only to the crawl, like the rest of the system.
			c.Project.Python = pyenv.Python(cfg.EnvsDir, v.Env)
		}
	}
	if paths.Items != "" {
		c.ItemsFeed = scrapy.FileFeed(paths.Items)
	} else if paths.Feed != "" {
		c.ItemsFeed = paths.Feed
	}
	for _, p := range []string{paths.Log, paths.Items} {
		if p != "" {
			prune(filepath.Dir(p), cfg.JobsToKeep)
		}
	}
	c.Sandbox = sandbox(cfg, paths, c.Project.Egg)
	for _, dir := range c.Sandbox.Writable {
		if err := d.mkdir(dir); err != nil {
			return c, err
		}
	}
	if d.Hooks != nil {
		c.Extras = d.Hooks.Extras(j, c.Project.SettingsModule)
	}
	return c, nil
}

// sandbox is what a crawl may touch: it writes its own log, items and
// JOBDIR directories, and Scrapy's .scrapy data directory (HTTP cache) in
// its working directory; it reads its own egg but no other egg, nor the
// job database. The working directory itself stays read-only, so the crawl
// cannot replace the daemon's eggs/ or dbs/ in it.
func sandbox(cfg *config.Config, paths jobfiles.Paths, egg string) launch.Sandbox {
	sb := launch.Sandbox{
		Writable: []string{filepath.Join(jobfiles.CrawlDir(cfg), ".scrapy")},
		Optional: cfg.CrawlWritablePaths,
		Hidden:   jobfiles.Hidden(cfg),
	}
	for _, dir := range []string{dirOf(paths.Log), dirOf(paths.Items), paths.JobDir} {
		if dir != "" {
			sb.Writable = append(sb.Writable, dir)
		}
	}
	if egg != "" {
		sb.Exposed = []string{egg}
	}
	return sb
}

// dirOf is the directory of a file path, "" for "".
func dirOf(p string) string {
	if p == "" {
		return ""
	}
	return filepath.Dir(p)
}

// await waits for a crawl's end and hands it to the dispatch loop.
func (d *Dispatcher) await(ctx context.Context, j job.Job, w launch.Watch) {
	select {
	case <-w.Done():
		d.exited(j)
		d.report(ctx, ended{j: j, exit: w.Exit()})
	case <-ctx.Done():
	}
}

func (d *Dispatcher) exited(j job.Job) {
	if d.Exited != nil {
		d.Exited(j)
	}
}

// report hands an end to the dispatch loop, unless the dispatcher stops.
func (d *Dispatcher) report(ctx context.Context, e ended) {
	select {
	case d.ended <- e:
	case <-ctx.Done():
	}
}

// endRetry is how long a crawl's end waits before it is recorded again
// after the store refused it (a full disk, a locked database).
const endRetry = time.Second

// end records a crawl's end and frees its slot. While the store refuses
// the record, the slot stays held and the end is tried again: a job never
// loses its outcome, nor stays "running" in the store with its slot
// given to another.
func (d *Dispatcher) end(ctx context.Context, e ended) {
	if d.finish(&e) {
		return
	}
	go func() {
		select {
		case <-time.After(endRetry):
			d.report(ctx, e)
		case <-ctx.Done():
		}
	}()
}

// finish records a crawl's end and frees its slot; false if the store
// refused the record (nothing else was changed then).
func (d *Dispatcher) finish(e *ended) bool {
	cfg := d.Config()
	j := e.j
	// The cancel flag may have been set after the crawl started.
	// Bounded: a database cut off must not hold the dispatch loop here.
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cur, err := d.Store.Find(fctx, j.Project, j.ID); err == nil && cur.Seq == j.Seq {
		j.Cancelled = cur.Cancelled
	}
	if e.stats == nil {
		var stats string
		if d.Hooks != nil {
			stats = d.Hooks.Ended(j)
		}
		e.stats = &stats
	}
	log := d.Log.With("project", j.Project, "spider", j.Spider, "job", j.ID)
	d.mu.Lock()
	if s := d.active[j.Seq]; s != nil && s.stopped != "" && e.reason == "" {
		e.reason, e.outcome = s.stopped, job.OutcomeLost
	}
	d.mu.Unlock()
	var outcome job.Outcome
	var code *int
	attrs := []any{}
	if e.reason != "" {
		// The dispatcher ended it: a failed or abandoned start, or a crawl
		// it lost and stopped.
		outcome = job.OutcomeFailed
		if e.outcome != "" {
			outcome = e.outcome
		}
		if j.Cancelled {
			outcome = job.OutcomeCancelled
		}
		attrs = append(attrs, "reason", e.reason)
	} else {
		reason := finishReason(jobfiles.Of(cfg, j.Project, j.Spider, j.ID).Log)
		outcome = Outcome(e.exit, j.Cancelled, reason)
		code = exitCode(e.exit)
		attrs = append(attrs, "finish_reason", reason)
	}
	err := d.Store.End(j.Seq, time.Now(), code, outcome, *e.stats, cfg.FinishedToKeep)
	if errors.Is(err, store.ErrFenced) {
		// The cluster declared this node dead and decided the job's fate
		// (lost, or queued again): this end must not overwrite it.
		log.Warn("crawl ended, its end not recorded: the cluster reaped the job while this node could not renew its lease", append([]any{"outcome", outcome}, attrs...)...)
		d.free(j.Seq)
		return true
	}
	if err != nil {
		log.Error("cannot record the crawl's end; trying again", "err", err, "retry_in", endRetry.String())
		return false
	}
	if code != nil {
		attrs = append(attrs, "exit_code", *code)
	} else {
		attrs = append(attrs, "exit", e.exit.String())
	}
	log.Info("crawl ended", append([]any{"outcome", outcome}, attrs...)...)
	d.free(j.Seq)
	if d.OnEnd != nil {
		j.Outcome = outcome
		d.OnEnd(j)
	}
	return true
}

// free gives a job's slot back.
func (d *Dispatcher) free(seq int64) {
	d.mu.Lock()
	delete(d.active, seq)
	d.mu.Unlock()
	d.changed()
}

// StopAll kills every crawl this node runs, for reason: a cluster node in
// requeue mode that cannot renew its lease must stop its crawls before
// another node may start them again. Their ends are recorded lost (or
// dropped, fenced, once the cluster reaped them). A crawl still starting
// is killed as soon as its start returns.
func (d *Dispatcher) StopAll(ctx context.Context, reason string) {
	d.mu.Lock()
	var kill []job.Job
	for _, s := range d.active {
		if s.stopped != "" {
			continue
		}
		s.stopped = reason
		switch {
		case !s.starting:
			kill = append(kill, s.j)
		case s.launched != nil:
			// Started, its handle not yet stored: killed now, and
			// again once its start is done.
			s.signal = syscall.SIGKILL
			kill = append(kill, withHandle(s.j, *s.launched))
		default:
			// start sees stopped when Launcher.Start returns.
			s.signal = syscall.SIGKILL
		}
	}
	d.mu.Unlock()
	for _, j := range kill {
		d.Log.Warn("stopping crawl", "project", j.Project, "spider", j.Spider, "job", j.ID, "reason", reason)
		if err := d.signal(ctx, j, syscall.SIGKILL); err != nil {
			d.Log.Error("cannot stop crawl", "job", j.ID, "err", err)
		}
	}
}

// exitCode is the exit status to record: the code, or 128+N for a crawl
// killed by signal N (the shell's convention); nil when unknown.
func exitCode(e launch.Exit) *int {
	if !e.Known {
		return nil
	}
	if e.Code == nil && e.Signal != 0 {
		c := 128 + int(e.Signal)
		return &c
	}
	return e.Code
}

func (d *Dispatcher) mkdir(dir string) error {
	if d.MakeDir != nil {
		return d.MakeDir(dir)
	}
	return os.MkdirAll(dir, 0o755)
}

func (d *Dispatcher) changed() {
	if d.OnChange != nil {
		d.OnChange()
	}
}

// Outcome decides how a crawl ended from its exit, whether a user cancelled
// it, and the finish_reason Scrapy logged ("" if unknown).
func Outcome(exit launch.Exit, cancelled bool, reason string) job.Outcome {
	switch {
	case cancelled || reason == "cancelled":
		return job.OutcomeCancelled
	case !exit.Known:
		switch reason {
		case "finished":
			return job.OutcomeFinished
		case "":
			return job.OutcomeLost
		}
		return job.OutcomeFailed
	case exit.Code != nil && *exit.Code == 0 && reason != "shutdown":
		return job.OutcomeFinished
	}
	return job.OutcomeFailed
}

// ErrNotRunning: cancel found the job neither pending nor running.
var ErrNotRunning = errors.New("job is not pending or running")

// Cancel stops a job the way cancel.json does and returns its previous
// state: a pending job is removed; a running one gets sig, and a second
// cancel of a job already told to stop gets SIGKILL. A job still starting
// gets the signal once its start is done. In a cluster, a job running on
// another node is signalled by that node (see DeliverCancels).
func (d *Dispatcher) Cancel(ctx context.Context, project, id string, sig syscall.Signal) (job.State, error) {
	n, err := d.Store.CancelPending(project, id)
	if err != nil {
		return "", err
	}
	prev := job.State("")
	if n > 0 {
		prev = job.Pending
		d.changed()
	}
	d.mu.Lock()
	var slots []*slot
	for _, s := range d.active {
		if s.j.Project == project && s.j.ID == id {
			slots = append(slots, s)
		}
	}
	d.mu.Unlock()
	if d.Remote != nil {
		mine := make([]int64, len(slots))
		for i, s := range slots {
			mine[i] = s.j.Seq
		}
		n, err := d.Remote.RequestCancel(project, id, sig, mine)
		if err != nil {
			return prev, err
		}
		if n > 0 {
			d.Log.Info("asked another node to cancel its crawl", "project", project, "job", id)
			prev = job.Running
		}
	}
	for _, s := range slots {
		before, err := d.Store.MarkCancelled(s.j.Seq)
		if err != nil {
			return prev, err
		}
		sg := sig
		if before {
			sg = syscall.SIGKILL
		}
		d.mu.Lock()
		starting, j := s.starting, s.j
		if starting {
			s.signal = sg
		}
		d.mu.Unlock()
		d.Log.Info("cancelling crawl", "project", project, "spider", j.Spider, "job", id, "signal", sg.String(), "starting", starting)
		prev = job.Running
		if starting {
			continue
		}
		if err := d.signal(ctx, j, sg); err != nil {
			return prev, err
		}
	}
	return prev, nil
}

// DeliverCancels signals this node's crawls that other nodes asked to
// cancel (cancel.json on another node), each request once: a crawl still
// starting gets its signal when its start is done. A request for a job
// whose slot this node does not hold (yet) stays for the next look.
func (d *Dispatcher) DeliverCancels(ctx context.Context) {
	d.delivering.Lock()
	defer d.delivering.Unlock()
	reqs, err := d.Remote.CancelRequests(ctx)
	if err != nil {
		d.Log.Error("cannot read the cancels other nodes asked for", "err", err)
		return
	}
	for _, r := range reqs {
		d.mu.Lock()
		s := d.active[r.Seq]
		var j job.Job
		starting := false
		if s != nil {
			j, starting = s.j, s.starting
			if starting {
				s.signal = r.Signal
			}
		}
		d.mu.Unlock()
		if s == nil {
			continue
		}
		d.Log.Info("cancelling crawl, as another node asked", "project", j.Project, "spider", j.Spider, "job", j.ID, "signal", r.Signal.String(), "starting", starting)
		if !starting {
			if err := d.signal(ctx, j, r.Signal); err != nil {
				d.Log.Error("cannot signal the crawl another node cancelled", "job", j.ID, "err", err)
				continue
			}
		}
		if err := d.Remote.CancelDelivered(r.Seq, r.Requests); err != nil {
			d.Log.Error("cannot record a cancel's delivery", "job", j.ID, "err", err)
		}
	}
}

// signal sends sig to a started job's crawl; a crawl already gone is no error.
func (d *Dispatcher) signal(ctx context.Context, j job.Job, sig syscall.Signal) error {
	err := d.Launcher.Signal(ctx, launch.Handle{ID: j.Handle, PID: j.PID, Job: j.ID}, sig)
	if err != nil && !errors.Is(err, launch.ErrGone) {
		return err
	}
	return nil
}
