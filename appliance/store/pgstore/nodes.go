package pgstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Lost-job modes (lost_jobs): what reaping does to a dead node's running
// jobs.
const (
	LostMark    = "mark"    // finished, outcome lost: Scrapyd never reruns a job
	LostRequeue = "requeue" // pending again, in their original place
)

// nodeLockClass is the first key of the session advisory lock a node holds
// while it runs (the second is its name's hash): a second daemon with the
// same node_name finds it taken.
const nodeLockClass = 0x5c7a9d18

// A node whose lock is held tries lockAttempts times, lockRetry apart,
// before it is refused.
const (
	lockAttempts = 15
	lockRetry    = 200 * time.Millisecond
)

// ErrNodeAlive: another live daemon holds this node_name.
var ErrNodeAlive = errors.New("node name in use")

// Node is one row of the cluster's node list, every time by the
// database's clock.
type Node struct {
	Name         string
	Epoch        int64 // bumped by each registration and by reaping
	Lease        time.Duration
	LeaseUntil   time.Time
	AdvertiseURL string
	MaxProc      int
	Version      string
	LostJobs     string // mark or requeue
	Started      time.Time
	Renewed      time.Time
	Stopped      bool // stopped cleanly and not back yet (its crawls wait to be adopted)
	Reaped       bool // declared dead: its jobs were reaped, its later writes fenced
	// Alive: its lease runs (by the database's clock) and it did not stop.
	Alive bool
}

// nodeLockKey is the advisory lock key of a node name.
func nodeLockKey(name string) int32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int32(h.Sum32())
}

// Epoch is the epoch this node registered under; 0 when it has not
// (its writes are then not fenced: the contract tests, tools).
func (s *Store) Epoch() int64 { return s.epoch.Load() }

// Register makes this store the node Options.Node of the cluster, under a
// new epoch: it takes the node's lock (ErrNodeAlive when another live
// daemon holds it), and takes over the running jobs an earlier run of the
// same node left (their crawls are adopted, nothing is reaped). Its lease
// runs Options.Lease from now, by the database's clock; KeepLease renews
// it. Called again after the node was fenced, it rejoins under a new
// epoch.
func (s *Store) Register(ctx context.Context) error {
	s.nodeMu.Lock()
	defer s.nodeMu.Unlock()
	start := time.Now()
	if err := s.lockNode(ctx); err != nil {
		return err
	}
	var epoch int64
	err := pgx.BeginFunc(ctx, s.nodeConn, func(t pgx.Tx) error {
		err := t.QueryRow(ctx, `INSERT INTO nodes (name, epoch, lease, lease_until, renewing_since, advertise_url, max_proc, version, lost_jobs, started, renewed)
			VALUES ($1, 1, make_interval(secs => $2), now() + make_interval(secs => $2), now(), $3, $4, $5, $6, now(), now())
			ON CONFLICT (name) DO UPDATE SET epoch = nodes.epoch + 1, lease = excluded.lease, lease_until = excluded.lease_until,
				renewing_since = excluded.renewing_since, advertise_url = excluded.advertise_url, max_proc = excluded.max_proc,
				version = excluded.version, lost_jobs = excluded.lost_jobs, started = excluded.started, renewed = excluded.renewed,
				stopped = false, reaped = false
			RETURNING epoch`,
			s.opts.Node, s.lease().Seconds(), s.opts.AdvertiseURL, s.opts.MaxProc, s.opts.Version, s.lostJobs()).Scan(&epoch)
		if err != nil {
			return err
		}
		// The crawls of the node's earlier run are this run's now.
		_, err = t.Exec(ctx, `UPDATE jobs SET epoch = $1 WHERE node = $2 AND state = 'running'`, epoch, s.opts.Node)
		return err
	})
	if err != nil {
		s.dropNodeConn()
		return fmt.Errorf("register node %s: %w", s.opts.Node, err)
	}
	s.epoch.Store(epoch)
	s.registered = start
	return nil
}

func (s *Store) lease() time.Duration {
	if s.opts.Lease <= 0 {
		return 30 * time.Second
	}
	return s.opts.Lease
}

func (s *Store) lostJobs() string {
	if s.opts.LostJobs == LostRequeue {
		return LostRequeue
	}
	return LostMark
}

// lockNode opens the node's own connection, if it has none, and takes the
// node's lock on it. A lock held by a session that registered before the
// node's lease ran out is a dead run's connection the server still
// believes in (a black-holed network): it is ended. Any other holder is a
// live daemon with the same name. Advisory locks are per database: the
// holder is looked for in this one only, or a node would take another
// cluster's namesake on the same server for its own (and end its
// connection, as parallel tests saw). Called with nodeMu held.
func (s *Store) lockNode(ctx context.Context) error {
	if s.nodeConn != nil && !s.nodeConn.IsClosed() {
		return nil
	}
	s.dropNodeConn()
	conn, err := pgx.ConnectConfig(ctx, s.cfg.ConnConfig)
	if err != nil {
		return fmt.Errorf("node %s: %w", s.opts.Node, err)
	}
	key := nodeLockKey(s.opts.Node)
	for attempt := 0; ; attempt++ {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, int32(nodeLockClass), key).Scan(&ok); err != nil {
			conn.Close(context.Background())
			return fmt.Errorf("node %s: %w", s.opts.Node, err)
		}
		if ok {
			s.nodeConn = conn
			return nil
		}
		var (
			pid   int32
			stale bool
			until *time.Time
		)
		err := conn.QueryRow(ctx, `SELECT l.pid, n.lease_until, COALESCE(n.lease_until < now() AND a.backend_start <= n.renewed, false)
			FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid LEFT JOIN nodes n ON n.name = $3
			WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid AND l.objid = ($2::int::bigint & 4294967295)::oid AND l.objsubid = 2
				AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			LIMIT 1`, int32(nodeLockClass), key, s.opts.Node).Scan(&pid, &until, &stale)
		if errors.Is(err, pgx.ErrNoRows) && attempt < lockAttempts {
			continue // released meanwhile
		}
		if err == nil && attempt < lockAttempts {
			if stale {
				conn.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid)
			}
			// A killed run's connection ends a moment after it (the
			// server reads the close): a restart at once waits for it.
			time.Sleep(lockRetry)
			continue
		}
		conn.Close(context.Background())
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("node %s: %w", s.opts.Node, err)
		}
		why := "another daemon holds it"
		if until != nil {
			why += ", its lease runs until " + until.UTC().Format(time.RFC3339)
		}
		return fmt.Errorf("node_name %q is in use by another running daemon (%s): give each daemon its own node_name: %w", s.opts.Node, why, ErrNodeAlive)
	}
}

// dropNodeConn closes the node's connection (releasing its lock), if any.
func (s *Store) dropNodeConn() {
	if s.nodeConn != nil {
		s.nodeConn.Close(context.Background())
		s.nodeConn = nil
	}
}

// Renew extends this node's lease by Options.Lease from now (the
// database's clock) and records its slots. store.ErrFenced when the node
// was declared dead meanwhile: it must Register again.
func (s *Store) Renew(ctx context.Context, maxProc int) error {
	s.nodeMu.Lock()
	defer s.nodeMu.Unlock()
	if err := s.lockNode(ctx); err != nil {
		return err
	}
	tag, err := s.nodeConn.Exec(ctx, `UPDATE nodes SET lease_until = now() + lease, renewed = now(), max_proc = $3,
			renewing_since = CASE WHEN lease_until < now() THEN now() ELSE renewing_since END
		WHERE name = $1 AND epoch = $2`, s.opts.Node, s.epoch.Load(), maxProc)
	if err != nil {
		// The next renewal starts on a new connection: this one may be
		// cut off or the server's restarted (the lock is taken again).
		s.dropNodeConn()
		return unavailable(fmt.Errorf("renew lease: %w", err))
	}
	if tag.RowsAffected() == 0 {
		return store.ErrFenced
	}
	return nil
}

// stop marks the node stopped cleanly (its crawls keep running, for its
// next start to adopt) and releases its lock. It stays in the cluster
// until its lease runs out; then it is reaped like a dead node.
func (s *Store) stop() {
	s.nodeMu.Lock()
	defer s.nodeMu.Unlock()
	if s.nodeConn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.nodeConn.Exec(ctx, `UPDATE nodes SET stopped = true WHERE name = $1 AND epoch = $2`, s.opts.Node, s.epoch.Load())
	s.dropNodeConn()
}

// Nodes lists the cluster's nodes by name, dead ones included.
func (s *Store) Nodes(ctx context.Context) ([]Node, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, epoch, extract(epoch FROM lease)::float8, lease_until, advertise_url, max_proc, version, lost_jobs,
		started, renewed, stopped, reaped, lease_until > now() AND NOT stopped AND NOT reaped FROM nodes ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("nodes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Node, error) {
		var (
			n     Node
			lease float64
		)
		err := r.Scan(&n.Name, &n.Epoch, &lease, &n.LeaseUntil, &n.AdvertiseURL, &n.MaxProc, &n.Version, &n.LostJobs,
			&n.Started, &n.Renewed, &n.Stopped, &n.Reaped, &n.Alive)
		n.Lease = time.Duration(lease * float64(time.Second))
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("nodes: %w", err)
	}
	return out, nil
}
