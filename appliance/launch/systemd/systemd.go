// Package systemd is the launch.Launcher that runs every crawl in its own
// transient system service, started over D-Bus as `systemd-run` does.
//
// Naming: a crawl runs in "scrapyd-crawl-<job>.service", where <job> is the
// job id escaped as `systemd-escape` does it ("-" and bytes outside
// [A-Za-z0-9:_.] become \xNN, a leading "." too); a job id too long for a unit
// name gets "scrapyd-crawl--<sha256 of the id>.service" (see UnitName). The
// unit name is the stored Handle.ID; JobID maps it back.
//
// Life of a unit: it is placed in scrapyd-crawls.slice (the total limits for
// all crawls), runs as the crawl user (never root), and is not a child of
// the daemon's own unit, so stopping or restarting scrapyd.service leaves
// crawls running. The unit outlives its main process (RemainAfterExit, and
// failed units are kept) until this package has read its exit status; it then
// releases it (stop or reset-failed), after which systemd forgets it. So a
// crawl that ends while the daemon is down still reports how it ended to
// Recover. A unit that is already gone reports launch.Exit{Known: false}.
//
// A PropertiesChanged signal only prompts a re-read of the unit's
// properties; a periodic re-read of every watched unit covers signals lost to
// a full queue or a bus reconnect.
package systemd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/runas"
)

// DefaultSlice holds every crawl unit; systemd/scrapyd-crawls.slice sets its
// limits.
const DefaultSlice = "scrapyd-crawls.slice"

// DefaultResync is how often watched units are re-read without a signal.
const DefaultResync = 30 * time.Second

// errNotCrawlUnit refuses handles that do not name a crawl unit: the daemon
// is root, and a damaged job record must not let it signal sshd.service.
var errNotCrawlUnit = errors.New("systemd: not a crawl unit")

// Options configure a Launcher.
type Options struct {
	User        runas.User    // crawls run as this user (runas.Lookup refuses root)
	Slice       string        // default DefaultSlice
	StopTimeout time.Duration // TimeoutStopSec of crawl units; 0 keeps systemd's default
	Resync      time.Duration // default DefaultResync
	Logger      *slog.Logger  // default slog.Default()
	// StopPost, when it returns a command, is each crawl unit's
	// ExecStopPost= (its failure ignored): the wake poke that starts a
	// daemon asleep when the crawl ends (issue 19). Asked at each start.
	StopPost func() []string
}

// Launcher starts crawls as transient units. It owns one system bus
// connection (re-dialled when lost) and one goroutine that watches units;
// Close stops both.
type Launcher struct {
	o   Options
	log *slog.Logger

	ctx    context.Context // lives until Close: bus connections are bound to it
	cancel context.CancelFunc
	quit   chan struct{} // closed by Close to stop the watch loop
	closed sync.Once
	loop   chan struct{} // closed when the watch loop has returned

	connMu sync.Mutex
	conn   *sddbus.Conn

	updates chan *sddbus.PropertiesUpdate
	resync  chan error // a dropped update or a reconnect: re-read every watch

	mu      sync.Mutex
	watches map[string]*watch // by unit name
	started map[string]bool   // units Start started, until released: Running leaves them out
}

var _ launch.Launcher = (*Launcher)(nil)

// New connects to the system bus and starts watching. It fails when the
// crawl user is root or the bus cannot be reached (see Usable).
func New(o Options) (*Launcher, error) {
	if o.User.UID == 0 || o.User.GID == 0 || o.User.Name == "" {
		return nil, fmt.Errorf("%w (user %q)", runas.ErrRoot, o.User.Name)
	}
	if o.Slice == "" {
		o.Slice = DefaultSlice
	}
	if o.Resync <= 0 {
		o.Resync = DefaultResync
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Launcher{
		o:       o,
		log:     o.Logger,
		ctx:     ctx,
		cancel:  cancel,
		quit:    make(chan struct{}),
		loop:    make(chan struct{}),
		updates: make(chan *sddbus.PropertiesUpdate, 256),
		resync:  make(chan error, 1),
		watches: map[string]*watch{},
		started: map[string]bool{},
	}
	if _, err := l.bus(); err != nil {
		cancel()
		return nil, err
	}
	go l.run()
	return l, nil
}

// Close stops watching and closes the bus connection. Crawls keep running;
// open Watches never fire. Closing twice is harmless.
func (l *Launcher) Close() error {
	// The loop finishes the check it is in (and its release) first.
	l.closed.Do(func() { close(l.quit) })
	<-l.loop
	l.cancel()
	l.connMu.Lock()
	defer l.connMu.Unlock()
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
	return nil
}

// Name implements launch.Launcher.
func (l *Launcher) Name() string { return "systemd" }

// Start implements launch.Launcher: it returns once systemd reports the start
// job done, i.e. the crawl's executable has been exec'd (Type=exec).
func (l *Launcher) Start(ctx context.Context, cmd launch.Command) (launch.Handle, launch.Watch, error) {
	props, err := properties(cmd, l.o)
	if err != nil {
		return launch.Handle{}, nil, err
	}
	unit := UnitName(cmd.Job)
	l.mu.Lock()
	l.started[unit] = true
	l.mu.Unlock()
	if err := l.startUnit(ctx, unit, props); err != nil {
		l.mu.Lock()
		delete(l.started, unit)
		l.mu.Unlock()
		return launch.Handle{}, nil, err
	}
	w, st, err := l.watch(ctx, unit, true)
	if err != nil {
		// The unit runs: hand it out without a PID rather than orphan it;
		// its watch stays and the next resync reads its state.
		return launch.Handle{ID: unit, Job: cmd.Job}, w, nil
	}
	return launch.Handle{ID: unit, PID: st.mainPID, Job: cmd.Job}, w, nil
}

// WakeAt leaves a transient timer that starts service (a .service unit)
// after d, replacing one left before; d <= 0 only removes it. The timer
// is named after the service (systemd 252 sets no Unit= on a transient
// timer: it starts the service of its own name), fires within a
// millisecond (the default accuracy is a minute) and goes once elapsed.
// A daemon going to sleep leaves it for its next recurring run.
func (l *Launcher) WakeAt(ctx context.Context, service string, d time.Duration) error {
	timer, ok := strings.CutSuffix(service, ".service")
	if !ok {
		return fmt.Errorf("systemd: wake timer: %q is not a service unit", service)
	}
	timer += ".timer"
	conn, err := l.bus()
	if err != nil {
		return err
	}
	// A timer left by an earlier sleep, not elapsed (a request woke the
	// daemon first): replaced, or removed when there is no run to wait for.
	if _, err := conn.StopUnitContext(ctx, timer, "replace", nil); err != nil && !isDBusError(err, "org.freedesktop.systemd1.NoSuchUnit") {
		return fmt.Errorf("systemd: stop %s: %w", timer, err)
	}
	if d <= 0 {
		return nil
	}
	props := wakeTimer(d)
	for attempt := 0; ; attempt++ {
		_, err = conn.StartTransientUnitContext(ctx, timer, "replace", props, nil)
		// The stopped timer may not be unloaded yet.
		if isDBusError(err, "org.freedesktop.systemd1.UnitExists") && attempt < 20 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			return fmt.Errorf("systemd: start %s: %w", timer, err)
		}
		return nil
	}
}

// wakeTimer is the properties of WakeAt's timer, as `systemd-run
// --on-active` sends them.
func wakeTimer(d time.Duration) []sddbus.Property {
	return []sddbus.Property{
		sddbus.PropDescription("Wake Scrapyd for its next recurring run"),
		prop("TimersMonotonic", []monotonic{{"OnActiveSec", uint64(d.Microseconds())}}),
		prop("AccuracyUSec", uint64(1000)),
		prop("RemainAfterElapse", false),
	}
}

// monotonic is the D-Bus shape (st) of one TimersMonotonic entry.
type monotonic struct {
	Base string
	USec uint64
}

// Planned implements launch.Launcher: the unit name is derived from the job
// id.
func (l *Launcher) Planned(job string) (launch.Handle, bool) {
	return launch.Handle{ID: UnitName(job), Job: job}, true
}

// startUnit starts the transient unit and waits for its start job. A unit of
// the same name left over from an ended job (Scrapyd lets clients choose job
// ids) is released and the start tried once more, as runc's startUnit does.
func (l *Launcher) startUnit(ctx context.Context, unit string, props []sddbus.Property) error {
	for attempt := 0; ; attempt++ {
		conn, err := l.bus()
		if err != nil {
			return err
		}
		done := make(chan string, 1) // go-systemd blocks its dispatcher on an unbuffered send
		_, err = conn.StartTransientUnitContext(ctx, unit, "fail", props, done)
		if isDBusError(err, "org.freedesktop.systemd1.UnitExists") && attempt == 0 {
			st, serr := l.state(ctx, unit)
			if serr != nil {
				return fmt.Errorf("systemd: start %s: %w", unit, serr)
			}
			if !st.ended {
				return fmt.Errorf("systemd: start %s: a crawl with this job id is running", unit)
			}
			l.release(ctx, unit, st, true)
			continue
		}
		if err != nil {
			return fmt.Errorf("systemd: start %s: %w", unit, err)
		}
		select {
		case result := <-done:
			if result == "done" {
				return nil
			}
			return l.startFailed(ctx, unit, result)
		case <-ctx.Done():
			// Nobody will store a handle for it: take it down again.
			stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			l.kill(stop, unit)
			return fmt.Errorf("systemd: start %s: %w", unit, ctx.Err())
		}
	}
}

// startFailed explains a failed start job (typically exit status 203/EXEC:
// a wrong python path) and releases the failed unit. A crawl that ran and
// exited before systemd saw its exec succeed also fails its start job
// (Type=exec: the process's exit is handled first, seen in CI under load
// with a crawl exiting at once): its exit status is then its own, not one
// of systemd's setup codes, and it counts as started, its unit left for
// the watch to read the exit from.
func (l *Launcher) startFailed(ctx context.Context, unit, result string) error {
	st, err := l.state(ctx, unit)
	if err != nil {
		return fmt.Errorf("systemd: start %s: job %s", unit, result)
	}
	if ranAndExited(st) {
		return nil
	}
	l.release(ctx, unit, st, false)
	return fmt.Errorf("systemd: start %s: job %s (unit result %s, %s)", unit, result, st.result, st.exit)
}

// Recover implements launch.Launcher.
func (l *Launcher) Recover(ctx context.Context, h launch.Handle) (launch.Watch, launch.Exit, error) {
	if !isCrawlUnit(h.ID) {
		return nil, launch.Exit{}, fmt.Errorf("%w: %q", errNotCrawlUnit, h.ID)
	}
	w, st, err := l.watch(ctx, h.ID, false)
	if err != nil {
		return nil, launch.Exit{}, err
	}
	if st.ended {
		return nil, st.exit, launch.ErrGone
	}
	return w, launch.Exit{}, nil
}

// Signal implements launch.Launcher. SIGKILL goes to every process of the
// unit (a second cancel must not leave a headless browser behind); any
// other signal only to the main process, as Scrapyd's cancel does.
func (l *Launcher) Signal(ctx context.Context, h launch.Handle, sig syscall.Signal) error {
	if !isCrawlUnit(h.ID) {
		return fmt.Errorf("%w: %q", errNotCrawlUnit, h.ID)
	}
	conn, err := l.bus()
	if err != nil {
		return err
	}
	who := sddbus.Main
	if sig == syscall.SIGKILL {
		who = sddbus.All
	}
	err = conn.KillUnitWithTarget(ctx, h.ID, who, int32(sig))
	if err == nil {
		return nil
	}
	// systemd refuses to signal a unit without processes; tell that apart
	// from a real failure by looking at the unit.
	if st, serr := l.state(ctx, h.ID); serr == nil && st.ended {
		return launch.ErrGone
	}
	return fmt.Errorf("systemd: signal %s to %s: %w", sig, h.ID, err)
}

// Running implements launch.Launcher: every loaded crawl unit this launcher
// did not start, ended ones not yet released included (Recover reports how
// they ended). A hashed unit name does not tell its job (Handle.Job is "").
func (l *Launcher) Running(ctx context.Context) ([]launch.Handle, error) {
	conn, err := l.bus()
	if err != nil {
		return nil, err
	}
	units, err := conn.ListUnitsByPatternsContext(ctx, nil, []string{unitPrefix + "*" + unitSuffix})
	if err != nil {
		return nil, fmt.Errorf("systemd: list crawl units: %w", err)
	}
	hs := make([]launch.Handle, 0, len(units))
	for _, u := range units {
		l.mu.Lock()
		mine := l.started[u.Name]
		l.mu.Unlock()
		if mine {
			continue
		}
		h := launch.Handle{ID: u.Name}
		h.Job, _ = JobID(u.Name)
		// MainPID is informative only; a unit that just ended has none.
		if p, err := conn.GetServicePropertyContext(ctx, u.Name, "MainPID"); err == nil {
			if pid, ok := p.Value.Value().(uint32); ok {
				h.PID = int(pid)
			}
		}
		hs = append(hs, h)
	}
	return hs, nil
}

// watch registers interest in unit, then reads its state once, so that an
// end that came before the registration is not missed. When that read fails,
// a new watch is kept only if keep is set: a watch nobody holds would read
// and release the unit's exit status, and lose it.
func (l *Launcher) watch(ctx context.Context, unit string, keep bool) (*watch, unitState, error) {
	l.mu.Lock()
	w, old := l.watches[unit]
	if !old {
		w = newWatch()
		l.watches[unit] = w
	}
	l.mu.Unlock()
	st, err := l.state(ctx, unit)
	if err != nil {
		if !old && !keep {
			l.mu.Lock()
			delete(l.watches, unit)
			l.mu.Unlock()
		}
		return w, st, err
	}
	if st.ended {
		l.end(ctx, unit, st)
	} else if ended, exit := w.result(); ended {
		// The watch loop read a newer state meanwhile and reported the end:
		// this read is stale, and the caller must not be told otherwise.
		st.ended, st.exit = true, exit
	}
	return w, st, nil
}

// check re-reads a watched unit after a signal or at a resync.
func (l *Launcher) check(unit string) {
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	st, err := l.state(ctx, unit)
	if err != nil {
		// The next resync tries again.
		l.log.Warn("systemd: reading crawl unit", "unit", unit, "error", err)
		return
	}
	if st.ended {
		l.end(ctx, unit, st)
	}
}

// end reports the exit to the unit's watch, then releases the unit.
func (l *Launcher) end(ctx context.Context, unit string, st unitState) {
	l.mu.Lock()
	w := l.watches[unit]
	delete(l.watches, unit)
	l.mu.Unlock()
	if w != nil {
		w.finish(st.exit)
	}
	l.release(ctx, unit, st, false)
	l.mu.Lock()
	delete(l.started, unit)
	l.mu.Unlock()
}

// release lets systemd forget an ended unit; wait waits for the stop job,
// so that the name is free when release returns. Failures are only logged:
// the exit is already known, and the unit name is released again before
// reuse.
func (l *Launcher) release(ctx context.Context, unit string, st unitState, wait bool) {
	conn, err := l.bus()
	if err == nil {
		switch st.active {
		case "failed":
			err = conn.ResetFailedUnitContext(ctx, unit)
		case "active", "reloading":
			// RemainAfterExit: the process is gone, the unit is "active
			// (exited)"; stopping it also kills anything the crawl left
			// behind. Waiting could take TimeoutStopSec if that ignores
			// SIGINT, so only a reuse of the name waits.
			var done chan string
			if wait {
				done = make(chan string, 1)
			}
			if _, err = conn.StopUnitContext(ctx, unit, "replace", done); err == nil && wait {
				select {
				case <-done:
				case <-ctx.Done():
					err = ctx.Err()
				}
			}
		}
	}
	if err != nil && !isDBusError(err, "org.freedesktop.systemd1.NoSuchUnit") {
		l.log.Warn("systemd: releasing ended crawl unit", "unit", unit, "error", err)
	}
}

// kill takes a unit down for good, however far its start got.
func (l *Launcher) kill(ctx context.Context, unit string) {
	conn, err := l.bus()
	if err == nil {
		_, err = conn.StopUnitContext(ctx, unit, "replace", nil)
	}
	if err != nil {
		l.log.Warn("systemd: stopping a crawl unit nobody will track", "unit", unit, "error", err)
	}
}

// run is the watch loop: it re-reads units that signals name, and all
// watched units on a dropped signal, a reconnect, or every Resync.
func (l *Launcher) run() {
	defer close(l.loop)
	tick := time.NewTicker(l.o.Resync)
	defer tick.Stop()
	for {
		select {
		case <-l.quit:
			return
		case u := <-l.updates:
			if l.watched(u.UnitName) {
				l.check(u.UnitName)
			}
		case <-l.resync:
			l.checkAll()
		case <-tick.C:
			// bus() re-dials a lost connection, which also queues a resync.
			if _, err := l.bus(); err != nil {
				l.log.Warn("systemd: system bus", "error", err)
				continue
			}
			l.checkAll()
		}
	}
}

func (l *Launcher) watched(unit string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.watches[unit]
	return ok
}

func (l *Launcher) checkAll() {
	l.mu.Lock()
	units := make([]string, 0, len(l.watches))
	for u := range l.watches {
		units = append(units, u)
	}
	l.mu.Unlock()
	for _, u := range units {
		l.check(u)
	}
}

// bus returns the live connection, dialling a new one when the old one was
// lost (dbus-daemon restarted). Signals sent while disconnected are lost, so
// a new connection queues a resync.
func (l *Launcher) bus() (*sddbus.Conn, error) {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	if l.conn != nil && l.conn.Connected() {
		return l.conn, nil
	}
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
	if err := l.ctx.Err(); err != nil {
		return nil, fmt.Errorf("systemd: launcher closed: %w", err)
	}
	// The connection is bound to l.ctx: go-dbus closes it when its dial
	// context ends, so a request's context must not be used here.
	c, err := sddbus.NewSystemConnectionContext(l.ctx)
	if err != nil {
		return nil, fmt.Errorf("systemd: connect to the system bus: %w", err)
	}
	c.SetPropertiesSubscriber(l.updates, l.resync)
	if err := c.Subscribe(); err != nil {
		c.Close()
		return nil, fmt.Errorf("systemd: subscribe to unit changes: %w", err)
	}
	l.conn = c
	select {
	case l.resync <- nil:
	default: // one is already queued
	}
	return c, nil
}

// unitState is what the launcher needs to know of a unit.
type unitState struct {
	active  string // ActiveState
	result  string // the service's Result, e.g. "exit-code", "timeout"
	mainPID int
	ended   bool // the main process is gone (or the unit is)
	exit    launch.Exit
}

// state reads the unit's properties. A unit systemd does not know (any
// more) is ended with an unknown exit.
func (l *Launcher) state(ctx context.Context, unit string) (unitState, error) {
	conn, err := l.bus()
	if err != nil {
		return unitState{}, err
	}
	u, err := conn.GetUnitPropertiesContext(ctx, unit)
	if isDBusError(err, "org.freedesktop.systemd1.NoSuchUnit") {
		return unitState{ended: true}, nil
	}
	if err != nil {
		return unitState{}, fmt.Errorf("systemd: read %s: %w", unit, err)
	}
	if str(u["LoadState"]) != "loaded" {
		return unitState{ended: true}, nil
	}
	s, err := conn.GetUnitTypePropertiesContext(ctx, unit, "Service")
	if err != nil {
		return unitState{}, fmt.Errorf("systemd: read %s: %w", unit, err)
	}
	return decode(u, s), nil
}

// decode interprets the Unit and Service properties of a loaded unit.
func decode(u, s map[string]any) unitState {
	st := unitState{active: str(u["ActiveState"]), result: str(s["Result"])}
	if pid, ok := s["MainPID"].(uint32); ok {
		st.mainPID = int(pid)
	}
	switch st.active {
	case "failed", "inactive":
		st.ended = true
	case "active":
		st.ended = str(u["SubState"]) == "exited"
	}
	if st.ended {
		code, _ := s["ExecMainCode"].(int32)
		status, _ := s["ExecMainStatus"].(int32)
		st.exit = exitOf(code, status)
	}
	return st
}

// ranAndExited: the unit's main process ran and exited by itself. Exit
// statuses 200-243 are systemd's own for a process it could not set up
// (systemd.exec(5), "Process Exit Codes"), so they are not taken as the
// crawl's.
func ranAndExited(st unitState) bool {
	return st.ended && st.result == "exit-code" && st.exit.Code != nil && (*st.exit.Code < 200 || *st.exit.Code > 243)
}

// si_code values of ExecMainCode (waitid(2)).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// exitOf turns ExecMainCode/ExecMainStatus into an Exit; code 0 means the
// main process never ran or systemd no longer knows.
func exitOf(code, status int32) launch.Exit {
	switch code {
	case cldExited:
		c := int(status)
		return launch.Exit{Code: &c, Known: true}
	case cldKilled, cldDumped:
		return launch.Exit{Signal: syscall.Signal(status), Known: true}
	}
	return launch.Exit{}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func isCrawlUnit(unit string) bool {
	return strings.HasPrefix(unit, unitPrefix) && strings.HasSuffix(unit, unitSuffix) &&
		len(unit) > len(unitPrefix)+len(unitSuffix) && !strings.ContainsAny(unit, "/ \x00")
}

func isDBusError(err error, name string) bool {
	var e dbus.Error
	if errors.As(err, &e) {
		return e.Name == name
	}
	var pe *dbus.Error
	return errors.As(err, &pe) && pe.Name == name
}

// watch is the launch.Watch of one unit.
type watch struct {
	done chan struct{}
	once sync.Once
	exit launch.Exit
}

func newWatch() *watch { return &watch{done: make(chan struct{})} }

func (w *watch) finish(e launch.Exit) {
	w.once.Do(func() {
		w.exit = e
		close(w.done)
	})
}

// result is the exit if the watch has fired.
func (w *watch) result() (bool, launch.Exit) {
	select {
	case <-w.done:
		return true, w.exit
	default:
		return false, launch.Exit{}
	}
}

// Done implements launch.Watch.
func (w *watch) Done() <-chan struct{} { return w.done }

// Exit implements launch.Watch.
func (w *watch) Exit() launch.Exit {
	<-w.done
	return w.exit
}
