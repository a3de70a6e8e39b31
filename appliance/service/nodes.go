package service

import (
	"context"
	"time"
)

// Node is one daemon of a cluster (cluster mode, issue 15), as
// diagnostics.json and the nodes page show it.
type Node struct {
	Name         string
	Slots        int // its max_proc
	Running      int // the jobs it runs now
	Lease        time.Duration
	LeaseUntil   time.Time // by the database's clock
	Version      string
	AdvertiseURL string
	Started      time.Time
	// Alive: its lease runs and it did not stop. Stopped: it stopped
	// cleanly and its crawls wait for its next start. Reaped: declared
	// dead, its jobs recorded lost or queued again.
	Alive, Stopped, Reaped bool
}

// Nodes lists the cluster's nodes by name; cluster is false on a single
// node (no ListNodes hook), which has no list.
func (s *Service) Nodes(ctx context.Context) (nodes []Node, cluster bool, err error) {
	if s.ListNodes == nil {
		return nil, false, nil
	}
	nodes, err = s.ListNodes(ctx)
	return nodes, true, err
}

// checkNode refuses a node name no node of the cluster has had, as an
// unknown project is refused.
func (s *Service) checkNode(ctx context.Context, name string) error {
	nodes, cluster, err := s.Nodes(ctx)
	if err != nil || !cluster {
		return err
	}
	for _, n := range nodes {
		if n.Name == name {
			return nil
		}
	}
	return nodeNotFound(name)
}
