// Package events turns the job events the store writes (scheduled,
// started, finished, each in the transaction of its state change) into
// what leaves the daemon: their JSON, the /events stream of server-sent
// events, and webhooks that POST each event, signed, to every receiver
// until it has taken it (issue 17 point 3). Nothing here is on the
// dispatcher's path: it only reads what the store committed.
package events

import (
	"context"
	"sync"

	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Source is the store as events read it: store.Store, or any store that
// passes appliance/store/storetest. Events returns those after an ID,
// oldest first.
type Source interface {
	Events(ctx context.Context, after int64, limit int) ([]store.Event, error)
	LastEventID(ctx context.Context) (int64, error)
}

// Feed lets any number of readers wait for events without polling: the
// store calls Notify after each commit that wrote events, which wakes
// every waiting reader once; each then reads the database from its own
// position. A reader never misses a wake-up: it takes the channel before
// it reads, so a commit after its read closes the channel it waits on.
type Feed struct {
	src Source

	mu      sync.Mutex
	changed chan struct{}
}

// NewFeed returns a Feed over src; wire its Notify to the store's OnEvent.
func NewFeed(src Source) *Feed {
	return &Feed{src: src, changed: make(chan struct{})}
}

// Notify wakes every waiting reader. It never blocks.
func (f *Feed) Notify(int64) {
	f.mu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func (f *Feed) wake() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Wait returns up to limit events after the ID after, waiting until there
// is at least one or ctx ends (then it returns ctx's error).
func (f *Feed) Wait(ctx context.Context, after int64, limit int) ([]store.Event, error) {
	for {
		wake := f.wake()
		// The read itself is not cut short: a caller whose ctx has ended
		// (follow=0) still gets the events already there.
		es, err := f.src.Events(context.WithoutCancel(ctx), after, limit)
		if err != nil || len(es) > 0 {
			return es, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wake:
		}
	}
}

// Last is the newest event's ID (0 before the first): where a reader that
// wants only the events to come starts.
func (f *Feed) Last(ctx context.Context) (int64, error) { return f.src.LastEventID(ctx) }
