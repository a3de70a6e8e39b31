package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Event is one job event from /events (the daemon's README documents
// every key). Raw is the event's JSON as the server sent it.
type Event struct {
	ID       int64           `json:"id"`
	Event    string          `json:"event"` // scheduled, started or finished
	Time     string          `json:"time"`
	Project  string          `json:"project"`
	Spider   string          `json:"spider"`
	Job      string          `json:"job"`
	Outcome  *string         `json:"outcome"`
	ExitCode *int            `json:"exit_code"`
	Duration *float64        `json:"duration_seconds"`
	Stats    json.RawMessage `json:"stats"`
	LogURL   *string         `json:"log_url"`
	Raw      json.RawMessage `json:"-"`
}

// EventsOptions say where a stream of events starts and whether it ends.
type EventsOptions struct {
	// Since: the events after this ID; -1 means only the events to come.
	Since int64
	// Follow keeps the stream open, reconnecting after the last event seen
	// when the connection drops; without it the stream ends once it has
	// caught up.
	Follow bool
	// OnOpen, if set, is called each time the stream is open, before any
	// of its events (scrapydctl jobs --watch lists the jobs then, so that
	// no change falls between the listing and the stream).
	OnOpen func() error
}

// Events calls fn with each event from the server's /events stream (an
// extension of this daemon; Scrapyd has none), in order, until fn fails,
// ctx ends, or (without Follow) the stream has caught up.
func (c *Client) Events(ctx context.Context, o EventsOptions, fn func(Event) error) error {
	last := o.Since
	for {
		err := c.stream(ctx, last, o, func(e Event) error {
			last = e.ID
			return fn(e)
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var stop *callbackError
		if errors.As(err, &stop) {
			return stop.err
		}
		var he *HTTPError
		if !o.Follow || errors.As(err, &he) {
			return err
		}
		// A dropped connection (a daemon restart): resume after the last
		// event seen, as an EventSource does.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// callbackError is fn's own error, which ends Events at once.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }
func (e *callbackError) Unwrap() error { return e.err }

func (c *Client) stream(ctx context.Context, last int64, o EventsOptions, fn func(Event) error) error {
	q := url.Values{}
	if last >= 0 {
		q.Set("since", strconv.FormatInt(last, 10))
	}
	if !o.Follow {
		q.Set("follow", "0")
	}
	resp, err := c.send(ctx, request{method: http.MethodGet, ref: "events", query: q, header: http.Header{"Accept": {"text/event-stream"}}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := c.readAnswer(resp)
		var env envelope
		if json.Unmarshal(body, &env) == nil && env.Status == "error" {
			return &callbackError{&APIError{Endpoint: "events", Message: env.Message}}
		}
		return &callbackError{errors.New("the server has no /events stream (Scrapyd has none; this daemon's does)")}
	}
	if o.OnOpen != nil {
		if err := o.OnOpen(); err != nil {
			return &callbackError{err}
		}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20) // final stats can be long
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			if d, ok := strings.CutPrefix(line, "data:"); ok {
				data.WriteString(strings.TrimPrefix(d, " "))
			}
			continue
		}
		if data.Len() == 0 {
			continue // a comment or heartbeat
		}
		var e Event
		raw := []byte(data.String())
		data.Reset()
		if err := json.Unmarshal(raw, &e); err != nil {
			return &callbackError{err}
		}
		e.Raw = raw
		if err := fn(e); err != nil {
			return &callbackError{err}
		}
	}
	if err := sc.Err(); err != nil {
		return c.unreachable(err)
	}
	return nil
}
