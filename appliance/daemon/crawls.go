package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/crawlrpc"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapy"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// crawlHooks connects the crawl web service to the dispatcher: every crawl
// gets the extension, its final stats are kept with the finished job, and
// the live stats of running crawls are polled into a cache that
// listjobs.json and the job page read without waiting on a crawl.
type crawlHooks struct {
	rpc   *crawlrpc.Service
	store *store.Store
	log   *slog.Logger
	// chown, when set, gives a crawl's socket directory to the crawl user.
	chown func(dir string) error

	mu   sync.RWMutex
	live map[string]liveStats // job id → its last polled stats
}

// liveStats are one poll of a running crawl: the raw stats (the job page)
// and their summary (listjobs.json), summarised once per poll, not per request.
type liveStats struct {
	raw map[string]any
	sum crawlrpc.Summary
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
	// The crawl creates its socket and writes its final stats there.
	return scrapy.Extras{Env: add.Env, PythonPath: add.PythonPath, Writable: []string{h.rpc.SocketDir(j.ID)}}
}

// Ended implements dispatch.Hooks.
func (h *crawlHooks) Ended(j job.Job) string {
	defer h.rpc.Cleanup(j.ID)
	h.mu.Lock()
	delete(h.live, j.ID)
	h.mu.Unlock()
	raw, err := h.rpc.FinalStats(j.ID)
	if err != nil {
		if !errors.Is(err, crawlrpc.ErrNoStats) {
			h.log.Warn("cannot read the crawl's final stats", "job", j.ID, "err", err)
		}
		return ""
	}
	return string(raw)
}

// Live returns the last polled stats of a running job (nil if none).
func (h *crawlHooks) Live(id string) map[string]any {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.live[id].raw
}

// Summary is the few live numbers listjobs.json adds to a running entry.
func (h *crawlHooks) Summary(id string) (crawlrpc.Summary, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	s, ok := h.live[id]
	return s.sum, ok
}

// poll refreshes the live stats of every running crawl every interval.
func (h *crawlHooks) poll(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		running, err := h.store.List(ctx, job.Running, store.Filter{})
		if err != nil {
			continue
		}
		fresh := make(map[string]liveStats, len(running))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, j := range running {
			wg.Add(1)
			go func(id string) {
				defer wg.Done()
				raw, err := h.rpc.LiveStats(ctx, id)
				if err != nil {
					return
				}
				// Numbers stay json.Number: through float64 memusage/max
				// (70578176) would show as 7.0578176e+07 on the job page.
				var m map[string]any
				d := json.NewDecoder(bytes.NewReader(raw))
				d.UseNumber()
				if d.Decode(&m) != nil {
					return
				}
				sum, err := crawlrpc.Summarize(raw)
				if err != nil {
					return
				}
				mu.Lock()
				fresh[id] = liveStats{raw: m, sum: sum}
				mu.Unlock()
			}(j.ID)
		}
		wg.Wait()
		h.mu.Lock()
		h.live = fresh
		h.mu.Unlock()
	}
}
