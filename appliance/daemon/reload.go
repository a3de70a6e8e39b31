package daemon

import (
	"log/slog"
	"reflect"
	"slices"
	"sync/atomic"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/notify"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// reloader applies configuration changes to the running daemon (the live
// reload issue): it loads the whole search order again and swaps the new
// snapshot in only when it is valid and every component takes it
// (Validate, then apply); otherwise the running snapshot stays in force
// everywhere, and the error is reported in the log, in `systemctl status`
// (notify.Reloaded) and in /diagnostics.json (diagnose). Only the
// daemon's main loop calls reload, so reloads never overlap.
type reloader struct {
	opts    config.Options
	current *atomic.Pointer[config.Config]
	log     *slog.Logger
	level   *slog.LevelVar
	disp    *dispatch.Dispatcher
	store   interface{ Trim(keep int) error }
	last    atomic.Pointer[reloadResult] // read by /diagnostics.json requests
	// apply, when set, hands a new snapshot to the parts that keep their
	// own copy of some options (the crawl web service) before it is swapped
	// in; if it fails they must keep their old copy, and the reload is
	// refused as a whole.
	apply func(next *config.Config) error
	// done, when set, is told of every reload's result (the metrics).
	done func(err error)
}

// reloadResult is what operators see of the last reload.
type reloadResult struct {
	err     string   // the files' error, "" when they are valid
	restart []string // restart-only options whose files differ from the running values
}

// result is the last reload's outcome; before the first, all is well.
func (r *reloader) result() *reloadResult {
	if res := r.last.Load(); res != nil {
		return res
	}
	return &reloadResult{}
}

// reload re-reads the configuration files. trigger says why, for the log.
func (r *reloader) reload(trigger string) {
	notify.Reloading()
	var failed error
	defer func() {
		notify.Reloaded(failed)
		if r.done != nil {
			r.done(failed)
		}
	}()
	running := r.current.Load()
	prev := r.result()
	loaded, err := config.Load(r.opts)
	var (
		next    *config.Config
		pending []string
	)
	if err == nil {
		next, pending, err = config.Live(running, loaded)
	}
	if err == nil {
		err = Validate(next)
	}
	unchanged := err == nil && reflect.DeepEqual(next, running)
	if err == nil && !unchanged && r.apply != nil {
		err = r.apply(next)
	}
	if err != nil {
		failed = err
		r.last.Store(&reloadResult{err: err.Error(), restart: prev.restart})
		r.log.Error("configuration invalid; the running configuration stays", "trigger", trigger, "err", err)
		return
	}
	r.last.Store(&reloadResult{restart: pending})
	if prev.err != "" {
		r.log.Info("configuration valid again", "trigger", trigger)
	}
	if !slices.Equal(pending, prev.restart) {
		for _, k := range pending {
			why, _ := config.RestartOnly(k)
			r.log.Warn("configuration change needs a restart; the running value stays until then", "option", k, "why", why)
		}
	}
	if unchanged {
		r.log.Debug("configuration unchanged", "trigger", trigger)
		return
	}
	r.current.Store(next)
	r.level.Set(logLevel(next))
	for _, w := range next.Warnings {
		r.log.Warn(w)
	}
	r.log.Info("configuration reloaded", "trigger", trigger, "changed", config.Changed(running, next),
		"slots", next.Slots(), "auth", next.AuthEnabled(), "files", next.Files)
	if next.FinishedToKeep != running.FinishedToKeep {
		if err := r.store.Trim(next.FinishedToKeep); err != nil {
			r.log.Error("cannot apply finished_to_keep", "err", err)
		}
	}
	// A reload that removes the password leaves the API open: say so in
	// the log too, not only in the diagnostics.
	for _, w := range securityWarnings(next) {
		r.log.Warn(w)
	}
	// More slots, or a shorter poll interval: start what is pending now.
	r.disp.Wake()
}

// diagnose adds the last reload's outcome to the daemon's diagnostics.
func (r *reloader) diagnose(d service.Diagnostics) service.Diagnostics {
	res := r.result()
	d.ConfigError, d.RestartNeeded = res.err, res.restart
	return d
}

// logLevel is the daemon log's level under cfg: debug shows debug messages.
func logLevel(cfg *config.Config) slog.Level {
	if cfg.Debug {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
