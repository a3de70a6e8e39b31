// Package service implements Scrapyd's operations as Go methods: it takes
// one config snapshot per call, checks every name, and works on the egg
// store, the job store and the dispatcher. The API layer only decodes
// requests and encodes results.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/pyenv"
	"github.com/scrapyd-debian/scrapyd/appliance/recur"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapy"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Lister lists a project's spiders (scrapy.Lister in production).
type Lister interface {
	List(ctx context.Context, p scrapy.Project) ([]string, error)
}

// Service is safe for concurrent use.
type Service struct {
	Config   func() *config.Config
	Store    Jobs
	Eggs     Eggs
	Dispatch *dispatch.Dispatcher
	Lister   func(cfg *config.Config) Lister
	// Diagnose, when set, reports the daemon's own state (see Diagnostics).
	Diagnose func() Diagnostics
	// Envs and Install, when set, build the Python environments uploads
	// ask for (requirements, wheels); without them such uploads are refused.
	Envs    Envs
	Install func(cfg *config.Config) pyenv.Install
	// Schedules runs the recurring schedules; nil: none (unit tests).
	Schedules *recur.Scheduler
	// ListNodes, in cluster mode, lists the cluster's nodes (see Nodes).
	ListNodes func(ctx context.Context) ([]Node, error)
	// ShippedLogs, when set (cluster mode), says which jobs have a log in
	// the shared database: listjobs.json links those this node has no
	// file of, since any node serves them.
	ShippedLogs func(ctx context.Context, seqs []int64) (map[int64]bool, error)

	flights sync.Map // spider-list key → *flight: one `scrapy list` per (project, version) at a time
}

type flight struct {
	done  chan struct{}
	names []string
	err   error
}

func checkName(param, value string) error {
	if err := job.CheckName(value); err != nil {
		return unsafeName(param, value, err)
	}
	return nil
}

// checkProject: nil when a project has eggs or is a [settings] project,
// projectNotFound when it has neither; a shared database that cannot be
// reached is said as such: the project may well exist.
func (s *Service) checkProject(cfg *config.Config, project string) error {
	if _, ok := cfg.Settings[project]; ok {
		return nil
	}
	projects, err := s.Eggs.Projects()
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	if err != nil || !slices.Contains(projects, project) {
		return projectNotFound(project)
	}
	return nil
}

// version finds a version as Eggs.Find does, from the listing alone: a
// cluster's store fetches the egg (and builds its environment) at Find,
// which only what reads the file needs.
func (s *Service) version(project, version string) (egg.Version, error) {
	vs, err := s.Eggs.Versions(project)
	if err != nil {
		return egg.Version{}, err
	}
	return egg.Match(vs, version)
}

// DaemonStatus returns the pending, running and finished counts.
func (s *Service) DaemonStatus() (pending, running, finished int) { return s.Store.Counts() }

// Upload is an uploaded egg staged on disk for a project: written as it
// arrived, never held in memory whole, and not yet a version.
type Upload struct {
	project string
	staged  egg.Staged
	done    bool
	// Deps are the requirements and wheels sent with the egg.
	Deps Deps
}

// Receive stages project's egg read from r. Discard it unless AddVersion
// stores it.
func (s *Service) Receive(project string, r io.Reader) (*Upload, error) {
	staged, err := s.Eggs.Stage(project, r)
	if err != nil {
		return nil, err
	}
	return &Upload{project: project, staged: staged}, nil
}

// Discard removes an upload that was not stored; after AddVersion stored
// it, it does nothing.
func (u *Upload) Discard() {
	if !u.done && u.staged != nil {
		u.done = true
		u.staged.Abort()
	}
	if u.Deps.Wheels != nil {
		u.Deps.Wheels.Discard()
	}
}

// AddVersion checks an uploaded egg, builds (or reuses) the environment
// its requirements and wheels ask for, lists its spiders in it, and only
// then stores it: an egg that is not a zip, names no settings module,
// whose install or `scrapy list` fails is refused and nothing is stored
// (Scrapyd stored it anyway, transcript #52-#53), no egg and no
// environment. A refused upload is discarded.
func (s *Service) AddVersion(ctx context.Context, project, version string, up *Upload) (spiders int, err error) {
	defer up.Discard()
	cfg := s.Config()
	if err := checkName("project", project); err != nil {
		return 0, err
	}
	if err := checkName("version", version); err != nil {
		return 0, err
	}
	if up.project != project {
		return 0, fmt.Errorf("add version: the egg was staged for project %q, not %q", up.project, project)
	}
	mod, err := egg.SettingsModuleOf(up.staged.Path())
	if errors.Is(err, egg.ErrNotZip) {
		return 0, &Error{Message: egg.ErrNotZip.Error()}
	}
	if err != nil {
		return 0, &Error{Message: err.Error()}
	}
	env, err := s.environment(ctx, cfg, up.Deps)
	if err != nil {
		return 0, err
	}
	p := scrapy.Project{Name: project, Egg: up.staged.Path(), SettingsModule: mod}
	if env != nil {
		// Released after the commit, then collected: a refused upload
		// leaves no environment, a replaced version none it alone used.
		defer s.collectEnvs()
		defer env.Release()
		p.Python = env.Python
		up.staged.UseEnv(env.ID)
	}
	names, err := s.Lister(cfg).List(ctx, p)
	if err != nil {
		return 0, listError(err)
	}
	details := egg.Details{Spiders: names}
	if env != nil {
		details.Requirements = up.Deps.Requirements
		if up.Deps.Wheels != nil {
			details.Wheels = up.Deps.Wheels.path
		}
	}
	up.staged.UseDetails(details)
	replaced, _ := s.version(project, version)
	if err := up.staged.Commit(version); err != nil {
		return 0, err
	}
	up.done = true
	if env == nil && replaced.Env != "" && egg.Sanitize(replaced.Name) == egg.Sanitize(version) {
		s.collectEnvs()
	}
	if err := s.Store.SetSpiders(project, version, names); err != nil {
		return 0, err
	}
	return len(names), nil
}

func listError(err error) error {
	var re *scrapy.RunnerError
	if errors.As(err, &re) {
		return &Error{Message: re.Error()}
	}
	return err
}

// Spiders lists a project version's spiders ("" for the latest), from the
// cache when it can. Other requests go on while `scrapy list` runs.
func (s *Service) Spiders(ctx context.Context, project, version string) ([]string, error) {
	cfg := s.Config()
	if err := checkName("project", project); err != nil {
		return nil, err
	}
	if mod, ok := cfg.Settings[project]; ok && version == "" {
		names, err := s.Lister(cfg).List(ctx, scrapy.Project{Name: project, SettingsModule: mod})
		return names, listError(err)
	}
	v, err := s.version(project, version)
	if errors.Is(err, egg.ErrNotFound) {
		err := s.checkProject(cfg, project)
		if version != "" && err == nil {
			return nil, versionNotFound(version)
		}
		if err == nil {
			err = projectNotFound(project)
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	if names, ok, err := s.Store.Spiders(ctx, project, v.Name); err != nil || ok {
		return names, err
	}
	key := project + "\x00" + v.Name
	f := &flight{done: make(chan struct{})}
	if prev, loaded := s.flights.LoadOrStore(key, f); loaded {
		f = prev.(*flight)
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return f.names, f.err
	}
	defer func() { s.flights.Delete(key); close(f.done) }()
	// The egg's file (a cluster's node fetches it now).
	name := v.Name
	if v, err = s.Eggs.Find(project, name); errors.Is(err, egg.ErrNotFound) {
		err = versionNotFound(name) // deleted meanwhile
	}
	if err != nil {
		f.err = err
		return nil, err
	}
	mod, err := egg.SettingsModuleOf(v.Path)
	if err != nil {
		f.err = &Error{Message: err.Error()}
		return nil, f.err
	}
	f.names, f.err = s.Lister(cfg).List(context.WithoutCancel(ctx), scrapy.Project{Name: project, Egg: v.Path, SettingsModule: mod, Python: s.envPython(cfg, v)})
	if f.err != nil {
		f.err = listError(f.err)
		return nil, f.err
	}
	if err := s.Store.SetSpiders(project, v.Name, f.names); err != nil {
		return nil, err
	}
	return f.names, nil
}

// ScheduleRequest is schedule.json's parameters, undecoded beyond strings.
type ScheduleRequest struct {
	Project, Spider, Version, JobID, Priority string
	Settings                                  []string // each NAME=VALUE
	Args                                      []job.Pair
}

// Schedule queues a crawl and wakes the dispatcher; the job starts at once
// when a slot is free.
func (s *Service) Schedule(ctx context.Context, r ScheduleRequest) (string, error) {
	spec, err := s.spec(ctx, r)
	if err != nil {
		return "", notScheduled(r.JobID, err)
	}
	if spec.ID == "" {
		spec.ID = job.NewID()
	}
	if _, err := s.Store.Enqueue(spec, time.Now()); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			return "", duplicateJob(spec.ID)
		}
		return "", notScheduled(spec.ID, err)
	}
	s.Dispatch.Wake()
	return spec.ID, nil
}

// spec checks schedule.json's parameters (but the job id) and that the
// project has the spider, and returns the job they describe.
func (s *Service) spec(ctx context.Context, r ScheduleRequest) (job.Spec, error) {
	cfg := s.Config()
	for _, p := range []struct{ name, value string }{{"project", r.Project}, {"spider", r.Spider}} {
		if err := checkName(p.name, p.value); err != nil {
			return job.Spec{}, err
		}
	}
	if r.Version != "" {
		if err := checkName("_version", r.Version); err != nil {
			return job.Spec{}, err
		}
	}
	spec := job.Spec{ID: r.JobID, Project: r.Project, Spider: r.Spider, Version: r.Version}
	if spec.ID != "" {
		if err := checkName("jobid", spec.ID); err != nil {
			return job.Spec{}, err
		}
	}
	if r.Priority != "" {
		p, err := strconv.ParseFloat(strings.TrimSpace(r.Priority), 64)
		if err != nil {
			return job.Spec{}, badPriority(r.Priority)
		}
		spec.Priority = p
	}
	for i, kv := range r.Settings {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return job.Spec{}, badSetting(i)
		}
		spec.Settings = append(spec.Settings, job.Pair{Name: k, Value: v})
	}
	for _, a := range r.Args {
		if a.Name == "" || strings.ContainsAny(a.Name, "=\x00") || strings.HasPrefix(a.Name, "-") {
			return job.Spec{}, Invalid("argument "+strconv.Quote(a.Name), "not a valid spider argument name")
		}
		spec.Args = append(spec.Args, a)
	}
	if err := checkArgSizes(spec); err != nil {
		return job.Spec{}, err
	}
	if err := s.checkProject(cfg, r.Project); err != nil {
		return job.Spec{}, err
	}
	spiders, err := s.Spiders(ctx, r.Project, r.Version)
	if err != nil {
		return job.Spec{}, err
	}
	if !contains(spiders, r.Spider) {
		return job.Spec{}, spiderNotFound(r.Spider)
	}
	return spec, nil
}

// checkArgSizes refuses what the kernel would refuse at exec time, and NUL
// bytes, which no argument can carry.
func checkArgSizes(spec job.Spec) error {
	total := 0
	for _, group := range []struct {
		kind  string
		pairs []job.Pair
	}{{"setting", spec.Settings}, {"argument", spec.Args}} {
		for _, p := range group.pairs {
			if strings.ContainsRune(p.Name+p.Value, 0) {
				return Invalid(group.kind+" "+p.Name, "contains a NUL byte")
			}
			n := len(p.Name) + 1 + len(p.Value)
			if n > maxArgBytes {
				return argTooLarge(group.kind, p.Name, n)
			}
			total += n + 3 // "-a" or "-s", and the NULs
		}
	}
	if total > maxTotalBytes {
		return argsTooLarge(total)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Cancel cancels a job and returns its previous state ("" for none): a
// pending job is removed, a running one signalled (INT by default), and a
// second cancel of a running job escalates to KILL.
func (s *Service) Cancel(ctx context.Context, project, id, signal string) (job.State, error) {
	cfg := s.Config()
	if err := checkName("project", project); err != nil {
		return "", err
	}
	if err := s.checkProject(cfg, project); err != nil {
		return "", err
	}
	sig := syscall.SIGINT
	if signal != "" {
		var ok bool
		if sig, ok = ParseSignal(signal); !ok {
			return "", badSignal(signal)
		}
	}
	return s.Dispatch.Cancel(ctx, project, id, sig)
}

// Status finds a job as status.json does: finished first, then running,
// then pending. A nil job means unknown.
func (s *Service) Status(ctx context.Context, id, project string) (*job.Job, error) {
	if project != "" {
		if err := s.checkProject(s.Config(), project); err != nil {
			return nil, err
		}
	}
	j, err := s.Store.Find(ctx, project, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return j, err
}

// Projects lists egg projects, then [settings] projects not already listed.
func (s *Service) Projects() ([]string, error) {
	out, err := s.Eggs.Projects()
	if err != nil {
		return nil, err
	}
	var extra []string
	for p := range s.Config().Settings {
		if !contains(out, p) {
			extra = append(extra, p)
		}
	}
	sort.Strings(extra)
	return append(out, extra...), nil
}

// Versions lists a project's versions as uploaded, oldest first.
func (s *Service) Versions(project string) ([]egg.Version, error) {
	if err := checkName("project", project); err != nil {
		return nil, err
	}
	return s.Eggs.Versions(project)
}

// DeleteVersion removes one version and its cached spider list.
func (s *Service) DeleteVersion(project, version string) error {
	if err := checkName("project", project); err != nil {
		return err
	}
	v, err := s.version(project, version)
	if errors.Is(err, egg.ErrNotFound) || version == "" {
		return versionNotFound(version)
	}
	if err != nil {
		return err
	}
	if err := s.Eggs.Delete(project, v.Name); err != nil {
		return err
	}
	if v.Env != "" {
		s.collectEnvs()
	}
	if s.Schedules != nil {
		if left, err := s.Eggs.Versions(project); err == nil && len(left) == 0 {
			s.Schedules.PauseWhere(project, "", "project '"+project+"' was deleted (its last version, '"+v.Name+"')")
		} else {
			s.Schedules.PauseWhere(project, v.Name, "version '"+v.Name+"' of project '"+project+"' was deleted")
		}
	}
	return s.Store.ForgetSpiders(project, v.Name)
}

// DeleteProject removes a project's eggs and cached spider lists. Its job
// history stays, as in Scrapyd.
func (s *Service) DeleteProject(project string) error {
	if err := checkName("project", project); err != nil {
		return err
	}
	if err := s.Eggs.DeleteProject(project); errors.Is(err, egg.ErrNotFound) {
		return projectNotFound(project)
	} else if err != nil {
		return err
	}
	s.collectEnvs()
	if s.Schedules != nil {
		s.Schedules.PauseWhere(project, "", "project '"+project+"' was deleted")
	}
	return s.Store.ForgetSpiders(project, "")
}

// ParseSignal accepts a signal name (INT, SIGINT, term) or number.
func ParseSignal(s string) (syscall.Signal, bool) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, false
		}
		return syscall.Signal(n), true
	}
	name := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "SIG")
	sig, ok := signals[name]
	return sig, ok
}

var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "KILL": syscall.SIGKILL,
	"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "TERM": syscall.SIGTERM, "CONT": syscall.SIGCONT,
	"STOP": syscall.SIGSTOP, "ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM,
}

// Entry is a job as listjobs.json shows it: with links to its log and
// items, each "" when the file does not exist.
type Entry struct {
	*job.Job
	LogURL, ItemsURL string
	// Env is the environment of the job's version (the latest when it
	// named none, as of this listing); "" for a version without one.
	Env string
	// Waiting names the slot cap that holds a pending job back
	// ("max_proc" or "spider_max_proc"), "" when none does.
	Waiting string
}

// Listing is listjobs.json's three sections.
type Listing struct {
	Pending, Running, Finished []Entry
}

// JobsQuery narrows listjobs.json. Limit/Offset page the finished section
// (our addition; without them the answer is Scrapyd's).
type JobsQuery struct {
	Project string
	Spider  string    // "" for every spider (our addition, for the web pages)
	State   job.State // "" for all three
	Limit   int
	Offset  int
	// Node keeps one node's running and finished jobs, in cluster mode
	// (issue 15; "" for the whole cluster). A pending job is no node's.
	Node string
}

// Jobs lists jobs. The log and items links are checked against one
// directory listing per spider, not one stat per job, so that a thousand
// finished jobs list in a millisecond or two.
func (s *Service) Jobs(ctx context.Context, q JobsQuery) (Listing, error) {
	cfg := s.Config()
	if q.Project != "" {
		if err := checkName("project", q.Project); err != nil {
			return Listing{}, err
		}
		if err := s.checkProject(cfg, q.Project); err != nil {
			return Listing{}, err
		}
	}
	if q.Node != "" {
		if err := s.checkNode(ctx, q.Node); err != nil {
			return Listing{}, err
		}
	}
	want := map[job.State]bool{job.Pending: true, job.Running: true, job.Finished: true}
	if q.State != "" {
		want = map[job.State]bool{q.State: true}
	}
	f := store.Filter{Project: q.Project, Spider: q.Spider, Node: q.Node}
	fin := f
	fin.Limit, fin.Offset = q.Limit, q.Offset
	pending, running, finished, err := s.Store.Snapshot(ctx, f, fin, want)
	if err != nil {
		return Listing{}, err
	}
	files := jobfiles.NewIndex()
	envs := s.envIndex()
	entry := func(j *job.Job, withFiles bool) Entry {
		e := Entry{Job: j, Env: envs(j.Project, j.Version)}
		if withFiles {
			e.LogURL, e.ItemsURL = files.URLs(cfg, j.Project, j.Spider, j.ID)
			if e.ItemsURL == "" && j.Items {
				// On its node (cluster mode), which this one forwards to.
				_, e.ItemsURL = jobfiles.URLs(cfg, j.Project, j.Spider, j.ID)
			}
		}
		return e
	}
	l := Listing{Pending: make([]Entry, len(pending)), Running: make([]Entry, len(running)), Finished: make([]Entry, len(finished))}
	var caps store.Caps
	var counts store.Running
	if len(pending) > 0 {
		if caps = dispatch.Caps(cfg); caps != nil {
			if counts, err = s.Store.RunningCounts(ctx); err != nil {
				return Listing{}, err
			}
		}
	}
	for i := range pending {
		l.Pending[i] = entry(&pending[i], false)
		if caps != nil {
			l.Pending[i].Waiting = caps.Waiting(counts, pending[i].Project, pending[i].Spider)
		}
	}
	for i := range running {
		l.Running[i] = entry(&running[i], true)
	}
	for i := range finished {
		l.Finished[i] = entry(&finished[i], true)
	}
	if err := s.linkShippedLogs(ctx, cfg, l.Running, l.Finished); err != nil {
		return Listing{}, err
	}
	return l, nil
}

// linkShippedLogs gives the entries without a local log the link to the
// log their node shipped to the shared database, when it did: one query
// for the listing.
func (s *Service) linkShippedLogs(ctx context.Context, cfg *config.Config, lists ...[]Entry) error {
	if s.ShippedLogs == nil || cfg.LogsDir == "" {
		return nil
	}
	var seqs []int64
	for _, list := range lists {
		for _, e := range list {
			if e.LogURL == "" {
				seqs = append(seqs, e.Job.Seq)
			}
		}
	}
	if len(seqs) == 0 {
		return nil
	}
	shipped, err := s.ShippedLogs(ctx, seqs)
	if err != nil {
		return err
	}
	for _, list := range lists {
		for i := range list {
			if e := &list[i]; e.LogURL == "" && shipped[e.Job.Seq] {
				e.LogURL, _ = jobfiles.URLs(cfg, e.Job.Project, e.Job.Spider, e.Job.ID)
			}
		}
	}
	return nil
}

// JobURLs returns a job's log and items links ("" when missing).
func (s *Service) JobURLs(j job.Job) (logURL, itemsURL string) {
	return jobfiles.NewIndex().URLs(s.Config(), j.Project, j.Spider, j.ID)
}
