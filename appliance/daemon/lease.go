package daemon

import (
	"context"
	"sync/atomic"

	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
)

// lease is a cluster node's side of its lease: whether it may claim, and
// what it does when it cannot renew.
type lease struct {
	d        *daemon
	claiming atomic.Bool
}

func newLease(d *daemon) *lease {
	l := &lease{d: d}
	l.claiming.Store(true)
	return l
}

// mayClaim is the dispatcher's gate: a node that cannot renew its lease
// claims nothing.
func (l *lease) mayClaim() bool { return l.claiming.Load() }

// run keeps the lease until ctx ends.
func (l *lease) run(ctx context.Context, keep func(context.Context, pgstore.LeaseHooks)) {
	d := l.d
	keep(ctx, pgstore.LeaseHooks{
		Lost: func(err error) {
			l.claiming.Store(false)
			d.log.Error("cannot renew this node's lease: it claims no job until it can", "err", err)
		},
		Regained: func(fenced bool) {
			l.claiming.Store(true)
			if fenced {
				d.log.Warn("this node was declared dead while it could not renew its lease: its jobs were reaped; it rejoined under a new epoch, and the ends of its old crawls will not be recorded")
			} else {
				d.log.Info("this node's lease is renewed again")
			}
			d.disp.Wake()
		},
		Expiring: func() {
			if d.conf().LostJobs != pgstore.LostRequeue {
				d.log.Error("this node's lease is about to run out: other nodes will record its running jobs lost; its crawls keep running")
				return
			}
			d.log.Error("this node's lease is about to run out: stopping its crawls, which other nodes will queue again (lost_jobs = requeue)")
			d.disp.StopAll(ctx, "this node could not renew its lease (lost_jobs = requeue): the job is queued again elsewhere")
		},
		Reaped: func(rs []pgstore.Reaped) {
			for _, r := range rs {
				d.log.Warn("declared a node dead: its lease ran out", "node", r.Node, "lost", r.Lost, "requeued", r.Requeued, "claimed_not_started", r.Returned)
			}
		},
		MaxProc: func() int { return d.conf().Slots() },
		Keep:    func() int { return d.conf().FinishedToKeep },
		Error: func(what string, err error) {
			d.log.Error("cannot "+what, "err", err)
		},
	})
}
