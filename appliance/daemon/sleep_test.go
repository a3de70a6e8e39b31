package daemon

import (
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/systemd"
)

// TestIdleTimeout: idle_timeout in force. auto sleeps only where the
// sockets start the daemon again and crawls are units of their own; an
// explicit value elsewhere is ignored, with the reason the daemon logs.
func TestIdleTimeout(t *testing.T) {
	units := crawlLauncher{systemd: &systemd.Launcher{}}
	for _, c := range []struct {
		name      string
		set       time.Duration
		activated bool
		launcher  crawlLauncher
		want      time.Duration
		why       bool
	}{
		{"auto, packaged units", config.IdleAuto, true, units, config.DefaultIdle, false},
		{"auto, started by hand", config.IdleAuto, false, units, 0, true},
		{"auto, crawls as children", config.IdleAuto, true, crawlLauncher{}, 0, true},
		{"3s, packaged units", 3 * time.Second, true, units, 3 * time.Second, false},
		{"3s, started by hand", 3 * time.Second, false, units, 0, true},
		{"3s, crawls as children", 3 * time.Second, true, crawlLauncher{}, 0, true},
		{"0, packaged units", 0, true, units, 0, false},
	} {
		d := &daemon{activated: c.activated, launcher: c.launcher}
		got, why := d.idleTimeout(&config.Config{IdleTimeout: c.set})
		if got != c.want || (why != "") != c.why {
			t.Errorf("%s: idleTimeout = %v, %q; want %v, a reason: %v", c.name, got, why, c.want, c.why)
		}
	}
}

// TestWakeIn: the timer left before sleeping: ahead of the next run, at
// most an hour with logs_max_age set, none without either.
func TestWakeIn(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	none := func() (time.Time, bool) { return time.Time{}, false }
	at := func(d time.Duration) func() (time.Time, bool) {
		return func() (time.Time, bool) { return now.Add(d), true }
	}
	for _, c := range []struct {
		name     string
		next     func() (time.Time, bool)
		ageSweep bool
		timeout  time.Duration
		want     time.Duration
	}{
		{"nothing to wait for", none, false, 3 * time.Second, 0},
		{"a run in 20s, idle 3s", at(20 * time.Second), false, 3 * time.Second, 19 * time.Second},
		{"a run in 20s, idle 1s", at(20 * time.Second), false, time.Second, 19500 * time.Millisecond},
		{"a run already due", at(-time.Second), false, 3 * time.Second, time.Millisecond},
		{"ages only", none, true, 3 * time.Second, time.Hour},
		{"a run in a day, ages", at(24 * time.Hour), true, 3 * time.Second, time.Hour},
		{"a run in a minute, ages", at(time.Minute), true, 3 * time.Second, 59 * time.Second},
	} {
		if got := wakeIn(c.next, c.ageSweep, c.timeout, now); got != c.want {
			t.Errorf("%s: wakeIn = %v, want %v", c.name, got, c.want)
		}
	}
}
