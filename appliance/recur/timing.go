package recur

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// parser reads the five standard fields and the @descriptors (@daily,
// @hourly, @every 1h30m...): robfig/cron's standard parser.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Timing is when a schedule is due.
type Timing struct {
	schedule cron.Schedule // nil for a fixed period
	every    time.Duration
}

// MinEvery is the shortest period: a crawl takes at least a second to
// start, so a shorter period only fills the queue.
const MinEvery = time.Second

// ParseTiming checks a schedule's cron expression and timezone, or its
// period; the error says what is wrong in the user's terms. zone is the
// daemon's timezone, used when sc.Timezone is "".
func ParseTiming(sc job.Schedule, zone *time.Location) (Timing, error) {
	switch {
	case sc.Cron != "" && sc.Every != 0:
		return Timing{}, fmt.Errorf("give either cron or every, not both")
	case sc.Every != 0:
		if sc.Timezone != "" {
			return Timing{}, fmt.Errorf("timezone applies to cron only, not to every")
		}
		if sc.Every < MinEvery {
			return Timing{}, fmt.Errorf("every %s is shorter than %s", sc.Every, MinEvery)
		}
		return Timing{every: sc.Every}, nil
	case sc.Cron == "":
		return Timing{}, fmt.Errorf("give cron (five fields, or @daily and the like) or every (a duration such as 30m)")
	}
	expr := strings.TrimSpace(sc.Cron)
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return Timing{}, fmt.Errorf("cron %q: give the timezone as the timezone parameter", sc.Cron)
	}
	if !strings.HasPrefix(expr, "@") {
		if n := len(strings.Fields(expr)); n != 5 {
			return Timing{}, fmt.Errorf("cron %q has %d fields, expected 5 (minute hour day-of-month month day-of-week) or a descriptor such as @daily", sc.Cron, n)
		}
	}
	loc := zone
	if sc.Timezone != "" {
		var err error
		if loc, err = time.LoadLocation(sc.Timezone); err != nil || sc.Timezone == "Local" {
			return Timing{}, fmt.Errorf("unknown timezone %q (an IANA name such as Europe/Paris or UTC)", sc.Timezone)
		}
	}
	s, err := parser.Parse(expr)
	if err != nil {
		return Timing{}, fmt.Errorf("cron %q: %v", sc.Cron, err)
	}
	if spec, ok := s.(*cron.SpecSchedule); ok {
		spec.Location = loc
	}
	return Timing{schedule: s}, nil
}

// After is the first due time after t; prev is the due time just passed
// (zero: none), whose phase a fixed period keeps.
func (tm Timing) After(t, prev time.Time) time.Time {
	if tm.schedule != nil {
		return tm.schedule.Next(t)
	}
	if prev.IsZero() || prev.After(t) {
		return t.Add(tm.every)
	}
	k := t.Sub(prev)/tm.every + 1
	return prev.Add(k * tm.every)
}

// jitter is a random delay up to max.
func jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return rand.N(max + 1)
}

// backoff is the wait before retry number attempt (1, 2...): the
// schedule's retry delay, doubled at each retry, at most a day.
func backoff(sc job.Schedule, attempt int) time.Duration {
	d := sc.RetryDelay
	if d <= 0 {
		d = DefaultRetryDelay
	}
	for i := 1; i < attempt && d < 24*time.Hour; i++ {
		d *= 2
	}
	return min(d, 24*time.Hour)
}

// DefaultRetryDelay is the wait before a first retry when the schedule
// names none.
const DefaultRetryDelay = 10 * time.Second
