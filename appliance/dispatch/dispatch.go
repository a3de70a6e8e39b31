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
}

// Dispatcher owns the process slots.
type Dispatcher struct {
	Options

	wake  chan struct{}
	ended chan ended

	mu     sync.Mutex // serialises starting and signalling, so a cancel never sees a half-started crawl
	active map[int64]job.Job
}

type ended struct {
	j    job.Job
	exit launch.Exit
}

// New returns a Dispatcher; call Run to start it.
func New(o Options) *Dispatcher {
	return &Dispatcher{Options: o, wake: make(chan struct{}, 1), ended: make(chan ended, 64), active: map[int64]job.Job{}}
}

// Wake asks the dispatcher to look for startable jobs now. It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Running reports how many crawls hold a slot.
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
		case e := <-d.ended:
			d.finish(e)
		}
	}
}

// adopt re-attaches every job the store says is running.
func (d *Dispatcher) adopt(ctx context.Context) error {
	jobs, err := d.Store.List(ctx, job.Running, store.Filter{})
	if err != nil {
		return fmt.Errorf("adopt: %w", err)
	}
	for _, j := range jobs {
		log := d.Log.With("project", j.Project, "spider", j.Spider, "job", j.ID)
		if j.Handle == "" {
			// Claimed, but the daemon died before the launch was recorded.
			log.Warn("job was claimed but never recorded as started; queued again")
			if err := d.Store.Requeue(j.Seq); err != nil {
				return fmt.Errorf("adopt: %w", err)
			}
			continue
		}
		w, exit, err := d.Launcher.Recover(ctx, launch.Handle{ID: j.Handle, PID: j.PID})
		if err != nil {
			if !errors.Is(err, launch.ErrGone) {
				log.Error("cannot recover crawl; recording it as ended", "handle", j.Handle, "err", err)
			} else {
				log.Info("crawl ended while the daemon was away", "handle", j.Handle)
			}
			d.finish(ended{j: j, exit: exit})
			continue
		}
		log.Info("adopted running crawl", "handle", j.Handle, "pid", j.PID)
		d.mu.Lock()
		d.active[j.Seq] = j
		d.mu.Unlock()
		go d.await(j, w)
	}
	return nil
}

// fill starts pending jobs while slots are free.
func (d *Dispatcher) fill(ctx context.Context) {
	for {
		cfg := d.Config()
		d.mu.Lock()
		if len(d.active) >= cfg.Slots() {
			d.mu.Unlock()
			return
		}
		j, err := d.Store.Claim(time.Now())
		if err != nil || j == nil {
			d.mu.Unlock()
			if err != nil {
				d.Log.Error("cannot take the next pending job", "err", err)
			}
			return
		}
		d.start(ctx, cfg, *j)
		d.mu.Unlock()
		d.changed()
	}
}

// start launches a claimed job; the caller holds d.mu.
func (d *Dispatcher) start(ctx context.Context, cfg *config.Config, j job.Job) {
	log := d.Log.With("project", j.Project, "spider", j.Spider, "job", j.ID)
	c, err := d.crawl(cfg, j)
	if err == nil {
		var h launch.Handle
		var w launch.Watch
		h, w, err = d.Launcher.Start(ctx, scrapy.Command(c))
		if err == nil {
			if err = d.Store.Started(j.Seq, h.ID, h.PID); err != nil {
				log.Error("crawl started but its handle could not be stored", "err", err)
			}
			j.Handle, j.PID = h.ID, h.PID
			d.active[j.Seq] = j
			log.Info("crawl started", "pid", h.PID, "handle", h.ID, "launcher", d.Launcher.Name())
			go d.await(j, w)
			return
		}
	}
	// A job that cannot start ends at once, with its reason in its log: it
	// never vanishes and never holds a slot (Scrapyd issue #543).
	log.Error("crawl could not be started", "err", err)
	if c.LogFile != "" {
		appendLine(c.LogFile, fmt.Sprintf("%s [scrapyd] ERROR: crawl could not be started: %v", time.Now().Format("2006-01-02 15:04:05"), err))
	}
	if err := d.Store.End(j.Seq, time.Now(), nil, job.OutcomeFailed, "", cfg.FinishedToKeep); err != nil {
		log.Error("cannot record the failed start", "err", err)
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
func (d *Dispatcher) await(j job.Job, w launch.Watch) {
	<-w.Done()
	d.ended <- ended{j: j, exit: w.Exit()}
}

// finish records a crawl's end and frees its slot.
func (d *Dispatcher) finish(e ended) {
	cfg := d.Config()
	j := e.j
	// The cancel flag may have been set after the crawl started.
	if cur, err := d.Store.Find(context.Background(), j.Project, j.ID); err == nil && cur.Seq == j.Seq {
		j.Cancelled = cur.Cancelled
	}
	var stats string
	if d.Hooks != nil {
		stats = d.Hooks.Ended(j)
	}
	reason := finishReason(jobfiles.Of(cfg, j.Project, j.Spider, j.ID).Log)
	outcome := Outcome(e.exit, j.Cancelled, reason)
	var code *int
	if e.exit.Known {
		code = e.exit.Code
		if code == nil && e.exit.Signal != 0 {
			c := 128 + int(e.exit.Signal) // the shell's convention for "killed by signal N"
			code = &c
		}
	}
	log := d.Log.With("project", j.Project, "spider", j.Spider, "job", j.ID)
	if err := d.Store.End(j.Seq, time.Now(), code, outcome, stats, cfg.FinishedToKeep); err != nil {
		log.Error("cannot record the crawl's end", "err", err)
	}
	log.Info("crawl ended", "outcome", outcome, "exit_code", fmtCode(code), "finish_reason", reason)
	d.mu.Lock()
	delete(d.active, j.Seq)
	d.mu.Unlock()
	d.changed()
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
// cancel of a job already told to stop gets SIGKILL.
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
	defer d.mu.Unlock()
	for seq, j := range d.active {
		if j.Project != project || j.ID != id {
			continue
		}
		before, err := d.Store.MarkCancelled(seq)
		if err != nil {
			return prev, err
		}
		s := sig
		if before {
			s = syscall.SIGKILL
		}
		d.Log.Info("cancelling crawl", "project", project, "spider", j.Spider, "job", id, "signal", s.String())
		if err := d.Launcher.Signal(ctx, launch.Handle{ID: j.Handle, PID: j.PID}, s); err != nil && !errors.Is(err, launch.ErrGone) {
			return prev, err
		}
		prev = job.Running
	}
	return prev, nil
}

func fmtCode(c *int) any {
	if c == nil {
		return nil
	}
	return *c
}
