// Package daemon wires the daemon together: configuration, state, the
// launcher, the dispatcher, the API and its listeners, signals and
// shutdown. It holds no logic of its own beyond that wiring.
package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/api"
	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/crawlrpc"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/notify"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapy"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
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
	var level slog.LevelVar
	level.Set(logLevel(cfg))
	log, closeLog, err := openLog(cfg, &level)
	if err != nil {
		return err
	}
	defer closeLog()
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	var current atomic.Pointer[config.Config]
	current.Store(cfg)
	conf := current.Load

	// dbs_dir is the daemon's alone: the job database holds every spider
	// argument, which may carry credentials.
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{cfg.EggsDir, 0o755}, {cfg.DbsDir, 0o700}, {cfg.LogsDir, 0o755}, {jobfiles.LocalItemsDir(cfg), 0o755}, {cfg.CrawlDir, 0o755}} {
		if d.path != "" {
			if err := os.MkdirAll(d.path, d.mode); err != nil {
				return fmt.Errorf("create %s: %w", d.path, err)
			}
		}
	}
	st, err := store.Open(cfg.DbsDir)
	if err != nil {
		return err
	}
	defer st.Close()
	eggs := &egg.Store{Dir: cfg.EggsDir}
	eggs.CleanStaging()

	crawlUser, err := crawlIdentity(cfg)
	if err != nil {
		return err
	}
	launcher, closeLauncher, err := newLauncher(ctx, cfg, crawlUser, log)
	if err != nil {
		return err
	}
	defer closeLauncher()
	crawlEnv := crawlEnvironment(os.Environ(), crawlUser)
	rpc, err := crawlrpc.New(crawlrpc.Options{
		RuntimeDir: filepath.Join(runtimeDir(cfg, os.Getenv), "crawlrpc"),
		Running:    func(id string) bool { return st.IsRunning(context.Background(), id) },
		Log:        log,
	}, webserviceConfig(cfg))
	if err != nil {
		return err
	}
	defer rpc.Close()
	hooks := &crawlHooks{rpc: rpc, log: log, chown: crawlUser.chown}
	disp := dispatch.New(dispatch.Options{
		Config: conf, Store: st, Eggs: eggs, Launcher: launcher, Log: log, Hooks: hooks,
		Env: crawlEnv, MakeDir: crawlUser.mkdirAll,
		OnChange: func() {
			p, r, _ := st.Counts()
			notify.Status(r, p)
		},
	})
	svc := &service.Service{
		Config: conf, Store: st, Eggs: eggs, Dispatch: disp,
		Lister: func(c *config.Config) service.Lister {
			l := scrapy.Lister{Python: c.Python, BaseEnv: crawlEnv, Dir: jobfiles.CrawlDir(c), Credential: crawlUser.credential()}
			if launcher.Name() == "systemd" {
				// Listing imports the uploaded project: it gets a crawl's unit
				// and sandbox, not the daemon's unit and its write access.
				l.Launcher, l.OutputDir = launcher, filepath.Join(runtimeDir(c, os.Getenv), "list")
				l.Sandbox = launch.Sandbox{Hidden: jobfiles.Hidden(c)}
				l.Limits = launch.Limits{MemoryMax: c.CrawlMemoryMax, CPUQuota: c.CrawlCPUQuota, TasksMax: c.CrawlTasksMax}
			}
			return reachingLister{l, crawlUser}
		},
	}
	rl := &reloader{opts: o.Config, current: &current, log: log, level: &level, disp: disp, store: st,
		apply: func(next *config.Config) error {
			// A new crawl_dir is made as at start: listings chdir into it.
			if err := os.MkdirAll(next.CrawlDir, 0o755); err != nil {
				return fmt.Errorf("create %s: %w", next.CrawlDir, err)
			}
			return rpc.Reload(webserviceConfig(next))
		}}
	svc.Diagnose = func() service.Diagnostics {
		return rl.diagnose(service.Diagnostics{Launcher: launcher.Name(), Version: o.Version, Warnings: securityWarnings(conf())})
	}
	app := api.New(api.Options{
		Config: conf, Service: svc, Log: log, BodyLimit: int(cfg.UploadLimit),
		Routes: []func(fiber.Router){rpc.Register, web.Register(web.Options{Config: conf, Service: svc, Stats: rpc.Live})},
		Running: func(id string) []api.Field {
			sum, ok := rpc.LiveSummary(id)
			if !ok {
				return nil
			}
			return []api.Field{{Key: "items_scraped", Value: sum.ItemsScraped}, {Key: "requests", Value: sum.Requests},
				{Key: "responses", Value: sum.Responses}, {Key: "errors", Value: sum.Errors}}
		},
	})

	listeners, err := listeners(cfg)
	if err != nil {
		return err
	}
	for _, w := range securityWarnings(cfg) {
		log.Warn(w)
	}
	errs := make(chan error, len(listeners)+1)
	var wg sync.WaitGroup
	dctx, cancelDispatch := context.WithCancel(context.Background())
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := disp.Run(dctx); err != nil {
			errs <- err
		}
	}()
	wg.Add(2)
	go func() {
		defer wg.Done()
		rpc.Poll(dctx, 2*time.Second, runningJobs(st))
	}()
	go func() {
		defer wg.Done()
		if err := notify.Run(dctx); err != nil {
			log.Error("watchdog", "err", err)
		}
	}()
	for _, ln := range listeners {
		log.Info("listening", "address", ln.Addr().String(), "network", ln.Addr().Network())
		go func(ln net.Listener) {
			if err := app.Listener(ln); err != nil {
				errs <- err
			}
		}(ln)
	}
	// The watcher only asks; the loop below reloads, one reload at a time.
	// It stops with the dispatcher, so that an error exit stops it too.
	changed := make(chan struct{}, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := config.Watch(dctx, o.Config, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
		if err != nil {
			log.Error("cannot watch the configuration files; reload with SIGHUP (systemctl reload scrapyd)", "err", err)
		}
	}()
	notify.Ready()
	disp.OnChange()
	log.Info("scrapyd started", "version", o.Version, "launcher", launcher.Name(), "slots", cfg.Slots(),
		"auth", cfg.AuthEnabled(), "config_files", cfg.Files)

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errs:
			runErr = err
			break loop
		case <-hup:
			rl.reload("SIGHUP")
		case <-changed:
			rl.reload("files changed")
		}
	}
	notify.Stopping()
	log.Info("scrapyd stopping; running crawls keep running")
	app.ShutdownWithTimeout(10 * time.Second)
	cancelDispatch()
	wg.Wait()
	return runErr
}

// openLog opens the daemon's own log (scrapyd.log), as the seed documents;
// it is mirrored to stderr when stderr is a terminal.
func openLog(cfg *config.Config, level *slog.LevelVar) (*slog.Logger, func(), error) {
	var w io.Writer = io.Discard
	closer := func() {}
	if cfg.LogFile != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.LogFile), 0o755); err != nil {
			return nil, nil, err
		}
		f, err := os.OpenFile(cfg.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, nil, err
		}
		w, closer = f, func() { f.Close() }
	}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		w = io.MultiWriter(w, os.Stderr)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), closer, nil
}
