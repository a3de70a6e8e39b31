// Package process launches crawls as plain child processes: the embedded
// default, for running without root or systemd. Each crawl gets its own
// process group, so a Ctrl-C on the daemon's terminal does not reach it and
// it keeps running when the daemon stops; a restarted daemon finds it again
// by pid and start time, and waits for it with a pidfd.
//
// Ownership: a pid (and the process group named after it) is signalled only
// while the crawl still holds it. A child of this launcher is reaped only
// after its end has been recorded under the crawl's lock, so no signal or
// timer can reach a pid the kernel has handed to someone else; a crawl of an
// earlier daemon is signalled only while its pidfd says it is alive.
package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/scrapyd-debian/scrapyd/appliance/launch"
)

// Marker variables set in every crawl's environment: Running finds the
// crawls an earlier daemon of the same Owner started by them (a crash between
// the start and the record of its handle leaves nothing else to find them by).
const (
	envOwner = "SCRAPYD_LAUNCH_OWNER"
	envJob   = "SCRAPYD_LAUNCH_JOB"
)

// Launcher is the exec launcher. Use New; Close stops its goroutines.
type Launcher struct {
	// Credential, when set, runs crawls as that user (the daemon is root).
	Credential *syscall.Credential
	// KillGrace is how long a crawl over its MaxRuntime gets after SIGINT
	// before SIGKILL. 0 means 30 seconds.
	KillGrace time.Duration
	// Owner tells this daemon's crawls from other daemons' on the same
	// machine (the daemon uses its job database's directory). Running lists
	// only crawls of the same Owner.
	Owner string

	mu     sync.Mutex
	crawls map[string]*crawl // by handle ID: every crawl this launcher waits for
	quit   chan struct{}     // closed by Close
	stop   [2]int            // a pipe; Close closes its write end to wake pollers
	closed bool
	wg     sync.WaitGroup // the pollers of recovered crawls
}

// crawl is one crawl this launcher waits for.
type crawl struct {
	h      launch.Handle
	child  bool       // started here: reaped by cmd.Wait
	pidfd  int        // recovered crawls: -1 for children
	mu     sync.Mutex // held while signalling and while recording the end
	ended  bool
	timers []*time.Timer
}

// New returns an exec launcher.
func New() *Launcher {
	l := &Launcher{crawls: map[string]*crawl{}, quit: make(chan struct{}), stop: [2]int{-1, -1}}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err == nil {
		l.stop = p
	}
	return l
}

var _ launch.Launcher = (*Launcher)(nil)

// Name implements launch.Launcher.
func (l *Launcher) Name() string { return "exec" }

// Planned implements launch.Launcher: a pid is known only once the crawl
// exists.
func (l *Launcher) Planned(job string) (launch.Handle, bool) { return launch.Handle{}, false }

// Close stops the watches of recovered crawls (their Watches never fire)
// and every MaxRuntime timer. Crawls keep running. Closing twice is harmless.
func (l *Launcher) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.quit)
	crawls := make([]*crawl, 0, len(l.crawls))
	for _, c := range l.crawls {
		crawls = append(crawls, c)
	}
	l.mu.Unlock()
	for _, c := range crawls {
		c.mu.Lock()
		for _, t := range c.timers {
			t.Stop()
		}
		c.mu.Unlock()
	}
	if l.stop[1] >= 0 {
		unix.Close(l.stop[1])
	}
	l.wg.Wait()
	if l.stop[0] >= 0 {
		unix.Close(l.stop[0])
	}
	return nil
}

// Start implements launch.Launcher.
func (l *Launcher) Start(ctx context.Context, c launch.Command) (launch.Handle, launch.Watch, error) {
	if err := ctx.Err(); err != nil {
		return launch.Handle{}, nil, fmt.Errorf("start crawl %s: %w", c.Job, err)
	}
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Env, cmd.Dir = c.Env, c.Dir
	if l.Owner != "" {
		cmd.Env = append(cmd.Env[:len(cmd.Env):len(cmd.Env)], envOwner+"="+l.Owner, envJob+"="+c.Job)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: l.Credential}
	for _, o := range []struct {
		path string
		dst  *io.Writer
	}{{c.Stdout, &cmd.Stdout}, {c.Stderr, &cmd.Stderr}} {
		if o.path == "" {
			continue
		}
		f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return launch.Handle{}, nil, fmt.Errorf("start crawl %s: %w", c.Job, err)
		}
		defer f.Close() // the child has its own copy
		*o.dst = f
	}
	if err := cmd.Start(); err != nil {
		return launch.Handle{}, nil, fmt.Errorf("start crawl %s: %w", c.Job, launch.StartError(c.Dir, err))
	}
	pid := cmd.Process.Pid
	cr := &crawl{h: launch.Handle{ID: handleID(pid, startTime(pid)), PID: pid, Job: c.Job}, child: true, pidfd: -1}
	w := &watch{done: make(chan struct{})}
	l.track(cr)
	if c.Limits.MaxRuntime > 0 {
		cr.after(c.Limits.MaxRuntime, func() { l.overtime(cr) })
	}
	go func() {
		// Wait for the end without reaping: until the zombie is reaped its
		// pid, and so its process group id, cannot be reused, and the end is
		// recorded first, so that no timer or cancel signals a stranger.
		var info unix.Siginfo
		for {
			if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != unix.EINTR {
				break
			}
		}
		cr.end()
		l.untrack(cr)
		err := cmd.Wait()
		w.exit = exitOf(cmd.ProcessState, err)
		close(w.done)
	}()
	return cr.h, w, nil
}

// after runs f after d unless the crawl has ended; every timer stops with
// the crawl.
func (c *crawl) after(d time.Duration, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.timers = append(c.timers, time.AfterFunc(d, f))
}

// end records that the crawl's pid is about to be released.
func (c *crawl) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	for _, t := range c.timers {
		t.Stop()
	}
	c.timers = nil
}

// signal sends sig to the crawl's main process, or to its whole process
// group for SIGKILL, while it is still ours.
func (c *crawl) signal(sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || !c.child && exited(c.pidfd) {
		return launch.ErrGone
	}
	return kill(c.h.PID, sig)
}

func (l *Launcher) overtime(c *crawl) {
	if c.signal(syscall.SIGINT) != nil {
		return
	}
	grace := l.KillGrace
	if grace == 0 {
		grace = 30 * time.Second
	}
	c.after(grace, func() { c.signal(syscall.SIGKILL) })
}

// Recover implements launch.Launcher: the crawl is ours if a process with
// that pid exists and started at the recorded time (pids are reused).
func (l *Launcher) Recover(ctx context.Context, h launch.Handle) (launch.Watch, launch.Exit, error) {
	pid, start, err := parseHandle(h.ID)
	if err != nil {
		return nil, launch.Exit{}, err
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, launch.Exit{}, launch.ErrGone
	}
	// Checked after the pidfd is open: the pidfd then refers to this very
	// process, whatever happens to the pid later.
	if startTime(pid) != start {
		unix.Close(fd)
		return nil, launch.Exit{}, launch.ErrGone
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		unix.Close(fd)
		return nil, launch.Exit{}, errors.New("exec launcher closed")
	}
	if old, ok := l.crawls[h.ID]; ok && old.child {
		l.mu.Unlock()
		unix.Close(fd)
		return nil, launch.Exit{}, fmt.Errorf("crawl %s is already watched", h.ID)
	}
	l.wg.Add(1)
	l.mu.Unlock()
	h.PID = pid
	cr := &crawl{h: h, pidfd: fd}
	l.track(cr)
	w := &watch{done: make(chan struct{})}
	go func() {
		defer l.wg.Done()
		// Not our child any more (the old daemon was its parent), so we
		// cannot reap it or learn its exit status: poll the pidfd for its
		// end, and the stop pipe for Close.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(l.stop[0]), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if err == unix.EINTR {
				continue
			}
			if err == nil && fds[0].Revents == 0 && fds[1].Revents != 0 {
				break // Close: the watch never fires
			}
			cr.end()
			l.untrack(cr)
			w.exit = launch.Exit{Known: false}
			close(w.done)
			break
		}
		cr.mu.Lock()
		unix.Close(fd)
		cr.pidfd = -1
		cr.mu.Unlock()
	}()
	return w, launch.Exit{}, nil
}

// Signal implements launch.Launcher. SIGKILL goes to the whole process
// group, so that whatever the crawl started dies with it.
func (l *Launcher) Signal(ctx context.Context, h launch.Handle, sig syscall.Signal) error {
	pid, start, err := parseHandle(h.ID)
	if err != nil {
		return err
	}
	l.mu.Lock()
	c, ok := l.crawls[h.ID]
	l.mu.Unlock()
	if ok {
		return c.signal(sig)
	}
	// A crawl nobody here watches: hold a pidfd while checking its start
	// time and signalling, so the pid cannot change hands in between.
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return launch.ErrGone
	}
	defer unix.Close(fd)
	if startTime(pid) != start {
		return launch.ErrGone
	}
	return kill(pid, sig)
}

// kill signals pid (the whole group for SIGKILL); the caller made sure the
// pid is the crawl's.
func kill(pid int, sig syscall.Signal) error {
	target := pid
	if sig == syscall.SIGKILL {
		target = -pid
	}
	if err := syscall.Kill(target, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return launch.ErrGone
		}
		return fmt.Errorf("signal crawl %d: %w", pid, err)
	}
	return nil
}

// exited tells whether a pidfd's process has ended (or the fd is gone).
func exited(fd int) bool {
	if fd < 0 {
		return true
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err != nil || n > 0
}

// Running implements launch.Launcher: the crawls of this Owner that run on
// this machine and that this launcher did not start, found by the marker in
// their environment. Without an Owner there is no marker: none.
func (l *Launcher) Running(ctx context.Context) ([]launch.Handle, error) {
	var out []launch.Handle
	if l.Owner == "" {
		return out, nil
	}
	l.mu.Lock()
	mine := map[int]bool{}
	for _, c := range l.crawls {
		if c.child {
			mine[c.h.PID] = true
		}
	}
	l.mu.Unlock()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list crawls: %w", err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// A crawl leads its own process group; its children inherit the
		// marker but not the leadership.
		if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
			continue
		}
		job, ok := marked(pid, l.Owner)
		if !ok {
			continue
		}
		start := startTime(pid)
		if start == 0 {
			continue
		}
		if !mine[pid] {
			out = append(out, launch.Handle{ID: handleID(pid, start), PID: pid, Job: job})
		}
	}
	return out, nil
}

// marked returns the job id in pid's environment if it carries owner's marker.
func marked(pid int, owner string) (string, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return "", false
	}
	var job string
	var mine bool
	for _, kv := range strings.Split(string(data), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case envOwner:
			mine = v == owner
		case envJob:
			job = v
		}
	}
	return job, mine
}

func (l *Launcher) track(c *crawl) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.crawls[c.h.ID] = c
}

func (l *Launcher) untrack(c *crawl) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.crawls[c.h.ID] == c {
		delete(l.crawls, c.h.ID)
	}
}

type watch struct {
	done chan struct{}
	exit launch.Exit
}

func (w *watch) Done() <-chan struct{} { return w.done }
func (w *watch) Exit() launch.Exit     { return w.exit }

func exitOf(ps *os.ProcessState, err error) launch.Exit {
	if ps == nil {
		return launch.Exit{Known: false}
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return launch.Exit{Signal: ws.Signal(), Known: true}
	}
	code := ps.ExitCode()
	return launch.Exit{Code: &code, Known: true}
}

func handleID(pid int, start uint64) string { return fmt.Sprintf("pid:%d:%d", pid, start) }

func parseHandle(id string) (pid int, start uint64, err error) {
	parts := strings.Split(id, ":")
	if len(parts) != 3 || parts[0] != "pid" {
		return 0, 0, fmt.Errorf("not an exec launcher handle: %q", id)
	}
	pid, err = strconv.Atoi(parts[1])
	if err == nil {
		start, err = strconv.ParseUint(parts[2], 10, 64)
	}
	if err != nil || pid <= 0 {
		return 0, 0, fmt.Errorf("not an exec launcher handle: %q", id)
	}
	return pid, start, nil
}

// startTime is field 22 of /proc/<pid>/stat (clock ticks since boot), 0 if
// the process does not exist.
func startTime(pid int) uint64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may contain spaces; fields resume after ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return 0
	}
	if fields[0] == "Z" {
		return 0 // a zombie has ended; only its reaping is pending
	}
	n, _ := strconv.ParseUint(fields[19], 10, 64)
	return n
}
