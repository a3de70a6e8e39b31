package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Listen calls fn for every change to the queue announced on Channel, by
// this node or another, until ctx ends. It holds its own connection and
// reconnects by itself (backing off up to 5 s); fn is also called once
// after each (re)connect, because announcements made while it was away
// are lost. fn must not block for long: announcements queue behind it.
func (s *Store) Listen(ctx context.Context, fn func()) {
	s.ListenPayloads(ctx, func(string) { fn() })
}

// Cancels is the payload of an announcement that cancels were asked for
// the crawls of the node named after it ("cancel node2").
const Cancels = "cancel "

// ListenPayloads is Listen with each announcement's payload: "" for a
// change to the queue or an event, Cancels plus a node's name for cancel
// requests to that node. After a (re)connect fn is called with "".
func (s *Store) ListenPayloads(ctx context.Context, fn func(payload string)) {
	s.listenOn(ctx, Channel, fn)
}

// listenOn is ListenPayloads on any channel.
func (s *Store) listenOn(ctx context.Context, channel string, fn func(payload string)) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		connected := false
		if err := s.listen(ctx, channel, fn, &connected); err == nil || ctx.Err() != nil {
			return
		}
		if connected {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// listen is one connection's life.
func (s *Store) listen(ctx context.Context, channel string, fn func(string), connected *bool) error {
	conn, err := pgx.ConnectConfig(ctx, s.cfg.ConnConfig)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `LISTEN `+channel); err != nil {
		return err
	}
	*connected = true
	fn("")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		fn(n.Payload)
	}
}
