package daemon

import (
	"context"
	"net"
	"os"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
)

// Sleeping (issue 19): a socket-activated daemon whose crawls run as
// systemd units exits once it has had nothing to do for idle_timeout.
// Nothing is lost: every job's state is in the store, crawls run in their
// own units, and each event starts the daemon again: a request (systemd
// holds the connection meanwhile), a crawl's end (its unit pokes the wake
// socket, scrapyd-wake.socket) and the next recurring run (a transient
// timer left before exiting).

// idleTimeout is idle_timeout in force: auto is config.DefaultIdle where
// sleeping works, never elsewhere. An explicit value where it cannot work
// is ignored, with why: exiting would leave the daemon down (nothing
// starts it again) or take exec-launched crawls with it.
func (d *daemon) idleTimeout(cfg *config.Config) (time.Duration, string) {
	t := cfg.IdleTimeout
	switch {
	case t == 0:
		return 0, ""
	case !d.activated:
		return 0, "the daemon was not started by scrapyd.socket"
	case d.launcher.systemd == nil:
		return 0, "crawls run as child processes of the daemon"
	case t == config.IdleAuto:
		return config.DefaultIdle, ""
	}
	return t, ""
}

// startIdle registers the parts that may still have work with the
// tracker, which also hears of every connection and state change.
func (d *daemon) startIdle() {
	st := d.store
	// A pending job that could start now is dispatch's to start; one
	// waiting for a slot waits for a crawl's end, which pokes the daemon.
	d.idle.Busy(func() bool {
		p, r, _ := st.Counts()
		return p > 0 && r < d.conf().Slots()
	})
	d.idle.Busy(d.archiver.Busy)
	d.idle.Busy(d.webhooks.Busy)
	if d.shipper != nil {
		// Cluster mode: this node's running crawls' logs are shipped
		// while they run, which a sleeping daemon would not do.
		d.idle.Busy(d.shipper.Busy)
	}
}

// waitIdle closes the channel it returns once the daemon has been idle
// for idle_timeout (read at each check: a reload applies).
func (d *daemon) waitIdle(ctx context.Context, goRun func(func())) <-chan struct{} {
	asleep := make(chan struct{})
	goRun(func() {
		timeout := func() time.Duration { t, _ := d.idleTimeout(d.conf()); return t }
		if d.idle.Wait(ctx, timeout, time.Second) {
			close(asleep)
		}
	})
	return asleep
}

// fallAsleep prepares the exit once idle: it leaves the timer for the
// next recurring run and stops taking pokes (those that come now wait in
// the socket, and start the daemon again once it has exited). False means
// stay up, for another idle_timeout: the timer could not be left, or a
// poke came in between (the wake sockets stay closed then; the launcher
// sees crawl ends while the daemon is up anyway).
func (d *daemon) fallAsleep(ctx context.Context, wake []net.Listener) bool {
	timeout, _ := d.idleTimeout(d.conf())
	if timeout <= 0 {
		return false
	}
	if err := d.sleepTimer(ctx, timeout); err != nil {
		d.log.Error("cannot leave a timer for the next recurring run; staying up", "err", err)
		d.idle.Touch()
		return false
	}
	for _, l := range wake {
		l.Close()
	}
	if d.idle.Left(timeout) > 0 {
		return false
	}
	d.log.Info("nothing to do: exiting until the next request or event (idle_timeout)", "idle_timeout", timeout.String())
	return true
}

// wakePath is the first Unix wake socket's path, "" without one.
func wakePath(wake []net.Listener) string {
	for _, l := range wake {
		if l.Addr().Network() == "unix" {
			return l.Addr().String()
		}
	}
	return ""
}

// wakePath is the wake socket crawls poke, "" without one.
func (d *daemon) wakePath() string {
	if p := d.wakeSock.Load(); p != nil {
		return *p
	}
	return ""
}

// wakeCommand is what a crawl unit runs when it stops after a failure
// (ExecStopPost=; a clean exit pokes from the crawl itself):
// `scrapyd wake SOCKET`, so that a sleeping daemon records the end and
// starts the next job at once. Nil without a wake socket.
func (d *daemon) wakeCommand() []string {
	w := d.wakePath()
	if w == "" {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	return []string{exe, "wake", w}
}

// acceptWakes takes the pokes on a wake socket: each is activity and a
// reason to look at the crawls, and carries nothing to read. It returns
// when l is closed.
func (d *daemon) acceptWakes(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
		d.idle.Touch()
		d.disp.Wake()
	}
}

// sleepTimer leaves the transient timer that wakes the daemon for the
// next recurring run, a little ahead so the run starts on time, or for
// the next retention sweep when logs_max_age is set (files age while the
// daemon sleeps; a start sweeps); it removes a stale timer when there is
// neither.
func (d *daemon) sleepTimer(ctx context.Context, timeout time.Duration) error {
	if d.launcher.systemd == nil {
		return nil
	}
	in := wakeIn(d.sched.Next, d.conf().LogsMaxAge > 0, timeout, time.Now())
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.launcher.systemd.WakeAt(ctx, wakeService, in); err != nil {
		return err
	}
	if in > 0 {
		d.log.Info("a timer wakes the daemon for its next recurring run or retention sweep", "in", in.Round(time.Millisecond).String())
	}
	return nil
}

// ageSweepEvery is how often a sleeping daemon wakes to apply
// logs_max_age: ages are days, and a start costs about 0.1 s.
const ageSweepEvery = time.Hour

// wakeIn is how long the daemon may sleep: until a second (at most half
// the idle timeout) before the next recurring run, and at most
// ageSweepEvery when files age out; 0 means no timer is needed.
func wakeIn(next func() (time.Time, bool), ageSweep bool, timeout time.Duration, now time.Time) time.Duration {
	var in time.Duration
	if at, ok := next(); ok {
		ahead := min(time.Second, timeout/2)
		in = max(at.Sub(now)-ahead, time.Millisecond)
	}
	if ageSweep && (in == 0 || in > ageSweepEvery) {
		in = ageSweepEvery
	}
	return in
}

// wakeService is the unit the wake timer starts: the packaged one.
const wakeService = "scrapyd.service"
