package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/pyenv"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
)

// ImportToCluster moves this node's single-node store (SQLite, in dbs_dir)
// into the database the database option names, as node_name's (issue 15
// point 7: `scrapyd cluster import`): the pending queue in its order, the
// running jobs with their crawls' handles, so that the daemon adopts them
// when it starts on the database, the finished history, the spider cache
// the recurring schedules and the eggs in eggs_dir (the copies stay where
// they are); the finished jobs' logs are shipped by the daemon once it
// runs on the database. The daemon must be stopped: its crawls may
// run on. The SQLite file is left as it was (a backup; the daemon does not
// read it while database is set). A second import of the node is refused,
// as is one of a store with a job id the cluster has pending or running;
// either way nothing is written.
func ImportToCluster(ctx context.Context, cfg *config.Config, w io.Writer) error {
	if cfg.Database == "" {
		return errors.New("cluster import: set the database option to the cluster's PostgreSQL URL first (the import writes there)")
	}
	if addr := answering(cfg); addr != "" {
		return fmt.Errorf("cluster import: a daemon answers on %s: stop it first (systemctl stop scrapyd.socket scrapyd); its crawls may run on", addr)
	}
	path := filepath.Join(cfg.DbsDir, store.FileName)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("cluster import: no single-node store to import: %w", err)
	}
	lite, err := store.Open(cfg.DbsDir)
	if err != nil {
		return fmt.Errorf("cluster import: %w", err)
	}
	defer lite.Close()
	var im pgstore.Import
	count := map[job.State]int{}
	for _, st := range []job.State{job.Pending, job.Running, job.Finished} {
		list, err := lite.List(ctx, st, store.Filter{})
		if err != nil {
			return fmt.Errorf("cluster import: %w", err)
		}
		im.Jobs = append(im.Jobs, list...)
		count[st] = len(list)
		if st != job.Finished {
			continue // the daemon ships its running crawls' logs by itself
		}
		for _, j := range list {
			// A log file as a crawl leaves it, not yet compressed by
			// the retention sweep: what the shipper reads.
			if fi, err := os.Stat(jobfiles.Of(cfg, j.Project, j.Spider, j.ID).Log); err == nil && fi.Mode().IsRegular() {
				im.Logs = append(im.Logs, j.ID)
			}
		}
	}
	if im.Spiders, err = lite.SpiderLists(ctx); err != nil {
		return fmt.Errorf("cluster import: %w", err)
	}
	if im.Schedules, err = lite.Schedules(ctx, ""); err != nil {
		return fmt.Errorf("cluster import: %w", err)
	}
	warnings, err := localEggs(cfg, &im)
	if err != nil {
		return fmt.Errorf("cluster import: %w", err)
	}
	pg, err := openPostgres(ctx, cfg, "")
	if err != nil {
		return fmt.Errorf("cluster import: %w", err)
	}
	defer pg.Close()
	if err := pg.Import(ctx, im); err != nil {
		return fmt.Errorf("cluster import into %s: %w", pgstore.Redact(cfg.Database), err)
	}
	fmt.Fprintf(w, "imported node %s's store into %s: %d pending, %d running, %d finished jobs, %d spider lists, %d schedules, %d eggs\n",
		cfg.NodeName, pgstore.Redact(cfg.Database), count[job.Pending], count[job.Running], count[job.Finished], len(im.Spiders), len(im.Schedules), len(im.Eggs))
	for _, warn := range warnings {
		fmt.Fprintln(w, "warning:", warn)
	}
	fmt.Fprintf(w, "start the daemon: it adopts its %d running crawls; %s is left as it was\n", count[job.Running], path)
	return nil
}

// answering is the address a daemon of this configuration answers on, ""
// when none does: the import must not race a daemon writing the store.
func answering(cfg *config.Config) string {
	type endpoint struct{ network, addr string }
	var eps []endpoint
	if cfg.BindAddress != "" {
		host := cfg.BindAddress
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			host = "localhost"
		}
		eps = append(eps, endpoint{"tcp", net.JoinHostPort(host, strconv.Itoa(cfg.HTTPPort))})
	}
	if cfg.UnixSocketPath != "" {
		eps = append(eps, endpoint{"unix", cfg.UnixSocketPath})
	}
	for _, ep := range eps {
		if c, err := net.DialTimeout(ep.network, ep.addr, time.Second); err == nil {
			c.Close()
			return ep.addr
		}
	}
	return ""
}

// localEggs reads every egg in eggs_dir into im, each with its hash and
// its Python environment's id and requirements (what another node builds
// it from). An environment built with wheels cannot give them back (it
// keeps the installed packages, not the zip): such versions are imported
// without their wheels, and a warning says so.
func localEggs(cfg *config.Config, im *pgstore.Import) (warnings []string, err error) {
	local := &egg.Store{Dir: cfg.EggsDir}
	envs := &pyenv.Store{Dir: cfg.EnvsDir}
	projects, err := local.Projects()
	if err != nil {
		return nil, err
	}
	for _, p := range projects {
		versions, err := local.Versions(p)
		if err != nil {
			return nil, err
		}
		for _, v := range versions {
			data, err := os.ReadFile(v.Path)
			if err != nil {
				return nil, err
			}
			sum := sha256.Sum256(data)
			u := egg.Upload{Record: egg.Record{Project: p, Version: v.Name, SHA256: hex.EncodeToString(sum[:]), Env: v.Env, Uploaded: v.Uploaded}, Data: data}
			if v.Env != "" {
				info, err := envs.Read(v.Env)
				if err != nil {
					return nil, fmt.Errorf("project %s version %s: its environment %s: %w", p, v.Name, v.Env, err)
				}
				u.Requirements = info.Requirements
				if len(info.Wheels) > 0 {
					warnings = append(warnings, fmt.Sprintf("project %s version %s was uploaded with wheels, which its environment does not keep: other nodes cannot build it until it is uploaded again", p, v.Name))
				}
			}
			im.Eggs = append(im.Eggs, u)
		}
	}
	return warnings, nil
}
