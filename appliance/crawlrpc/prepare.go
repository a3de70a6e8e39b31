package crawlrpc

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// The environment the extension reads. SCRAPYD_, not SCRAPY_: Scrapy 2.8
// turns any other SCRAPY_* variable into a setting (with a warning).
const (
	envSettings = "SCRAPYD_CRAWLRPC_SETTINGS" // the project's real settings module
	envSocket   = "SCRAPYD_CRAWLRPC_SOCKET"
	envStats    = "SCRAPYD_CRAWLRPC_STATS"

	shimModule = "scrapyd_crawlrpc.settings"
)

// maxSocketPath is sun_path's size on Linux (108) minus the NUL.
const maxSocketPath = 107

var pythonModule = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// Additions are what a crawl's command needs for the web service. No `-s`
// settings: a `-s EXTENSIONS=...` would replace the project's own
// EXTENSIONS dict, so the extension is enabled by a settings shim instead.
type Additions struct {
	// Env holds KEY=VALUE pairs that replace the same keys in the crawl's
	// environment, SCRAPY_SETTINGS_MODULE among them.
	Env []string
	// PythonPath entries go after the crawl's own (the egg first, so the
	// project's modules win).
	PythonPath []string
}

// Apply returns env with the additions: same-named variables replaced,
// PYTHONPATH extended.
func (a Additions) Apply(env []string) []string {
	out := make([]string, 0, len(env)+len(a.Env)+1)
	pythonPath := ""
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "PYTHONPATH":
			pythonPath = v
		case !a.sets(k):
			out = append(out, kv)
		}
	}
	paths := a.PythonPath
	if pythonPath != "" {
		paths = append([]string{pythonPath}, paths...)
	}
	out = append(out, a.Env...)
	if len(paths) > 0 {
		out = append(out, "PYTHONPATH="+strings.Join(paths, string(os.PathListSeparator)))
	}
	return out
}

func (a Additions) sets(key string) bool {
	for _, kv := range a.Env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}

// Prepare makes the job's runtime directory (mode 0700: only the daemon and
// the crawl may reach its socket) and returns the additions for the crawl
// command. settingsModule is the project's settings module, as the egg's
// entry point or the [settings] section names it. Call it before starting
// the crawl; call Cleanup once the crawl has ended and its FinalStats are
// read. If the crawl runs as another user than the daemon, chown the
// directory SocketDir(jobID) to that user.
func (s *Service) Prepare(jobID, settingsModule string) (Additions, error) {
	if jobID == "" {
		return Additions{}, fmt.Errorf("crawlrpc: prepare: empty job id")
	}
	if !pythonModule.MatchString(settingsModule) {
		return Additions{}, fmt.Errorf("crawlrpc: prepare job %s: %q is not a Python module name", jobID, settingsModule)
	}
	dir := s.SocketDir(jobID)
	if sock := filepath.Join(dir, "rpc.sock"); len(sock) > maxSocketPath {
		return Additions{}, fmt.Errorf("crawlrpc: prepare job %s: socket path %s is longer than %d bytes: shorten the runtime directory", jobID, sock, maxSocketPath)
	}
	// Leftovers of an earlier run of the same job id would be read as this run's.
	if err := os.RemoveAll(dir); err != nil {
		return Additions{}, fmt.Errorf("crawlrpc: prepare job %s: %w", jobID, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return Additions{}, fmt.Errorf("crawlrpc: prepare job %s: %w", jobID, err)
	}
	return Additions{
		Env: []string{
			"SCRAPY_SETTINGS_MODULE=" + shimModule,
			envSettings + "=" + settingsModule,
			envSocket + "=" + s.socketPath(jobID),
			envStats + "=" + s.statsPath(jobID),
		},
		PythonPath: []string{s.pythonDir},
	}, nil
}

// Cleanup removes the job's runtime directory, final stats included, and
// its live stats.
func (s *Service) Cleanup(jobID string) error {
	s.forget(jobID)
	if err := os.RemoveAll(s.SocketDir(jobID)); err != nil {
		return fmt.Errorf("crawlrpc: cleanup job %s: %w", jobID, err)
	}
	return nil
}

// SocketDir is the job's runtime directory. Its name is a hash of the job
// id: job ids may be 200 bytes long (job.MaxNameLen) while a socket path
// may not exceed 107, and a hash also needs no name checks.
func (s *Service) SocketDir(jobID string) string {
	sum := sha256.Sum256([]byte(jobID))
	return filepath.Join(s.runtimeDir, "job-"+hex.EncodeToString(sum[:10]))
}

func (s *Service) socketPath(jobID string) string {
	return filepath.Join(s.SocketDir(jobID), "rpc.sock")
}
func (s *Service) statsPath(jobID string) string {
	return filepath.Join(s.SocketDir(jobID), "stats.json")
}
