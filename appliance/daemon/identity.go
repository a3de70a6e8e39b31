package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/process"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/runas"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/systemd"
	"github.com/scrapyd-debian/scrapyd/appliance/listen"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapy"
)

// crawlUser is who runs uploaded code: nil when the daemon is not root (it
// is unprivileged already); otherwise crawl_user, never root.
type crawlUser struct{ runas.User }

func crawlIdentity(cfg *config.Config) (*crawlUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := runas.Lookup(cfg.CrawlUser, "")
	if err != nil {
		return nil, fmt.Errorf("crawl_user: %w (the daemon runs as root, and uploaded code must not)", err)
	}
	return &crawlUser{u}, nil
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

// newLauncher picks the launcher: systemd when chosen, or with `auto` when
// systemd runs and the daemon may start units (root); plain child
// processes otherwise.
func newLauncher(ctx context.Context, cfg *config.Config, u *crawlUser, log *slog.Logger) (launch.Launcher, func(), error) {
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
		return l, func() {}, nil
	}
	if u == nil {
		return nil, nil, fmt.Errorf("launcher = systemd needs the daemon to run as root (Debian 12's systemd lets only root start system units)")
	}
	l, err := systemd.New(systemd.Options{User: u.User, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("systemd launcher: %w", err)
	}
	return l, func() { l.Close() }, nil
}

// listeners are the sockets systemd passed, or the configured ones; TCP
// listeners speak TLS when tls_cert and tls_key are set.
func listeners(cfg *config.Config) ([]net.Listener, error) {
	tc, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	lns, err := listen.Listeners(listen.Config{BindAddress: cfg.BindAddress, HTTPPort: cfg.HTTPPort, UnixSocket: cfg.UnixSocketPath})
	if err != nil || tc == nil {
		return lns, err
	}
	for i, ln := range lns {
		if ln.Addr().Network() == "tcp" {
			lns[i] = tls.NewListener(ln, tc)
		}
	}
	return lns, nil
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
