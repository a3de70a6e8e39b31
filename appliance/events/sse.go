package events

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
)

// Stream serves /events: the job events as server-sent events (the
// WHATWG EventSource format), each with its event ID as the SSE id, so a
// client that reconnects with Last-Event-ID gets exactly the events after
// it. The daemon's Basic auth guards it like every path.
type Stream struct {
	Feed   *Feed
	Config func() *config.Config
	// Heartbeat is how often an idle stream sends a comment, so that
	// proxies keep it open and a gone client is noticed; 0 means 15 s.
	Heartbeat time.Duration

	once sync.Once
	stop chan struct{}
}

func (s *Stream) stopped() chan struct{} {
	s.once.Do(func() { s.stop = make(chan struct{}) })
	return s.stop
}

// Stop ends every open stream (the daemon is shutting down; the HTTP
// server waits for open connections).
func (s *Stream) Stop() {
	ch := s.stopped()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// Register adds GET /events.
func (s *Stream) Register(r fiber.Router) { r.Get("/events", s.serve) }

// errBadID: Last-Event-ID or since is not an event ID.
var errBadID = errors.New("Last-Event-ID and since must be event ids (whole numbers of 0 or more)")

// start is where a stream begins: after Last-Event-ID (an EventSource's
// reconnection), else after ?since=N (0: every event still kept), else
// after the newest event (only the events to come).
func (s *Stream) start(c *fiber.Ctx) (int64, error) {
	v := c.Get("Last-Event-ID")
	if v == "" {
		v = c.Query("since")
	}
	if v == "" {
		return s.Feed.Last(c.UserContext())
	}
	id, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || id < 0 {
		return 0, errBadID
	}
	return id, nil
}

func (s *Stream) serve(c *fiber.Ctx) error {
	after, err := s.start(c)
	if err != nil {
		return err
	}
	// follow=0 ends the stream once it has caught up (scrapydctl events
	// without -f).
	follow := c.Query("follow") != "0"
	beat := s.Heartbeat
	if beat <= 0 {
		beat = 15 * time.Second
	}
	stop := s.stopped()
	c.Set(fiber.HeaderContentType, "text/event-stream; charset=utf-8")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no") // nginx: pass each event on at once
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		// The first line reaches the client at once, so it knows the
		// stream is open before any event.
		fmt.Fprintf(w, ": scrapyd events after %d\nretry: 3000\n\n", after)
		if w.Flush() != nil {
			return
		}
		for ctx.Err() == nil {
			wait, done := context.WithTimeout(ctx, beat)
			if !follow {
				wait, done = context.WithTimeout(ctx, 0)
			}
			es, err := s.Feed.Wait(wait, after, 100)
			done()
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, context.DeadlineExceeded):
				if !follow {
					return
				}
				w.WriteString(": keep-alive\n\n")
			case err != nil:
				fmt.Fprintf(w, ": error reading events: %s\n\n", strings.ReplaceAll(err.Error(), "\n", " "))
				w.Flush()
				return
			}
			cfg := s.Config()
			for _, e := range es {
				fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Type, Marshal(cfg, e))
				after = e.ID
			}
			if w.Flush() != nil {
				return // the client is gone
			}
		}
	})
	return nil
}
