package daemon

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/crawlrpc"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapy"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// crawlHooks connects the crawl web service to the dispatcher: every crawl
// gets the extension, and its final stats are kept with the finished job.
type crawlHooks struct {
	rpc *crawlrpc.Service
	log *slog.Logger
	// chown, when set, gives a crawl's socket directory to the crawl user.
	chown func(dir string) error
	// wake is the wake socket's path, "" without one: a crawl pokes it as
	// it exits (SCRAPYD_WAKE_SOCKET, read by the settings shim).
	wake func() string
}

func webserviceConfig(c *config.Config) crawlrpc.Config {
	return crawlrpc.Config{Enabled: c.WebserviceEnabled, Resources: c.WebserviceResources, LogFile: c.WebserviceLogFile}
}

// runtimeDir is where crawl sockets live: runtime_dir, systemd's
// RuntimeDirectory, or <root>/var/run/scrapyd (/run/scrapyd on Debian,
// where /var/run links to /run; inside the tree under --root .).
func runtimeDir(c *config.Config, env func(string) string) string {
	if c.RuntimeDir != "" {
		return c.RuntimeDir
	}
	if d := env("RUNTIME_DIRECTORY"); d != "" {
		return d
	}
	return filepath.Join(c.Root, "var", "run", "scrapyd")
}

// Extras implements dispatch.Hooks.
func (h *crawlHooks) Extras(j job.Job, settingsModule string) scrapy.Extras {
	add, err := h.rpc.Prepare(j.ID, settingsModule)
	if err != nil {
		// The crawl runs anyway, only without its web service.
		h.log.Error("crawl web service unavailable for this crawl", "project", j.Project, "spider", j.Spider, "job", j.ID, "err", err)
		return scrapy.Extras{}
	}
	if h.chown != nil {
		if err := h.chown(h.rpc.SocketDir(j.ID)); err != nil {
			h.log.Error("cannot give the crawl its socket directory", "job", j.ID, "err", err)
		}
	}
	env := add.Env
	if h.wake != nil {
		if w := h.wake(); w != "" {
			env = append(env, "SCRAPYD_WAKE_SOCKET="+w)
		}
	}
	// The crawl creates its socket and writes its final stats there.
	return scrapy.Extras{Env: env, PythonPath: add.PythonPath, Writable: []string{h.rpc.SocketDir(j.ID)}}
}

// Ended implements dispatch.Hooks.
func (h *crawlHooks) Ended(j job.Job) string {
	defer h.rpc.Cleanup(j.ID)
	raw, err := h.rpc.FinalStats(j.ID)
	if err != nil {
		if !errors.Is(err, crawlrpc.ErrNoStats) {
			h.log.Warn("cannot read the crawl's final stats", "job", j.ID, "err", err)
		}
		return ""
	}
	return string(raw)
}

// runningJobs lists the jobs whose crawls run now, for crawlrpc.Poll.
func runningJobs(st dispatch.Jobs) func(context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		running, err := st.List(ctx, job.Running, store.Filter{})
		ids := make([]string, len(running))
		for i, j := range running {
			ids[i] = j.ID
		}
		return ids, err
	}
}
