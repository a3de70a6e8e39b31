package client

import (
	"context"
	"net/url"
)

// Schedule is one entry of listschedules.json (this daemon's addition,
// issue 16). Durations are Go's (2s, 1h30m0s); times the server's naive
// local time.
type Schedule struct {
	ID           string            `json:"id"`
	Project      string            `json:"project"`
	Spider       string            `json:"spider"`
	Version      string            `json:"version"`
	Cron         string            `json:"cron"`
	Timezone     string            `json:"timezone"`
	Every        string            `json:"every"`
	Overlap      string            `json:"overlap"`
	Jitter       string            `json:"jitter"`
	Retries      int               `json:"retries"`
	RetryDelay   string            `json:"retry_delay"`
	Priority     float64           `json:"priority"`
	Settings     map[string]string `json:"settings"`
	Args         map[string]string `json:"args"`
	NextRun      string            `json:"next_run"`
	LastRun      string            `json:"last_run"`
	LastJob      string            `json:"last_job"`
	LastOutcome  string            `json:"last_outcome"`
	Paused       bool              `json:"paused"`
	PausedReason string            `json:"paused_reason"`
}

// AddedSchedule is addschedule.json's answer.
type AddedSchedule struct {
	ID      string `json:"schedule"`
	NextRun string `json:"next_run"`
}

// AddSchedule posts addschedule.json with form (project, spider, cron or
// every, and the rest as the endpoint takes them).
func (c *Client) AddSchedule(ctx context.Context, form url.Values) (AddedSchedule, error) {
	var out AddedSchedule
	err := c.post(ctx, "addschedule.json", form, &out)
	return out, err
}

// ListSchedules returns the schedules of a project ("" for all).
func (c *Client) ListSchedules(ctx context.Context, project string) ([]Schedule, error) {
	var q url.Values
	if project != "" {
		q = url.Values{"project": {project}}
	}
	var out struct {
		Schedules []Schedule `json:"schedules"`
	}
	err := c.get(ctx, "listschedules.json", q, &out)
	return out.Schedules, err
}

// ChangeSchedule posts delschedule.json, pauseschedule.json or
// resumeschedule.json (action: del, pause or resume).
func (c *Client) ChangeSchedule(ctx context.Context, action, project, id string) error {
	return c.post(ctx, action+"schedule.json", url.Values{"project": {project}, "schedule": {id}}, nil)
}
