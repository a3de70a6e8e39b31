// Package process launches crawls as plain child processes: the embedded
// default, for running without root or systemd. Each crawl gets its own
// process group, so a Ctrl-C on the daemon's terminal does not reach it and
// it keeps running when the daemon stops; a restarted daemon finds it again
// by pid and start time, and waits for it with a pidfd.
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

// Launcher is the exec launcher.
type Launcher struct {
	// Credential, when set, runs crawls as that user (the daemon is root).
	Credential *syscall.Credential
	// KillGrace is how long a crawl over its MaxRuntime gets after SIGINT
	// before SIGKILL. 0 means 30 seconds.
	KillGrace time.Duration

	mu      sync.Mutex
	running map[string]launch.Handle
}

// New returns an exec launcher.
func New() *Launcher { return &Launcher{running: map[string]launch.Handle{}} }

// Name implements launch.Launcher.
func (l *Launcher) Name() string { return "exec" }

// Start implements launch.Launcher.
func (l *Launcher) Start(ctx context.Context, c launch.Command) (launch.Handle, launch.Watch, error) {
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Env, cmd.Dir = c.Env, c.Dir
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
	h := launch.Handle{ID: handleID(pid, startTime(pid)), PID: pid}
	w := &watch{done: make(chan struct{})}
	l.track(h)
	var timer *time.Timer
	if c.Limits.MaxRuntime > 0 {
		timer = time.AfterFunc(c.Limits.MaxRuntime, func() { l.overtime(pid) })
	}
	go func() {
		err := cmd.Wait()
		if timer != nil {
			timer.Stop()
		}
		w.exit = exitOf(cmd.ProcessState, err)
		l.untrack(h)
		close(w.done)
	}()
	return h, w, nil
}

func (l *Launcher) overtime(pid int) {
	syscall.Kill(pid, syscall.SIGINT)
	grace := l.KillGrace
	if grace == 0 {
		grace = 30 * time.Second
	}
	time.AfterFunc(grace, func() { syscall.Kill(-pid, syscall.SIGKILL) })
}

// Recover implements launch.Launcher: the crawl is ours if a process with
// that pid exists and started at the recorded time (pids are reused).
func (l *Launcher) Recover(ctx context.Context, h launch.Handle) (launch.Watch, launch.Exit, error) {
	pid, start, err := parseHandle(h.ID)
	if err != nil {
		return nil, launch.Exit{}, err
	}
	if startTime(pid) != start {
		return nil, launch.Exit{}, launch.ErrGone
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, launch.Exit{}, launch.ErrGone
	}
	h.PID = pid
	l.track(h)
	w := &watch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer unix.Close(fd)
		defer l.untrack(h)
		// Not our child any more (the old daemon was its parent), so we
		// cannot reap it or learn its exit status: poll the pidfd for its end.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err != unix.EINTR {
				break
			}
		}
		w.exit = launch.Exit{Known: false}
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
	if startTime(pid) != start {
		return launch.ErrGone
	}
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

// Running implements launch.Launcher.
func (l *Launcher) Running(ctx context.Context) ([]launch.Handle, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]launch.Handle, 0, len(l.running))
	for _, h := range l.running {
		out = append(out, h)
	}
	return out, nil
}

func (l *Launcher) track(h launch.Handle) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running == nil {
		l.running = map[string]launch.Handle{}
	}
	l.running[h.ID] = h
}

func (l *Launcher) untrack(h launch.Handle) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.running, h.ID)
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
