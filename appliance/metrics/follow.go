package metrics

import (
	"context"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/crawlrpc"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Events is the job-event feed as the metrics follow it: events.Feed over
// the store, whose events are written in the transaction of each state
// change. Wait returns the events after an ID, oldest first, waiting for
// one; it fails only with ctx's error or the store's.
type Events interface {
	Wait(ctx context.Context, after int64, limit int) ([]store.Event, error)
}

// retryAfter is the pause after the store failed to read events.
const retryAfter = time.Second

// Follow counts the job events after the ID after until ctx ends (in a
// cluster, those this node recorded: Options.Node): each start's queue
// wait, each end's outcome, duration, final stats and success. The caller reads after (the newest event's ID) before the
// dispatcher runs, so that the ends it records on adopting crawls count.
func (m *Metrics) Follow(ctx context.Context, ev Events, after int64) {
	// A job's wait counts once, even should its start be recorded twice
	// (releases before Store.Launching wrote a started event for the
	// handle stored before the launch, and another with the launcher's).
	started := map[int64]bool{}
	for {
		es, err := ev.Wait(ctx, after, 256)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// The events stay in the store: they are read on the retry.
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryAfter):
			}
			continue
		}
		for _, e := range es {
			after = e.ID
			if e.Node != m.o.Node && m.o.Node != "" {
				continue // another node's: counted by it
			}
			switch e.Type {
			case store.EventStarted:
				if started[e.Job.Seq] {
					continue
				}
				started[e.Job.Seq] = true
			case store.EventFinished:
				delete(started, e.Job.Seq)
			}
			m.Event(e)
		}
	}
}

// Event counts one job event.
func (m *Metrics) Event(e store.Event) {
	j := e.Job
	switch e.Type {
	case store.EventStarted:
		m.JobStarted(Started{Project: j.Project, Spider: j.Spider, Scheduled: j.Scheduled, Started: j.Started})
	case store.EventFinished:
		ended := j.Ended
		if ended.IsZero() {
			ended = e.Time
		}
		m.JobFinished(Finished{Job: j.ID, Project: j.Project, Spider: j.Spider, Outcome: j.Outcome,
			Started: j.Started, Ended: ended, Stats: FinalCounts(j)})
	}
}

// FinalCounts are the counts in a finished job's final stats (zero when
// it has none, or they do not parse).
func FinalCounts(j job.Job) Counts {
	if j.Stats == "" {
		return Counts{}
	}
	sum, err := crawlrpc.Summarize([]byte(j.Stats))
	if err != nil {
		return Counts{}
	}
	return FromSummary(sum)
}

// FromSummary are the counts in live or final stats.
func FromSummary(s crawlrpc.Summary) Counts {
	return Counts{Items: s.ItemsScraped, Responses: s.Responses, Errors: s.Errors}
}
