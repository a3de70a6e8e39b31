package daemon

import (
	"context"
	"sync"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// leadRetry is how often a cluster node that does not lead tries to take
// the lead lock: the longest a cluster goes without a lead, once the
// server has released the lock of one that died, is about this.
const leadRetry = 2 * time.Second

// runLead makes the recurring schedules' runs and delivers the webhooks
// while this node leads, until ctx ends. With SQLite it always leads. In a
// cluster it leads while it holds the lead lock, which every node tries
// to take every leadRetry: when the lead dies, or loses its connection to
// the database, another node takes over, and a node that lost the lead
// takes it again when it can.
func (d *daemon) runLead(ctx context.Context) {
	if d.db.lead == nil {
		d.leadTerm(ctx, false)
		return
	}
	var said string // the last state logged, so that retries log once
	say := func(state string, log func()) {
		if said != state {
			said = state
			log()
		}
	}
	c := d.db.lead()
	defer c.Close()
	for {
		lctx, release, ok, err := c.Try(ctx)
		switch {
		case ctx.Err() != nil:
			if release != nil {
				release()
			}
			return
		case err != nil:
			say("error", func() {
				d.log.Error("cannot try to take the lead lock (recurring schedules' runs and webhooks); retrying every 2 s", "err", err)
			})
		case !ok:
			say("follow", func() {
				d.log.Info("recurring schedules' runs and webhooks are another node's (it holds the lead lock); this node takes over if it is released")
			})
		default:
			said = "lead"
			d.log.Info("this node took the lead lock: it makes the recurring schedules' runs and delivers webhooks")
			held := d.leadTerm(lctx, true)
			release()
			if ctx.Err() != nil {
				return
			}
			if held {
				d.log.Error("this node lost the lead lock (its database connection broke): it stopped making recurring runs and delivering webhooks; another node takes over, or this one when it can")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(leadRetry):
		}
	}
}

// leadTerm runs the scheduler and the webhooks until ctx ends. A node
// that takes the lead in a cluster first reads the schedules as the
// previous lead and the other nodes left them (each due time's run is
// made once: a run the previous lead made for a time it had no chance to
// record is refused by the database, job.ErrRunMade).
// It returns false when it gave the lead up at once.
func (d *daemon) leadTerm(ctx context.Context, reload bool) bool {
	if reload {
		if err := d.sched.Load(ctx); err != nil {
			if ctx.Err() == nil {
				d.log.Error("cannot read the recurring schedules on taking the lead; giving it up to try again", "err", err)
			}
			return false
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); d.sched.Run(ctx) }()
	go func() { defer wg.Done(); d.webhooks.Run(ctx) }()
	if reload {
		wg.Add(1)
		go func() { defer wg.Done(); d.followEnds(ctx) }()
	}
	wg.Wait()
	return true
}

// endsCursor is the event cursor of the schedule runs' ends the leads have
// dealt with.
const endsCursor = "lead: schedule runs ended"

// followEnds tells the scheduler of the end of every schedule run in the
// cluster, whichever node ran it, until ctx ends: the lead alone keeps the
// schedules' run state (retries, a run queued behind another), in its own
// copy. It resumes after the ends the previous lead dealt with, so that a
// run that ended while no node led is retried too.
func (d *daemon) followEnds(ctx context.Context) {
	var after int64
	for {
		var ok bool
		var err error
		if after, ok, err = d.store.Cursor(ctx, endsCursor); err == nil && !ok {
			after, err = d.feed.Last(ctx) // the first lead: from now on
		}
		if err == nil || !d.leadPause(ctx, "cannot read where the schedule runs' ends were left; retrying", err) {
			break
		}
	}
	for ctx.Err() == nil {
		es, err := d.feed.Wait(ctx, after, 256)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			// The cursor first: a lead that dies meanwhile leaves a
			// retry unmade rather than made twice (Scrapyd never reruns
			// a job by itself).
			err = d.store.SetCursor(endsCursor, es[len(es)-1].ID)
		}
		if err != nil {
			d.leadPause(ctx, "cannot follow the schedule runs' ends; retrying", err)
			continue
		}
		for _, e := range es {
			if e.Type == store.EventFinished && e.Job.Schedule != "" {
				d.sched.Ended(ctx, e.Job)
			}
		}
		after = es[len(es)-1].ID
	}
}

// leadPause logs err and waits leadRetry; false when ctx ended.
func (d *daemon) leadPause(ctx context.Context, msg string, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	d.log.Error(msg, "err", err)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(leadRetry):
		return true
	}
}

// refreshSchedules reads a project's schedules again after another node
// changed them.
func (d *daemon) refreshSchedules(ctx context.Context, project string) {
	if err := d.sched.Refresh(ctx, project); err != nil && ctx.Err() == nil {
		d.log.Error("cannot read the schedules another node changed", "project", project, "err", err)
	}
}
