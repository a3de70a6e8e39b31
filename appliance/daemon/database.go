package daemon

import (
	"context"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/archive"
	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/egg/eggcache"
	"github.com/scrapyd-debian/scrapyd/appliance/events"
	"github.com/scrapyd-debian/scrapyd/appliance/logship"
	"github.com/scrapyd-debian/scrapyd/appliance/metrics"
	"github.com/scrapyd-debian/scrapyd/appliance/recur"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
)

// jobStore is the job store as the daemon wires it: every part's view of
// it, and its end. store.Store (SQLite) or pgstore.Store (PostgreSQL).
type jobStore interface {
	service.Jobs
	dispatch.Jobs
	archive.Jobs
	recur.Store
	events.Source
	events.Cursors
	metrics.Jobs
	IsRunning(ctx context.Context, id string) bool
	LastSuccesses(ctx context.Context) ([]store.SpiderSuccess, error)
	Trim(keep int) error
	Ping(ctx context.Context) error
	OnEvent(fn func(last int64))
	Close() error
}

// database is the opened job store: all (the cluster's, with PostgreSQL),
// local (what this node's dispatcher and live-stats poll see: its own
// running jobs), listen (nil with SQLite), which calls its function
// whenever any node changes the queue, with the announcement's payload
// (pgstore.Cancels for cancel requests), and lead (nil with SQLite), which
// returns what tries to take the lead lock: one node of a cluster makes
// the recurring schedules' runs, or each run would be made once per node. eggs (nil with
// SQLite) keeps the cluster's eggs, and listenEggs calls its function
// whenever any node changes them.
//
// keepLease (nil with SQLite) renews the node's lease and reaps dead
// nodes until its context ends; nodes (nil with SQLite) lists the
// cluster's nodes; remote (nil with SQLite) carries cancels between nodes;
// place (nil with SQLite) says which node runs or ran a job, and secret is
// the cluster's, which nodes present to each other; running (nil with
// SQLite) counts each node's running jobs; setItems (nil with SQLite)
// records that a finished crawl left an items file here.
type database struct {
	all        jobStore
	local      dispatch.Jobs
	listen     func(ctx context.Context, fn func(payload string))
	lead       func() leadCandidate
	keepLease  func(ctx context.Context, h pgstore.LeaseHooks)
	nodes      func(ctx context.Context) ([]pgstore.Node, error)
	remote     dispatch.Remote
	logs       sharedLogs // nil with SQLite
	eggs       eggcache.DB
	listenEggs func(ctx context.Context, fn func())
	place      func(ctx context.Context, project, id string) (pgstore.Placement, error)
	running    func(ctx context.Context) (map[string]int, error)
	setItems   func(seq int64) error
	secret     string
}

// leadCandidate tries to take the lead lock (pgstore.Candidate).
type leadCandidate interface {
	Try(ctx context.Context) (lead context.Context, release func(), ok bool, err error)
	Close()
}

// sharedLogs are the crawl logs in a shared database: shipped by this
// node, read back by any.
type sharedLogs interface {
	logship.Store
	logship.Source
	HasShippedLogs(ctx context.Context, seqs []int64) (map[int64]bool, error)
}

// openDatabase opens the database option's store: SQLite in dbs_dir when
// it is empty, PostgreSQL otherwise, this node claiming as node_name and
// dating jobs by the database's clock. A cluster node registers at once:
// a second daemon with a node_name already alive refuses to start, and a
// restart of the same node takes its running jobs over.
func openDatabase(ctx context.Context, cfg *config.Config, version string) (database, error) {
	if cfg.Database == "" {
		st, err := store.Open(cfg.DbsDir)
		if err != nil {
			return database{}, err
		}
		return database{all: st, local: st}, nil
	}
	// A database that does not answer at start fails the start, in time
	// for systemd to restart the daemon.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	st, err := openPostgres(ctx, cfg, version)
	if err != nil {
		return database{}, err
	}
	if err := st.Register(ctx); err != nil {
		st.Close()
		return database{}, err
	}
	secret, err := st.ClusterSecret(ctx)
	if err != nil {
		st.Close()
		return database{}, err
	}
	lead := func() leadCandidate { return st.Candidate(pgstore.SchedulerLock) }
	return database{all: st, local: st.Local(), listen: st.ListenPayloads, lead: lead, keepLease: st.KeepLease, nodes: st.Nodes, remote: st.Local(), logs: st, eggs: st, listenEggs: st.ListenEggs,
		place: st.Place, secret: secret, running: st.RunningByNode, setItems: st.SetItems}, nil
}

// advertiseURL is how other nodes reach this one: advertise_url, or the
// API's address (the host name when it listens on every address).
func advertiseURL(cfg *config.Config) string {
	if cfg.AdvertiseURL != "" {
		return cfg.AdvertiseURL
	}
	host := cfg.BindAddress
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host, _ = os.Hostname()
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(cfg.HTTPPort))
}

// openPostgres opens the database option's PostgreSQL store as this node's
// (node_name, its lease and slots), with the database_password_file's
// password; it does not register the node.
func openPostgres(ctx context.Context, cfg *config.Config, version string) (*pgstore.Store, error) {
	var password string
	if cfg.DatabasePasswordFile != "" {
		var err error
		if password, err = pgstore.ReadPasswordFile(cfg.DatabasePasswordFile); err != nil {
			return nil, cfg.PathError("database_password_file", cfg.DatabasePasswordFile, err)
		}
	}
	return pgstore.Open(ctx, cfg.Database, pgstore.Options{Password: password, Node: cfg.NodeName, ServerClock: true,
		Lease: cfg.NodeLease, LostJobs: cfg.LostJobs, AdvertiseURL: advertiseURL(cfg), Version: version, MaxProc: cfg.Slots()})
}
