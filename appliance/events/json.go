package events

import (
	"encoding/json"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Event is an event as it goes out, the same in a webhook's body and an
// /events message: the README documents every key. Keys are always
// present (null when unknown) so receivers need no existence checks.
type Event struct {
	ID          int64           `json:"id"`
	Event       string          `json:"event"`
	Time        string          `json:"time"`
	NodeName    string          `json:"node_name"`
	Project     string          `json:"project"`
	Spider      string          `json:"spider"`
	Job         string          `json:"job"`
	Version     string          `json:"version"`
	Priority    float64         `json:"priority"`
	ScheduledAt string          `json:"scheduled_at"`
	StartedAt   *string         `json:"started_at"`
	EndedAt     *string         `json:"ended_at"`
	PID         *int            `json:"pid"`
	Outcome     *string         `json:"outcome"`
	ExitCode    *int            `json:"exit_code"`
	QueueWait   *float64        `json:"queue_wait_seconds"`
	Duration    *float64        `json:"duration_seconds"`
	Stats       json.RawMessage `json:"stats"`
	LogURL      *string         `json:"log_url"`
	ItemsURL    *string         `json:"items_url"`
}

// timeFormat is RFC 3339 in UTC with microseconds: sortable as text and
// read by every JSON consumer.
const timeFormat = "2006-01-02T15:04:05.000000Z07:00"

func stamp(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(timeFormat)
	return &s
}

func seconds(d time.Duration) *float64 {
	s := d.Seconds()
	return &s
}

func orNil[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

// Wire is e as it goes out under cfg: the links are where cfg serves the
// job's log and items (jobfiles.URLs, the listings' own), null when that
// directory is not served.
func Wire(cfg *config.Config, e store.Event) Event {
	j := e.Job
	w := Event{
		ID: e.ID, Event: string(e.Type), Time: *stamp(e.Time), NodeName: cfg.NodeName,
		Project: j.Project, Spider: j.Spider, Job: j.ID, Version: j.Version, Priority: j.Priority,
		ScheduledAt: *stamp(j.Scheduled), StartedAt: stamp(j.Started), EndedAt: stamp(j.Ended),
		PID: orNil(j.PID), Outcome: orNil(string(j.Outcome)), ExitCode: j.ExitCode, Stats: json.RawMessage("null"),
	}
	if !j.Started.IsZero() {
		w.QueueWait = seconds(j.Started.Sub(j.Scheduled))
		if !j.Ended.IsZero() {
			w.Duration = seconds(j.Ended.Sub(j.Started))
		}
	}
	// Stats are the crawl's final stats as the crawl web service sent them.
	if j.Stats != "" && json.Valid([]byte(j.Stats)) {
		w.Stats = json.RawMessage(j.Stats)
	}
	logURL, itemsURL := jobfiles.URLs(cfg, j.Project, j.Spider, j.ID)
	w.LogURL, w.ItemsURL = orNil(logURL), orNil(itemsURL)
	return w
}

// Marshal is e's JSON under cfg, on one line (an SSE data line).
func Marshal(cfg *config.Config, e store.Event) []byte {
	b, _ := json.Marshal(Wire(cfg, e)) // nothing in Event can fail to marshal
	return b
}
