package api

import (
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// scheduleOwn are addschedule.json's own parameters: schedule.json's and
// the timing. Every other one is a spider argument.
var scheduleOwn = map[string]bool{"schedule": true, "cron": true, "timezone": true, "every": true,
	"overlap": true, "jitter": true, "retries": true, "retry_delay": true}

func init() {
	for k := range reserved {
		scheduleOwn[k] = true
	}
}

// addSchedule answers {"schedule": ID, "next_run": ...}.
func (a *handlers) addSchedule(c *fiber.Ctx, p *params) (obj, error) {
	sr, err := scheduleRequest(p, scheduleOwn)
	if err != nil {
		return nil, err
	}
	r := service.AddScheduleRequest{ScheduleRequest: sr}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"schedule", &r.ID}, {"cron", &r.Cron}, {"timezone", &r.Timezone}, {"every", &r.Every}, {"overlap", &r.Overlap},
		{"jitter", &r.Jitter}, {"retries", &r.Retries}, {"retry_delay", &r.RetryDelay}} {
		if *f.dst, err = p.optional(f.name); err != nil {
			return nil, err
		}
	}
	sc, err := a.o.Service.AddSchedule(c.UserContext(), r)
	if err != nil {
		return nil, err
	}
	return obj{{"schedule", sc.ID}, {"next_run", pyTime(sc.NextRun)}}, nil
}

func (a *handlers) listSchedules(c *fiber.Ctx, p *params) (obj, error) {
	project, err := p.optional("project")
	if err != nil {
		return nil, err
	}
	list, err := a.o.Service.ListSchedules(c.UserContext(), project, 0)
	if err != nil {
		return nil, err
	}
	out := make([]obj, len(list))
	for i, s := range list {
		out[i] = scheduleEntry(s)
	}
	return obj{{"schedules", out}}, nil
}

// scheduleEntry is one schedule in listschedules.json.
func scheduleEntry(s service.ScheduleInfo) obj {
	var paused any
	if s.Paused != "" {
		paused = s.Paused
	}
	return obj{{"id", s.ID}, {"project", s.Project}, {"spider", s.Spider}, {"version", orNil(s.Version)},
		{"cron", orNil(s.Cron)}, {"timezone", orNil(s.Timezone)}, {"every", durationOrNil(s.Every)},
		{"overlap", string(s.Overlap)}, {"jitter", durationOrNil(s.Jitter)},
		{"retries", s.Retries}, {"retry_delay", durationOrNil(s.RetryDelay)}, {"priority", s.Priority},
		{"settings", pairs(s.Settings)}, {"args", pairs(s.Args)},
		{"next_run", pyTime(s.NextRun)}, {"last_run", pyTime(s.LastRun)},
		{"last_job", orNil(s.LastJob)}, {"last_outcome", orNil(s.LastOutcome)},
		{"paused", s.Paused != ""}, {"paused_reason", paused}}
}

func orNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func durationOrNil(d time.Duration) any {
	if d == 0 {
		return nil
	}
	return d.String()
}

// changeSchedule serves delschedule.json, pauseschedule.json and
// resumeschedule.json: each takes project and schedule.
func (a *handlers) changeSchedule(action string) func(c *fiber.Ctx, p *params) (obj, error) {
	return func(c *fiber.Ctx, p *params) (obj, error) {
		ps, err := p.requiredAll("project", "schedule")
		if err != nil {
			return nil, err
		}
		sc, err := a.o.Service.ChangeSchedule(ps[0], ps[1], action)
		if err != nil {
			return nil, err
		}
		if action == "delete" {
			return obj{{"schedule", sc.ID}}, nil
		}
		return obj{{"schedule", sc.ID}, {"paused", sc.Paused != ""}, {"next_run", pyTime(sc.NextRun)}}, nil
	}
}
