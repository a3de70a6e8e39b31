package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"syscall"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// RequestCancel asks the nodes that run a project's job id to signal its
// crawl, for every running job with that id but those in skip (the ones
// the asking node runs and signals itself): sig, or SIGKILL when a cancel
// was asked before (Scrapy's second signal forces the stop; ours makes it
// a kill, as on one node). The request is counted on the job's row and
// announced to its node in one transaction, so a node that was away
// finds it at its next look (CancelRequests). It says how many running
// jobs it asked for.
func (s *Store) RequestCancel(project, id string, sig syscall.Signal, skip []int64) (int, error) {
	if skip == nil {
		skip = []int64{}
	}
	var n int
	err := s.write(false, func(t *tx) error {
		// SET reads the row as it was: cancelled is the earlier cancel's.
		rows, err := t.Query(t.ctx, `UPDATE jobs SET cancel_requests = cancel_requests + 1,
			cancel_signal = CASE WHEN cancelled THEN $4::integer ELSE $3::integer END, cancelled = true
			WHERE state = 'running' AND project = $1 AND id = $2 AND NOT (seq = ANY($5::bigint[])) RETURNING node`,
			project, id, int(sig), int(syscall.SIGKILL), skip)
		if err != nil {
			return err
		}
		nodes, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		n = len(nodes)
		told := map[string]bool{}
		for _, node := range nodes {
			if told[node] {
				continue
			}
			told[node] = true
			if _, err := t.Exec(t.ctx, `SELECT pg_notify('`+Channel+`', $1)`, Cancels+node); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cancel %s: %w", id, err)
	}
	return n, nil
}

// CancelRequests lists this node's running jobs with cancel requests it
// has not delivered yet.
func (l Local) CancelRequests(ctx context.Context) ([]store.CancelRequest, error) {
	rows, err := l.pool.Query(ctx, `SELECT seq, cancel_signal, cancel_requests FROM jobs
		WHERE state = 'running' AND node = $1 AND cancel_requests > cancels_delivered`, l.opts.Node)
	if err != nil {
		return nil, fmt.Errorf("cancel requests: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.CancelRequest, error) {
		var c store.CancelRequest
		var sig int
		err := r.Scan(&c.Seq, &sig, &c.Requests)
		c.Signal = syscall.Signal(sig)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("cancel requests: %w", err)
	}
	return out, nil
}

// CancelDelivered records that a job's cancel requests up to requests
// were delivered (its crawl signalled).
func (s *Store) CancelDelivered(seq int64, requests int) error {
	return s.exec(`UPDATE jobs SET cancels_delivered = $2 WHERE seq = $1 AND cancels_delivered < $2`, seq, requests)
}

// ClusterSecret returns the secret the cluster's nodes present to each
// other, made by the first node that asks: 32 random bytes, hex.
func (s *Store) ClusterSecret(ctx context.Context) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO cluster_secret (secret) VALUES ($1) ON CONFLICT DO NOTHING`, hex.EncodeToString(b[:])); err != nil {
		return "", fmt.Errorf("cluster secret: %w", err)
	}
	var secret string
	err := s.pool.QueryRow(ctx, `SELECT secret FROM cluster_secret`).Scan(&secret)
	if errors.Is(err, pgx.ErrNoRows) || secret == "" {
		return "", errors.New("cluster secret: none stored")
	}
	if err != nil {
		return "", fmt.Errorf("cluster secret: %w", err)
	}
	return secret, nil
}

// Placement is where a job's crawl runs or ran, for a request about it on
// another node (its items, its web service).
type Placement struct {
	Node    string
	URL     string // the node's advertise_url ("" when it has none)
	Running bool
}

// Place finds the node that runs the job with this id (project "": any),
// or else ran its newest finished run, with that node's advertise_url;
// store.ErrNotFound when no node ran it.
func (s *Store) Place(ctx context.Context, project, id string) (Placement, error) {
	q := `SELECT j.node, COALESCE(n.advertise_url, ''), j.state = 'running' FROM jobs j LEFT JOIN nodes n ON n.name = j.node
		WHERE j.id = $1 AND j.state != 'pending' AND j.node != ''`
	args := []any{id}
	if project != "" {
		q += ` AND j.project = $2`
		args = append(args, project)
	}
	var p Placement
	err := s.pool.QueryRow(ctx, q+` ORDER BY j.state = 'running' DESC, j.ended DESC NULLS LAST, j.seq DESC LIMIT 1`, args...).Scan(&p.Node, &p.URL, &p.Running)
	if errors.Is(err, pgx.ErrNoRows) {
		return Placement{}, store.ErrNotFound
	}
	if err != nil {
		return Placement{}, fmt.Errorf("place job %s: %w", id, err)
	}
	return p, nil
}

// RunningByNode counts the running jobs of each node (claimed ones
// still starting included).
func (s *Store) RunningByNode(ctx context.Context) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT node, count(*) FROM jobs WHERE state = 'running' GROUP BY node`)
	if err != nil {
		return nil, fmt.Errorf("running jobs by node: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var node string
		var n int
		if err := rows.Scan(&node, &n); err != nil {
			return nil, fmt.Errorf("running jobs by node: %w", err)
		}
		out[node] = n
	}
	return out, rows.Err()
}

// SetItems records that a finished job's crawl left an items file on its
// node.
func (s *Store) SetItems(seq int64) error {
	return s.exec(`UPDATE jobs SET items = true WHERE seq = $1 AND state = 'finished'`, seq)
}
