package service

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/recur"
)

// AddScheduleRequest is addschedule.json's parameters: schedule.json's
// (but jobid) and the timing, undecoded beyond strings.
type AddScheduleRequest struct {
	ScheduleRequest
	ID       string // "" for a new schedule; else the one to add or update
	Cron     string
	Timezone string
	Every    string
	Overlap  string
	Jitter   string
	Retries  string
	// RetryDelay is the wait before the first retry (it doubles at each).
	RetryDelay string
}

// errNoSchedules: the daemon runs without a scheduler (unit tests).
var errNoSchedules = &Error{Message: "recurring schedules are not available"}

// AddSchedule checks a recurring schedule as schedule.json checks a job,
// and its timing, then stores it; it runs from its next due time.
func (s *Service) AddSchedule(ctx context.Context, r AddScheduleRequest) (job.Schedule, error) {
	if s.Schedules == nil {
		return job.Schedule{}, errNoSchedules
	}
	if r.ID != "" {
		if err := checkName("schedule", r.ID); err != nil {
			return job.Schedule{}, err
		}
	}
	if r.JobID != "" {
		return job.Schedule{}, Invalid("jobid", "a schedule makes a new job id for each run")
	}
	spec, err := s.spec(ctx, r.ScheduleRequest)
	if err != nil {
		return job.Schedule{}, err
	}
	sc := job.Schedule{ID: r.ID, Project: spec.Project, Spider: spec.Spider, Version: spec.Version,
		Settings: spec.Settings, Args: spec.Args, Priority: spec.Priority,
		Cron: strings.TrimSpace(r.Cron), Timezone: strings.TrimSpace(r.Timezone), Overlap: job.OverlapSkip}
	if sc.ID == "" {
		sc.ID = job.NewID()
	}
	for _, d := range []struct {
		name, raw string
		dst       *time.Duration
	}{{"every", r.Every, &sc.Every}, {"jitter", r.Jitter, &sc.Jitter}, {"retry_delay", r.RetryDelay, &sc.RetryDelay}} {
		if d.raw == "" {
			continue
		}
		v, err := time.ParseDuration(strings.TrimSpace(d.raw))
		if err != nil || v < 0 {
			return job.Schedule{}, Invalid(d.name, strconv.Quote(d.raw)+" is not a duration such as 30s, 15m or 2h")
		}
		*d.dst = v
	}
	switch o := job.Overlap(strings.TrimSpace(r.Overlap)); o {
	case "":
	case job.OverlapAllow, job.OverlapSkip, job.OverlapQueue:
		sc.Overlap = o
	default:
		return job.Schedule{}, Invalid("overlap", strconv.Quote(r.Overlap)+" is not allow, skip or queue")
	}
	if r.Retries != "" {
		n, err := strconv.Atoi(strings.TrimSpace(r.Retries))
		if err != nil || n < 0 || n > 100 {
			return job.Schedule{}, Invalid("retries", strconv.Quote(r.Retries)+" is not a whole number from 0 to 100")
		}
		sc.Retries = n
	}
	if _, err := recur.ParseTiming(sc, time.Local); err != nil {
		return job.Schedule{}, &Error{Message: "invalid schedule: " + err.Error()}
	}
	out, err := s.Schedules.Put(sc)
	if err != nil {
		if other := (*recur.OtherProjectError)(nil); errors.As(err, &other) {
			return job.Schedule{}, Invalid("schedule", err.Error())
		}
		return job.Schedule{}, err
	}
	return out, nil
}

// ScheduleInfo is a schedule as listschedules.json shows it, with its
// last run's outcome.
type ScheduleInfo struct {
	job.Schedule
	// LastOutcome is the last run's state while it is pending or running,
	// else its outcome; "" when there is none (or it left the history).
	LastOutcome string
	// Recent are the outcomes (or states) of the last runs, oldest first.
	Recent []string
}

// ListSchedules lists a project's schedules ("" for all), oldest first;
// recent > 0 also reads that many of each one's last runs.
func (s *Service) ListSchedules(ctx context.Context, project string, recent int) ([]ScheduleInfo, error) {
	if s.Schedules == nil {
		return nil, errNoSchedules
	}
	if project != "" {
		if err := checkName("project", project); err != nil {
			return nil, err
		}
	}
	list := s.Schedules.List(project)
	out := make([]ScheduleInfo, len(list))
	for i, sc := range list {
		out[i].Schedule = sc
		if recent > 0 {
			runs, err := s.Store.ScheduleRuns(ctx, sc.ID, recent)
			if err != nil {
				return nil, err
			}
			for k := len(runs) - 1; k >= 0; k-- {
				out[i].Recent = append(out[i].Recent, runState(runs[k]))
			}
		}
		if sc.LastJob == "" {
			continue
		}
		if j, err := s.Store.Find(ctx, sc.Project, sc.LastJob); err == nil {
			out[i].LastOutcome = runState(*j)
		}
	}
	return out, nil
}

func runState(j job.Job) string {
	if j.State == job.Finished {
		return string(j.Outcome)
	}
	return string(j.State)
}

// ChangeSchedule deletes, pauses or resumes a project's schedule.
func (s *Service) ChangeSchedule(project, id, action string) (job.Schedule, error) {
	if s.Schedules == nil {
		return job.Schedule{}, errNoSchedules
	}
	for _, p := range []struct{ name, value string }{{"project", project}, {"schedule", id}} {
		if err := checkName(p.name, p.value); err != nil {
			return job.Schedule{}, err
		}
	}
	var sc job.Schedule
	var err error
	switch action {
	case "delete":
		sc, err = s.Schedules.Get(project, id)
		if err == nil {
			err = s.Schedules.Delete(project, id)
		}
	case "pause":
		sc, err = s.Schedules.Pause(project, id, "")
	case "resume":
		sc, err = s.Schedules.Resume(project, id)
	}
	if errors.Is(err, recur.ErrNotFound) {
		return job.Schedule{}, scheduleNotFound(project, id)
	}
	if err != nil {
		return job.Schedule{}, &Error{Message: err.Error()}
	}
	return sc, nil
}
