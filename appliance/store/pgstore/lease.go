package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// LeaseHooks are how KeepLease tells the daemon about its lease. Each
// must return quickly.
type LeaseHooks struct {
	// Lost: a renewal failed (err); the node stops claiming.
	Lost func(err error)
	// Regained: renewed again, or registered again under a new epoch after
	// it was fenced (fenced true: its old jobs' ends will be refused).
	Regained func(fenced bool)
	// Expiring: no renewal has succeeded for the lease minus a margin
	// since the start of the last one that did, on this node's monotonic
	// clock; the database cannot have let it expire yet. A node in requeue
	// mode stops its crawls now: nobody may start them again before the
	// lease ends. Called once per outage.
	Expiring func()
	// Reaped: this node reaped dead nodes (for the log).
	Reaped func([]Reaped)
	// MaxProc is the node's slots, recorded at each renewal.
	MaxProc func() int
	// Keep is finished_to_keep, for the history trim of lost jobs' ends
	// (nil: no trim).
	Keep func() int
	// Error: a reap or re-registration failed (for the log).
	Error func(what string, err error)
}

// stopMargin is how long before its lease can run out at the database a
// node that cannot renew stops its crawls (requeue mode); reapMargin how
// long after a lease ran out other nodes wait before reaping. Their sum is
// the time the crawls' ends have, since the node's and the database's
// clocks may run apart a little.
func stopMargin(lease time.Duration) time.Duration { return lease / 4 }

// tick is how often a node renews its lease and looks for dead nodes:
// often enough that a dead node is reaped within its lease plus 15 s.
func tick(lease time.Duration) time.Duration { return min(lease/3, 2*time.Second) }

// KeepLease renews this node's lease, and reaps dead nodes, until ctx
// ends; Register must have succeeded first. A node that finds itself
// fenced registers again under a new epoch.
func (s *Store) KeepLease(ctx context.Context, h LeaseHooks) {
	lease := s.lease()
	every := tick(lease)
	// lastGood is the start of the last successful renewal (monotonic):
	// the database's lease ends no earlier than lastGood + lease.
	s.nodeMu.Lock()
	lastGood := s.registered
	s.nodeMu.Unlock()
	ok := true
	// Expiring has a timer of its own, re-armed by each renewal that
	// succeeds: in this loop it would wait behind a renewal the partition
	// holds (up to every), then lose the select to the next renewal's
	// tick half the time, while other nodes reap on time and start the
	// crawls again (TestPostgresPartition saw both copies run).
	expiry := time.AfterFunc(max(lease-stopMargin(lease)-time.Since(lastGood), 0), func() {
		if ctx.Err() == nil {
			call(h.Expiring)
		}
	})
	defer expiry.Stop()
	// The first renewal at once: the start since the registration took
	// some of the lease already.
	next := time.NewTimer(0)
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-next.C:
		}
		start := time.Now()
		next.Reset(every)
		rctx, cancel := context.WithTimeout(ctx, every)
		err := s.Renew(rctx, callInt(h.MaxProc))
		fenced := errors.Is(err, store.ErrFenced)
		if fenced {
			if err = s.Register(rctx); err != nil && h.Error != nil {
				h.Error("register again after being fenced", err)
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if ok && h.Lost != nil {
				h.Lost(err)
			}
			ok = false
			continue
		}
		lastGood = start
		expiry.Reset(max(lease-stopMargin(lease)-time.Since(lastGood), 0))
		if !ok || fenced {
			if h.Regained != nil {
				h.Regained(fenced)
			}
		}
		ok = true
		rctx, cancel = context.WithTimeout(ctx, every)
		keep := -1
		if h.Keep != nil {
			keep = h.Keep()
		}
		reaped, err := s.Reap(rctx, keep)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && h.Error != nil:
			h.Error("reap dead nodes", err)
		case len(reaped) > 0 && h.Reaped != nil:
			h.Reaped(reaped)
		}
	}
}

func call(f func()) {
	if f != nil {
		f()
	}
}

func callInt(f func() int) int {
	if f == nil {
		return 0
	}
	return f()
}
