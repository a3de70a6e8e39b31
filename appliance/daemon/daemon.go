// Package daemon wires the daemon together: configuration, state, the
// launcher, the dispatcher, the API and its listeners, signals and
// shutdown. It holds no logic of its own beyond that wiring.
package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/api"
	"github.com/scrapyd-debian/scrapyd/appliance/archive"
	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/confine"
	"github.com/scrapyd-debian/scrapyd/appliance/crawlrpc"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/events"
	"github.com/scrapyd-debian/scrapyd/appliance/forward"
	"github.com/scrapyd-debian/scrapyd/appliance/idle"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/journal"
	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/listen"
	"github.com/scrapyd-debian/scrapyd/appliance/logship"
	"github.com/scrapyd-debian/scrapyd/appliance/metrics"
	"github.com/scrapyd-debian/scrapyd/appliance/notify"
	"github.com/scrapyd-debian/scrapyd/appliance/pyenv"
	"github.com/scrapyd-debian/scrapyd/appliance/recur"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapy"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
	"github.com/scrapyd-debian/scrapyd/appliance/web"
)

// Options come from the command line.
type Options struct {
	Config  config.Options
	Version string
}

// Run serves until ctx ends or a SIGTERM/SIGINT arrives. Crawls keep
// running after it returns; the next start adopts them.
func Run(ctx context.Context, o Options) error {
	// Signals are ours from the first instant: a SIGHUP's default action
	// kills the process, and `systemctl reload` may send one while the
	// daemon still starts. One that comes early waits in hup and is
	// applied as soon as the daemon is ready.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	cfg, err := config.Load(o.Config)
	if err == nil {
		err = Validate(cfg)
	}
	if err != nil {
		return err
	}
	// Reloads keep the layout decided now: a package installed meanwhile
	// must not move the default paths under a running daemon.
	layout := cfg.Layout
	o.Config.Layout = &layout
	d := &daemon{opts: o}
	d.current.Store(cfg)
	defer d.close()
	for _, start := range []func(context.Context, *config.Config) error{d.openLog, d.openState, d.startCrawls, d.wire} {
		if err := start(ctx, cfg); err != nil {
			if ctx.Err() != nil { // stopped while starting: the error is its echo
				if d.log != nil {
					d.log.Info("scrapyd stopped while starting")
				}
				return nil
			}
			return err
		}
	}
	// Stopped while starting: stop before dispatch adopts any crawl (with
	// its context ended, the launcher may be a fallback chosen in haste).
	if ctx.Err() != nil {
		d.log.Info("scrapyd stopped while starting")
		return nil
	}
	socks, err := listeners(cfg)
	if err != nil {
		return err
	}
	d.activated = socks.Activated
	if w := wakePath(socks.Wake); w != "" {
		d.wakeSock.Store(&w)
	}
	return d.serve(ctx, cfg, socks, hup)
}

// daemon holds the parts Run starts, in the order it starts them.
type daemon struct {
	opts    Options
	current atomic.Pointer[config.Config] // the configuration in force
	level   slog.LevelVar
	log     *slog.Logger
	closers []func() // run in reverse order when Run returns

	store    jobStore
	db       database
	eggs     eggStore
	envs     *pyenv.Store
	user     *crawlUser // nil when the daemon is not root
	crawlEnv []string
	launcher crawlLauncher
	rpc      *crawlrpc.Service
	disp     *dispatch.Dispatcher
	archiver *archive.Archiver
	shipper  *logship.Shipper // nil on a single node
	sched    *recur.Scheduler
	reloader *reloader
	metrics  *metrics.Metrics
	// metricsAfter is the newest job event when the daemon started: the
	// metrics count those after it, the ends of adopted crawls included.
	metricsAfter int64
	app          *fiber.App

	// Sleeping (sleep.go): the activity tracker, whether systemd passed
	// the sockets, and the wake socket crawls poke as they end.
	idle      *idle.Tracker
	activated bool
	wakeSock  atomic.Pointer[string]

	lease    *lease       // a cluster node's lease (always claiming with SQLite)
	feed     *events.Feed // job events as the store commits them
	webhooks *events.Webhooks
	stream   *events.Stream
}

func (d *daemon) conf() *config.Config { return d.current.Load() }

func (d *daemon) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

func (d *daemon) openLog(_ context.Context, cfg *config.Config) error {
	d.level.Set(logLevel(cfg))
	log, closeLog, err := openLog(cfg, &d.level)
	if err != nil {
		return err
	}
	d.log, d.closers = log, append(d.closers, closeLog)
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	return nil
}

// openState creates the data directories and opens the job database and
// the egg store.
func (d *daemon) openState(ctx context.Context, cfg *config.Config) error {
	// dbs_dir is the daemon's alone: the job database holds every spider
	// argument, which may carry credentials.
	// runtime_dir too: crawlrpc fills it later, and a failure here names
	// the option to change.
	for _, dir := range []struct {
		key, path string
		mode      os.FileMode
	}{{"eggs_dir", cfg.EggsDir, 0o755}, {"envs_dir", cfg.EnvsDir, 0o755}, {"dbs_dir", cfg.DbsDir, 0o700}, {"logs_dir", cfg.LogsDir, 0o755}, {"items_dir", jobfiles.LocalItemsDir(cfg), 0o755}, {"crawl_dir", cfg.CrawlDir, 0o755}, {"runtime_dir", runtimeDir(cfg, os.Getenv), 0o755}} {
		if dir.path != "" {
			if err := os.MkdirAll(dir.path, dir.mode); err != nil {
				return cfg.PathError(dir.key, dir.path, err)
			}
		}
	}
	db, err := openDatabase(ctx, cfg, d.opts.Version)
	if err != nil {
		return err
	}
	st := db.all
	d.db, d.store, d.closers = db, st, append(d.closers, func() { st.Close() })
	d.feed = events.NewFeed(st)
	st.OnEvent(d.feed.Notify)
	d.eggs = d.openEggs(cfg)
	// Environments no version uses any more (a crash between a delete and
	// its collection), and half-built ones, go at start.
	d.envs = &pyenv.Store{Dir: cfg.EnvsDir}
	if gone := d.envs.Collect(func() (map[string]bool, error) { return service.EnvsInUse(d.eggs) }, true); len(gone) > 0 {
		d.log.Info("removed Python environments no version uses", "envs", gone)
	}
	return nil
}

// startCrawls resolves who runs crawls and how: the crawl user, the
// launcher, and the crawl web service every crawl talks to.
func (d *daemon) startCrawls(ctx context.Context, cfg *config.Config) error {
	var err error
	if d.user, err = crawlIdentity(cfg); err != nil {
		return err
	}
	if d.launcher, err = newLauncher(ctx, cfg, d.user, d.log, d.wakeCommand); err != nil {
		return err
	}
	d.closers = append(d.closers, d.launcher.close)
	d.crawlEnv = crawlEnvironment(os.Environ(), d.user)
	st := d.store
	d.rpc, err = crawlrpc.New(crawlrpc.Options{
		RuntimeDir: filepath.Join(runtimeDir(cfg, os.Getenv), "crawlrpc"),
		Running:    func(id string) bool { return st.IsRunning(context.Background(), id) },
		Log:        d.log,
	}, webserviceConfig(cfg))
	if err != nil {
		return err
	}
	d.closers = append(d.closers, func() { d.rpc.Close() })
	return nil
}

// wire builds the dispatcher, the service, the reloader and the HTTP app
// over the parts started before.
func (d *daemon) wire(ctx context.Context, cfg *config.Config) error {
	st, rpc := d.store, d.rpc
	d.idle = idle.New(nil)
	d.metrics = d.newMetrics()
	// One quick read, not cut short by a SIGTERM while starting: Run
	// decides about that after the wiring.
	after, err := d.feed.Last(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	d.metricsAfter = after
	d.archiver = archive.New(archive.Archiver{Config: d.conf, Jobs: st, Log: d.log})
	var lastRunning atomic.Int64
	d.sched = recur.New(recur.Options{Store: st, Wake: func() { d.disp.Wake() }, Log: d.log})
	if err := d.sched.Load(ctx); err != nil {
		return err
	}
	sched := d.sched
	d.lease = newLease(d)
	var exited func(job.Job)
	if d.db.logs != nil {
		// Cluster mode: crawl logs are shipped for every node to serve.
		d.shipper = &logship.Shipper{Store: d.db.logs, Config: d.conf, Log: d.log, Chunk: pgstore.MaxLogChunk}
		exited = d.shipper.Ended
	}
	d.disp = dispatch.New(dispatch.Options{
		MayClaim: d.lease.mayClaim,
		Config:   d.conf, Store: d.db.local, Eggs: d.eggs, Launcher: d.launcher.Launcher, Log: d.log,
		Hooks: &crawlHooks{rpc: rpc, log: d.log, chown: d.user.chown, wake: d.wakePath},
		Env:   d.crawlEnv, MakeDir: d.user.mkdirAll, Remote: d.db.remote,
		// The scheduler hears of its runs' ends (retries, runs queued
		// behind them); it writes to the store: not in the dispatch loop.
		// In a cluster the lead follows every node's ends instead
		// (lead.go), from the copy of the schedules it alone writes.
		OnEnd: func(j job.Job) {
			if d.db.lead == nil {
				go sched.Ended(context.Background(), j)
			}
			if d.db.setItems != nil {
				go d.recordItems(j)
			}
		},
		// Cluster mode: a crawl's last log bytes are shipped before its
		// end is recorded.
		Exited: exited,
		OnChange: func() {
			d.idle.Touch()
			p, r, _ := st.Counts()
			notify.Status(r, p)
			// A crawl ended: its files are counted and compressed, and the
			// retention limits applied, off the dispatch path.
			if r < int(lastRunning.Swap(int64(r))) {
				d.archiver.Wake()
			}
		},
	})
	d.webhooks = &events.Webhooks{Feed: d.feed, Cursors: st, Config: d.conf, Log: d.log, UserAgent: "scrapyd/" + d.opts.Version}
	d.stream = &events.Stream{Feed: d.feed, Config: d.conf}
	d.startIdle()
	d.reloader = &reloader{opts: d.opts.Config, current: &d.current, log: d.log, level: &d.level, disp: d.disp, store: st,
		done: d.metrics.Reloaded,
		apply: func(next *config.Config) error {
			// A new crawl_dir is made as at start: listings chdir into it.
			if err := os.MkdirAll(next.CrawlDir, 0o755); err != nil {
				return next.PathError("crawl_dir", next.CrawlDir, err)
			}
			if err := rpc.Reload(webserviceConfig(next)); err != nil {
				return err
			}
			d.webhooks.Apply(next)
			return nil
		}}
	svc := &service.Service{Config: d.conf, Store: st, Eggs: d.eggs, Dispatch: d.disp, Lister: d.lister, Envs: d.envs, Install: d.install, Schedules: d.sched}
	pages := web.Options{Config: d.conf, Service: svc, Stats: rpc.Live}
	if logs := d.db.logs; logs != nil {
		svc.ShippedLogs = logs.HasShippedLogs
		reader := &logship.Reader{Source: logs}
		pages.SharedLogs = func(ctx context.Context, project, spider, id string) (web.SharedLog, bool, error) {
			l, ok, err := reader.Open(ctx, project, spider, id)
			if !ok {
				return nil, false, err
			}
			return l, true, nil
		}
	}
	if d.db.nodes != nil {
		svc.ListNodes = d.listNodes
	}
	svc.Diagnose = func() service.Diagnostics {
		return d.reloader.diagnose(service.Diagnostics{Launcher: d.launcher.Name(), Version: d.opts.Version, Warnings: securityWarnings(d.conf())})
	}
	routes := []func(fiber.Router){d.observeRoutes(d.metrics)}
	var peer func(*fiber.Ctx) (bool, bool)
	if d.db.place != nil {
		// Before the local routes: a crawl's items and web service are
		// on its node.
		fwd := d.forwarder(cfg)
		routes, peer = append(routes, fwd.Register), fwd.Peer
	}
	d.app = api.New(api.Options{
		Config: d.conf, Service: svc, Log: d.log, BodyLimit: int(cfg.UploadLimit),
		Open: d.open, Observe: d.metrics.Request, Peer: peer,
		Routes: append(routes, rpc.Register, d.stream.Register, web.Register(pages)),
		Running: func(id string) []api.Field {
			sum, ok := rpc.LiveSummary(id)
			if !ok {
				return nil
			}
			return []api.Field{{Key: "items_scraped", Value: sum.ItemsScraped}, {Key: "requests", Value: sum.Requests},
				{Key: "responses", Value: sum.Responses}, {Key: "errors", Value: sum.Errors}}
		},
	})
	return nil
}

// recordItems records, in cluster mode, that a crawl that ended here left
// an items file, which every node then links.
func (d *daemon) recordItems(j job.Job) {
	if !jobfiles.HasItems(d.conf(), j.Project, j.Spider, j.ID) {
		return
	}
	if err := d.db.setItems(j.Seq); err != nil {
		d.log.Warn("cannot record the crawl's items file: other nodes will not link it", "job", j.ID, "err", err)
	}
}

// listNodes is the cluster's nodes with their running jobs counted.
func (d *daemon) listNodes(ctx context.Context) ([]service.Node, error) {
	nodes, err := d.db.nodes(ctx)
	if err != nil {
		return nil, err
	}
	running, err := d.db.running(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]service.Node, len(nodes))
	for i, n := range nodes {
		out[i] = service.Node{Name: n.Name, Slots: n.MaxProc, Running: running[n.Name], Lease: n.Lease, LeaseUntil: n.LeaseUntil,
			Version: n.Version, AdvertiseURL: n.AdvertiseURL, Started: n.Started, Alive: n.Alive, Stopped: n.Stopped, Reaped: n.Reaped}
	}
	return out, nil
}

// forwarder sends requests about a crawl on another node to that node.
func (d *daemon) forwarder(cfg *config.Config) *forward.Forwarder {
	place := d.db.place
	return forward.New(forward.Options{Self: cfg.NodeName, Secret: d.db.secret, Log: d.log,
		Locate: func(ctx context.Context, project, id string) (forward.Place, error) {
			p, err := place(ctx, project, id)
			return forward.Place{Node: p.Node, URL: p.URL, Running: p.Running}, err
		}})
}

// lister is how spiders are listed under c: `scrapy list` as the crawl
// user, in the crawl's working directory, confined as a crawl is where the
// launcher can.
func (d *daemon) lister(c *config.Config) service.Lister {
	l := scrapy.Lister{Python: c.Python, BaseEnv: d.crawlEnv, Dir: jobfiles.CrawlDir(c), Credential: d.user.credential()}
	if d.launcher.listVia != nil {
		// Listing imports the uploaded project: it gets a crawl's unit
		// and sandbox, not the daemon's unit and its write access.
		l.Launcher, l.OutputDir = d.launcher.listVia, filepath.Join(runtimeDir(c, os.Getenv), "list")
		l.Sandbox = launch.Sandbox{Hidden: jobfiles.Hidden(c)}
		l.Limits = launch.Limits{MemoryMax: c.CrawlMemoryMax, CPUQuota: c.CrawlCPUQuota, TasksMax: c.CrawlTasksMax}
	}
	return reachingLister{l, d.user}
}

// install is how an upload's environment is built under c: as the crawl
// user, in the listing's sandbox with only the environment's directory
// writable, under the crawl memory limit and env_install_timeout.
func (d *daemon) install(c *config.Config) pyenv.Install {
	run := confine.Runner{Credential: d.user.credential()}
	if d.launcher.listVia != nil {
		run.Launcher, run.OutputDir = d.launcher.listVia, filepath.Join(runtimeDir(c, os.Getenv), "list")
	}
	return pyenv.Install{
		Python: c.Python, IndexURL: c.PipIndexURL, PipOptions: c.PipOptions, Timeout: c.EnvInstallTimeout,
		Env: d.crawlEnv, Dir: jobfiles.CrawlDir(c), Hidden: jobfiles.Hidden(c), Runner: run,
		Limits: launch.Limits{MemoryMax: c.CrawlMemoryMax, CPUQuota: c.CrawlCPUQuota, TasksMax: c.CrawlTasksMax},
		Own:    d.user.chown, Seal: d.user.giveBack,
	}
}

// serve runs the dispatcher, the live-stats poll, the watchdog, the
// configuration watcher and the listeners, says it is ready, and then
// reloads on SIGHUP or a file change until ctx ends or a part fails.
func (d *daemon) serve(ctx context.Context, cfg *config.Config, socks listen.Sockets, hup <-chan os.Signal) error {
	lns := socks.API
	for _, w := range securityWarnings(cfg) {
		d.log.Warn(w)
	}
	errs := make(chan error, len(lns)+1)
	// The background parts stop with dctx, after the HTTP server, so that
	// no request finds them gone; an error exit stops them too.
	dctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	goRun := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	goRun(func() {
		if err := d.disp.Run(dctx); err != nil {
			errs <- err
		}
	})
	// In a cluster one node, the holder of the lead lock, makes the
	// recurring schedules' runs and delivers the webhooks: every node
	// reads the same schedules and the same event cursors (lead.go).
	goRun(func() {
		select {
		case <-d.disp.Adopted():
		case <-dctx.Done():
			return
		}
		d.runLead(dctx)
	})
	goRun(func() { d.rpc.Poll(dctx, 2*time.Second, runningJobs(d.db.local)) })
	if d.db.keepLease != nil {
		goRun(func() { d.lease.run(dctx, d.db.keepLease) })
	}
	if d.db.listen != nil {
		// A job scheduled on another node, or a slot a cap held freed
		// there, wakes this node's dispatcher at once.
		// Another node's job events reach this node's /events and metrics
		// at once too.
		// A cancel asked on another node for a crawl here is sent to it.
		cancels := pgstore.Cancels + cfg.NodeName
		goRun(func() {
			d.db.listen(dctx, func(payload string) {
				if node, project, ok := pgstore.ScheduleChange(payload); ok {
					// Another node changed a project's schedules: this
					// node's copy, from which the lead makes the runs and
					// every node lists them, is read again.
					if node != cfg.NodeName {
						go d.refreshSchedules(dctx, project)
					}
					return
				}
				if strings.HasPrefix(payload, pgstore.Cancels) {
					if payload == cancels {
						go d.disp.DeliverCancels(dctx)
					}
					return
				}
				d.disp.Wake()
				d.feed.Notify(0)
			})
		})
	}
	goRun(func() { d.reconcileEggs(dctx) })
	goRun(func() { d.seedMetrics(dctx) })
	goRun(func() { d.metrics.Follow(dctx, d.feed, d.metricsAfter) })
	goRun(func() { d.archiver.Run(dctx) })
	if d.shipper != nil {
		goRun(func() { d.shipper.Run(dctx) })
	}
	goRun(func() {
		if err := notify.Run(dctx); err != nil {
			d.log.Error("watchdog", "err", err)
		}
	})
	// The watcher only asks; the loop below reloads, one reload at a time.
	changed := make(chan struct{}, 1)
	goRun(func() {
		err := config.Watch(dctx, d.opts.Config, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
		if err != nil {
			d.log.Error("cannot watch the configuration files; reload with SIGHUP (systemctl reload scrapyd)", "err", err)
		}
	})
	// Idle exit: asleep is a clean exit (0, so Restart=on-failure leaves
	// it), and the socket units start the daemon again.
	idleFor, why := d.idleTimeout(cfg)
	if why != "" && cfg.IdleTimeout > 0 {
		d.log.Warn("idle_timeout ignored: the daemon stays up", "why", why)
	}
	asleep := d.waitIdle(dctx, goRun)
	d.app.Server().ConnState = d.idle.ConnState
	for _, ln := range socks.Wake {
		go d.acceptWakes(ln)
	}
	for _, ln := range lns {
		d.log.Info("listening", "address", ln.Addr().String(), "network", ln.Addr().Network())
		go func() {
			if err := d.app.Listener(ln); err != nil {
				errs <- err
			}
		}()
	}
	notify.Ready()
	d.disp.OnChange()
	d.log.Info("scrapyd started", "version", d.opts.Version, "launcher", d.launcher.Name(), "slots", cfg.Slots(),
		"auth", cfg.AuthEnabled(), "config_files", cfg.Files, "idle_timeout", idleFor.String())

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case runErr = <-errs:
			break loop
		case <-hup:
			d.reloader.reload("SIGHUP")
			d.archiver.Wake() // retention limits may have changed
		case <-changed:
			d.reloader.reload("files changed")
			d.archiver.Wake()
		case <-asleep:
			if d.fallAsleep(ctx, socks.Wake) {
				break loop
			}
			asleep = d.waitIdle(dctx, goRun)
		}
	}
	notify.Stopping()
	d.log.Info("scrapyd stopping; running crawls keep running")
	d.stream.Stop() // the server would wait for open /events streams
	d.app.ShutdownWithTimeout(10 * time.Second)
	cancel()
	wg.Wait()
	return runErr
}

// openLog opens the daemon's own log (scrapyd.log), as the seed documents;
// it is mirrored to stderr when stderr is a terminal. The first line on
// stderr says where the log goes: started by hand, the daemon would
// otherwise print nothing at all when stderr is not a terminal.
// Under systemd it goes to the journal too, with each line's job,
// project and spider as fields.
func openLog(cfg *config.Config, level *slog.LevelVar) (*slog.Logger, func(), error) {
	var w io.Writer = io.Discard
	closer := func() {}
	if cfg.LogFile != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.LogFile), 0o755); err != nil {
			return nil, nil, cfg.PathError("log_file", cfg.LogFile, err)
		}
		f, err := os.OpenFile(cfg.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, nil, cfg.PathError("log_file", cfg.LogFile, err)
		}
		w, closer = f, func() { f.Close() }
	}
	tty := false
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		w, tty = io.MultiWriter(w, os.Stderr), true
	}
	fmt.Fprintln(os.Stderr, logsTo(cfg.LogFile, tty))
	var h slog.Handler = slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	if journal.UnderSystemd(os.Getenv) {
		h = slog.NewMultiHandler(h, journal.New(nil, level))
	}
	return slog.New(h), closer, nil
}

// logsTo is openLog's first line on stderr.
func logsTo(file string, tty bool) string {
	switch {
	case file == "" && tty:
		return "scrapyd: log_file is empty: logging to this terminal only"
	case file == "":
		return "scrapyd: log_file is empty: not logging"
	case tty:
		return "scrapyd: logging to " + file + " and to this terminal"
	}
	return "scrapyd: logging to " + file
}
