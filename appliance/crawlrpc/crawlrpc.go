// Package crawlrpc is the crawl web service: the JSON-RPC 2.0 interface of
// old Scrapy's WebService (crawler, stats, enginestatus) for every running
// crawl, served on the daemon's own port at /webservice/<job>/ behind its
// auth, and proxied to a small Scrapy extension inside the crawl over a
// per-job Unix socket. It also gives the daemon a crawl's live and final stats.
package crawlrpc

import (
	"embed"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
)

//go:embed python/scrapyd_crawlrpc/*.py
var extension embed.FS

// Config is the crawl web service's part of the daemon configuration.
type Config struct {
	// Enabled is webservice_enabled. Off, /webservice/ answers 404; crawls
	// still get the extension, since live and final stats come through it.
	Enabled bool
	// Resources is webservice_resources: which of TopResources are served.
	Resources []string
	// LogFile is webservice_logfile: where requests are logged, one line
	// each; "" logs them to the daemon's log, as the original logged to the
	// Scrapy log when WEBSERVICE_LOGFILE was unset.
	LogFile string
}

// DefaultConfig is the configuration when the daemon's file says nothing.
func DefaultConfig() Config {
	return Config{Enabled: true, Resources: slices.Clone(TopResources)}
}

// Check reports the first value of cfg the service refuses, with the
// message Reload (and so New) gives. It touches nothing: the daemon runs it
// with every other component's check before it applies a configuration
// anywhere (daemon.Validate, also `scrapyd config check`), so a value
// refused here never reaches the rest of the daemon either.
func Check(cfg Config) error {
	for _, r := range cfg.Resources {
		if !slices.Contains(TopResources, r) {
			return fmt.Errorf("webservice_resources: unknown resource %q (known: crawler, stats, enginestatus)", r)
		}
	}
	return nil
}

// Resolver says whether a job's crawl is running now. The daemon's job
// store answers it; the socket's path is this package's business.
type Resolver func(jobID string) (running bool)

// Options are fixed for the daemon's lifetime.
type Options struct {
	// RuntimeDir holds the extension's code (python/) and one directory per
	// running job with its socket and final stats, e.g. /run/scrapyd/crawlrpc.
	// Unix socket paths are limited to 107 bytes, so keep it short.
	RuntimeDir string
	Running    Resolver
	Log        *slog.Logger // the daemon's log; nil means slog.Default()
}

// Service serves the web service and prepares crawls for it. It is safe
// for concurrent use.
type Service struct {
	runtimeDir string
	pythonDir  string
	running    Resolver
	log        *slog.Logger

	mu    sync.Mutex // serialises Reload and Close
	state atomic.Pointer[state]
	live  live
}

// state is one configuration snapshot with its request log.
type state struct {
	cfg     Config
	enabled map[string]bool
	access  *slog.Logger
	file    *os.File // nil when logging to the daemon's log
}

// New writes the extension into RuntimeDir/python and applies cfg.
func New(o Options, cfg Config) (*Service, error) {
	if o.RuntimeDir == "" || o.Running == nil {
		return nil, fmt.Errorf("crawlrpc: RuntimeDir and Running are required")
	}
	dir, err := filepath.Abs(o.RuntimeDir)
	if err != nil {
		return nil, fmt.Errorf("crawlrpc: runtime dir: %w", err)
	}
	s := &Service{runtimeDir: dir, pythonDir: filepath.Join(dir, "python"), running: o.Running, log: o.Log}
	if s.log == nil {
		s.log = slog.Default()
	}
	if sock := s.socketPath(""); len(sock) > maxSocketPath {
		// Said once at start rather than only with each crawl: the
		// Scrapyd way's runtime_dir is below whatever folder the daemon
		// was started in, which may be deep.
		s.log.Warn("the crawl web service is off: its sockets' paths would be longer than the system allows; set runtime_dir to a shorter directory", "runtime_dir", dir, "socket", sock, "max", maxSocketPath)
	}
	if err := s.installExtension(); err != nil {
		return nil, err
	}
	if err := s.Reload(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// installExtension writes the Python package and its whitelist. Each file
// is replaced by rename, so a crawl starting meanwhile reads whole files.
func (s *Service) installExtension() error {
	pkg := filepath.Join(s.pythonDir, "scrapyd_crawlrpc")
	// 0755: crawls may run as another user than the daemon and must read it.
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		return fmt.Errorf("crawlrpc: install extension: %w", err)
	}
	files := map[string][]byte{"whitelist.json": whitelistJSON()}
	names, err := extension.ReadDir("python/scrapyd_crawlrpc")
	if err != nil {
		return fmt.Errorf("crawlrpc: install extension: %w", err)
	}
	for _, e := range names {
		if files[e.Name()], err = extension.ReadFile("python/scrapyd_crawlrpc/" + e.Name()); err != nil {
			return fmt.Errorf("crawlrpc: install extension: %w", err)
		}
	}
	for name, data := range files {
		if err := writeFile(filepath.Join(pkg, name), data); err != nil {
			return fmt.Errorf("crawlrpc: install extension: %w", err)
		}
	}
	return nil
}

func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename this is a no-op
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Reload validates cfg and swaps it in; on error the old configuration
// stays. The request log file is reopened, so a reload also follows a
// log rotation.
func (s *Service) Reload(cfg Config) error {
	if err := Check(cfg); err != nil {
		return err
	}
	next := &state{cfg: cfg, enabled: map[string]bool{}, access: s.log}
	for _, r := range cfg.Resources {
		next.enabled[r] = true
	}
	if cfg.LogFile != "" {
		f, err := os.OpenFile(cfg.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("crawlrpc: webservice_logfile: %w", err)
		}
		next.file, next.access = f, slog.New(slog.NewTextHandler(f, nil))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return closeLog(s.state.Swap(next))
}

// Close closes the request log file, if any.
func (s *Service) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.state.Load()
	s.state.Store(&state{cfg: old.cfg, enabled: old.enabled, access: s.log})
	return closeLog(old)
}

func closeLog(st *state) error {
	if st == nil || st.file == nil {
		return nil
	}
	// A request still logging to it loses its line, which is acceptable.
	return st.file.Close()
}
