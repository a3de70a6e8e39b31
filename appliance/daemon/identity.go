package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/process"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/runas"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/systemd"
	"github.com/scrapyd-debian/scrapyd/appliance/listen"
	"github.com/scrapyd-debian/scrapyd/appliance/reach"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapy"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// crawlUser is who runs uploaded code: nil when the daemon is not root (it
// is unprivileged already); otherwise crawl_user, never root.
type crawlUser struct{ runas.User }

func crawlIdentity(cfg *config.Config) (*crawlUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := runas.Lookup(cfg.CrawlUser, "")
	if unknown := user.UnknownUserError(""); errors.As(err, &unknown) {
		// Root is the usual user in containers and fresh VMs, where the
		// Debian package's postinst has not made the user (issue 13).
		return nil, fmt.Errorf("crawl_user: there is no user %q, and the daemon runs as root: uploaded code must run as another user. "+
			"Create it as the Debian package does: `adduser --system --group --home /var/lib/scrapyd --no-create-home --shell /usr/sbin/nologin %s`, "+
			"or set crawl_user to an existing unprivileged user", cfg.CrawlUser, cfg.CrawlUser)
	}
	if err != nil {
		return nil, fmt.Errorf("crawl_user: %w (the daemon runs as root, and uploaded code must not)", err)
	}
	return &crawlUser{u}, nil
}

// CheckCrawlUser is what a root daemon checks at start and at every
// reload before it takes cfg: that crawl_user exists and can reach what a
// crawl and a listing need. It is nil when the daemon is not root (crawls
// then run as the daemon's own user, who made the files).
func CheckCrawlUser(cfg *config.Config) error {
	u, err := crawlIdentity(cfg)
	if err != nil {
		return err
	}
	return u.canReach(cfg)
}

// canReach checks every file a crawl or `scrapy list` opens as the crawl
// user: the interpreter, the working directory, every stored egg, the
// log, items, JOBDIR and runtime directories; and, where the crawl writes
// into a directory that already exists, that it may write there. A
// permission problem is then one line at start or reload, never a Python
// traceback on upload (issue 13).
func (u *crawlUser) canReach(cfg *config.Config) error {
	if u == nil {
		return nil
	}
	ru := u.reachUser()
	type need struct {
		what, path string
		need       reach.Need
	}
	needs := []need{
		{"the interpreter (python)", cfg.Python, reach.Exec},
		{"the working directory (crawl_dir)", cfg.CrawlDir, reach.Exec},
		{"Scrapy's data directory", filepath.Join(cfg.CrawlDir, ".scrapy"), reach.Write | reach.Exec},
		{"the egg store (eggs_dir)", cfg.EggsDir, reach.Exec},
		{"the runtime directory (runtime_dir)", filepath.Join(runtimeDir(cfg, os.Getenv), "crawlrpc"), reach.Exec},
	}
	projects, _ := os.ReadDir(cfg.EggsDir)
	for _, p := range projects {
		if !p.IsDir() {
			continue
		}
		dir := filepath.Join(cfg.EggsDir, p.Name())
		needs = append(needs, need{"an egg directory", dir, reach.Exec})
		eggs, _ := filepath.Glob(filepath.Join(dir, "*.egg"))
		for _, e := range eggs {
			needs = append(needs, need{"an egg", e, reach.Read})
		}
	}
	for _, d := range []struct{ what, path string }{{"logs_dir", cfg.LogsDir}, {"items_dir", jobfiles.LocalItemsDir(cfg)}, {"jobs_dir", cfg.JobsDir}} {
		if d.path == "" {
			continue
		}
		needs = append(needs, need{d.what, d.path, reach.Exec})
		if d.what == "jobs_dir" {
			continue // each crawl's JOBDIR is made for it, as the crawl user
		}
		// Crawls create their log and items files in the per-spider
		// directories; the daemon makes new ones for the crawl user.
		spiders, _ := filepath.Glob(filepath.Join(d.path, "*", "*"))
		for _, s := range spiders {
			if fi, err := os.Stat(s); err == nil && fi.IsDir() {
				needs = append(needs, need{"a per-spider directory of " + d.what, s, reach.Write | reach.Exec})
			}
		}
	}
	for _, n := range needs {
		if err := reach.Check(ru, n.what, n.path, n.need); err != nil {
			return err
		}
	}
	return nil
}

func (u *crawlUser) reachUser() reach.User {
	return reach.User{Name: u.Name, UID: u.UID, GID: u.GID, Groups: u.Groups}
}

// reachingLister checks, before uploaded code runs, that the crawl user
// can reach the egg to list: the start and reload checks cannot see a
// staging directory made later under a strict umask, and a Python
// traceback is no way to say "permission denied".
type reachingLister struct {
	service.Lister
	u *crawlUser
}

func (l reachingLister) List(ctx context.Context, p scrapy.Project) ([]string, error) {
	if l.u != nil && p.Egg != "" {
		if err := reach.Check(l.u.reachUser(), "the uploaded egg", p.Egg, reach.Read); err != nil {
			return nil, &scrapy.RunnerError{Output: err.Error()}
		}
	}
	return l.Lister.List(ctx, p)
}

func (u *crawlUser) credential() *syscall.Credential {
	if u == nil {
		return nil
	}
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
}

// chown gives path to the crawl user.
func (u *crawlUser) chown(path string) error {
	if u == nil {
		return nil
	}
	return os.Chown(path, int(u.UID), int(u.GID))
}

// giveBack makes a tree the crawl user built the daemon's (a built
// Python environment): crawls share it read-only, and none may change
// another project's code.
func (u *crawlUser) giveBack(root string) error {
	if u == nil {
		return nil
	}
	uid, gid := os.Getuid(), os.Getgid()
	return filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// mkdirAll creates dir and gives every directory it creates to the crawl
// user, who writes the crawl's log and items there.
func (u *crawlUser) mkdirAll(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := u.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return err
	}
	return u.chown(dir)
}

// crawlEnvironment is the daemon's environment as crawls see it; for a
// crawl user, its own HOME and USER.
func crawlEnvironment(env []string, u *crawlUser) []string {
	out := scrapy.CrawlEnv(env)
	if u == nil {
		return out
	}
	kept := out[:0]
	for _, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		if k != "HOME" && k != "USER" && k != "LOGNAME" {
			kept = append(kept, kv)
		}
	}
	return append(kept, "HOME="+u.Home, "USER="+u.Name, "LOGNAME="+u.Name)
}

// crawlLauncher is the chosen launcher and what differs with it.
type crawlLauncher struct {
	launch.Launcher
	// listVia, when not nil, runs `scrapy list` as a crawl (its own unit
	// and sandbox); nil lists as a plain child of the daemon.
	listVia launch.Launcher
	// systemd is the systemd launcher, nil for another: it leaves the
	// wake timer of a daemon going to sleep.
	systemd *systemd.Launcher
	close   func()
}

// newLauncher picks the launcher: systemd when chosen, or with `auto` when
// systemd runs and the daemon may start units (root); plain child
// processes otherwise.
func newLauncher(ctx context.Context, cfg *config.Config, u *crawlUser, log *slog.Logger, stopPost func() []string) (crawlLauncher, error) {
	useSystemd := cfg.Launcher == "systemd"
	if cfg.Launcher == "auto" && u != nil {
		if err := systemd.Usable(ctx); err == nil {
			useSystemd = true
		} else {
			log.Info("crawls run as child processes", "why", err)
		}
	}
	if !useSystemd {
		l := process.New()
		l.Credential = u.credential()
		// The job database names this daemon: a restarted one finds the
		// crawls it left, and no other daemon's.
		l.Owner = cfg.DbsDir
		return crawlLauncher{Launcher: l, close: func() { l.Close() }}, nil
	}
	if u == nil {
		return crawlLauncher{}, fmt.Errorf("launcher = systemd needs the daemon to run as root (Debian 12's systemd lets only root start system units)")
	}
	l, err := systemd.New(systemd.Options{User: u.User, Logger: log, StopPost: stopPost})
	if err != nil {
		return crawlLauncher{}, fmt.Errorf("systemd launcher: %w", err)
	}
	return crawlLauncher{Launcher: l, listVia: l, systemd: l, close: func() { l.Close() }}, nil
}

// listeners are the sockets systemd passed, or the configured ones; TCP
// listeners speak TLS when tls_cert and tls_key are set.
func listeners(cfg *config.Config) (listen.Sockets, error) {
	tc, err := tlsConfig(cfg)
	if err != nil {
		return listen.Sockets{}, err
	}
	s, err := listen.Listeners(listen.Config{BindAddress: cfg.BindAddress, HTTPPort: cfg.HTTPPort, UnixSocket: cfg.UnixSocketPath})
	if err != nil || tc == nil {
		return s, err
	}
	for i, ln := range s.API {
		if ln.Addr().Network() == "tcp" {
			s.API[i] = tls.NewListener(ln, tc)
		}
	}
	return s, nil
}

// tlsConfig is the HTTPS server's configuration, nil without tls_cert.
func tlsConfig(cfg *config.Config) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("tls_cert/tls_key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// securityWarnings: an API that runs uploaded code, reachable beyond this
// machine without a password, is how a public Scrapyd was taken over for
// crypto-mining (Scrapyd issue #363).
func securityWarnings(cfg *config.Config) []string {
	out := []string{}
	if cfg.AuthEnabled() || cfg.BindAddress == "" {
		return out
	}
	if ip := net.ParseIP(cfg.BindAddress); ip == nil || !ip.IsLoopback() {
		out = append(out, fmt.Sprintf("bind_address = %s without username and password: anyone who reaches this port can run code on this machine", cfg.BindAddress))
	}
	return out
}
