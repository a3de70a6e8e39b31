// Package launchtest is the contract every launch.Launcher keeps, as one
// test suite (Run) that the exec launcher runs on the host, the systemd
// launcher in the lab, and Fake (a launcher without processes, for the
// dispatcher's unit tests) everywhere.
package launchtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/launch"
)

// Setup is how Run makes launchers.
type Setup struct {
	// New returns a launcher, as a daemon starting on this machine would
	// make it: a second call is a restarted daemon, which must find the
	// first one's crawls. Closers are closed by Run.
	New func(t *testing.T) launch.Launcher
	// Dir returns a directory the test and its crawls share.
	Dir func(t *testing.T) string
	// Processes: crawls are real processes (a helper they start dies with
	// SIGKILL; /bin/sh runs the script).
	Processes bool
	// ExitAfterRecover: a recovered crawl's exit status is known (the
	// systemd unit keeps it; an exec crawl's parent was the old daemon).
	ExitAfterRecover bool
}

// script is the stand-in crawl for real launchers; Fake reads the same
// variables. LAUNCHTEST says what it does: "exit:N" exits N at once; "int:N"
// runs until SIGINT, then exits N; "ignore-int" ignores SIGINT. It starts a
// helper (its pid in $HELPER) and creates $READY once its trap is set.
const script = `
case "$LAUNCHTEST" in exit:*) exit "${LAUNCHTEST#exit:}";; esac
sleep 1000 &
helper=$!
echo "$helper" > "$HELPER"
case "$LAUNCHTEST" in
int:*) trap 'kill $helper; exit ${LAUNCHTEST#int:}' INT;;
ignore-int) trap '' INT;;
esac
: > "$READY"
while :; do sleep 0.05; done
`

type crawl struct {
	cmd           launch.Command
	ready, helper string
}

func command(t *testing.T, s Setup, job, behaviour string) crawl {
	dir := s.Dir(t)
	c := crawl{ready: filepath.Join(dir, "ready"), helper: filepath.Join(dir, "helper")}
	c.cmd = launch.Command{
		Job: job, Project: "launchtest", Spider: "script",
		Path: "/bin/sh", Args: []string{"-c", script},
		Env:     []string{"PATH=/usr/bin:/bin", "LAUNCHTEST=" + behaviour, "READY=" + c.ready, "HELPER=" + c.helper},
		Dir:     "/",
		Stdout:  filepath.Join(dir, "out"),
		Stderr:  filepath.Join(dir, "err"),
		Sandbox: launch.Sandbox{Writable: []string{dir}},
	}
	return c
}

// jobID is unique per run: a lab or host may hold an earlier run's units.
func jobID(t *testing.T, name string) string {
	return fmt.Sprintf("lt-%s-%d-%d", name, os.Getpid(), time.Now().UnixNano()%1e9)
}

// Run runs the contract against the launchers s makes.
func Run(t *testing.T, s Setup) {
	newL := func(t *testing.T) launch.Launcher {
		l := s.New(t)
		if c, ok := l.(io.Closer); ok {
			t.Cleanup(func() { c.Close() })
		}
		return l
	}
	t.Run("ExitStatus", func(t *testing.T) {
		l := newL(t)
		c := command(t, s, jobID(t, "exit"), "exit:3")
		h, w, err := l.Start(t.Context(), c.cmd)
		if err != nil {
			t.Fatal(err)
		}
		if h.ID == "" || h.Job != c.cmd.Job {
			t.Fatalf("handle %+v: want an ID and job %s", h, c.cmd.Job)
		}
		if p, ok := l.Planned(c.cmd.Job); ok && p.ID != h.ID {
			t.Fatalf("Planned = %s, Start's handle %s", p.ID, h.ID)
		}
		WantCode(t, Wait(t, w), 3)
		eventually(t, "a signal to an ended crawl is ErrGone", func() bool {
			return errors.Is(l.Signal(t.Context(), h, syscall.SIGINT), launch.ErrGone)
		})
		if _, _, err := newL(t).Recover(t.Context(), h); !errors.Is(err, launch.ErrGone) {
			t.Fatalf("Recover of an ended crawl = %v, want ErrGone", err)
		}
	})
	t.Run("Cancel", func(t *testing.T) {
		l := newL(t)
		c := command(t, s, jobID(t, "cancel"), "int:7")
		h, w := started(t, l, c)
		if err := l.Signal(t.Context(), h, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		WantCode(t, Wait(t, w), 7)
	})
	t.Run("Kill", func(t *testing.T) {
		l := newL(t)
		c := command(t, s, jobID(t, "kill"), "ignore-int")
		h, w := started(t, l, c)
		if err := l.Signal(t.Context(), h, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		select {
		case <-w.Done():
			t.Fatalf("a crawl that ignores SIGINT ended: %s", w.Exit())
		default:
		}
		if err := l.Signal(t.Context(), h, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if e := Wait(t, w); !e.Known || e.Signal != syscall.SIGKILL || e.Code != nil {
			t.Fatalf("exit = %s, want killed by SIGKILL", e)
		}
		if s.Processes {
			helper := readPID(t, c.helper)
			eventually(t, "the crawl's helper died with it", func() bool { return gone(helper) })
		}
	})
	t.Run("StartFails", func(t *testing.T) {
		l := newL(t)
		c := command(t, s, jobID(t, "badpath"), "exit:0")
		c.cmd.Path = "/nonexistent/python3"
		if _, _, err := l.Start(t.Context(), c.cmd); err == nil {
			t.Fatal("Start of a missing executable succeeded")
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		c = command(t, s, jobID(t, "cancelled"), "int:0")
		if _, _, err := l.Start(ctx, c.cmd); err == nil {
			t.Fatal("Start with an ended context succeeded")
		}
		for _, h := range running(t, newL(t)) {
			if strings.HasPrefix(h.Job, "lt-badpath-") || strings.HasPrefix(h.Job, "lt-cancelled-") {
				t.Fatalf("a failed start left a crawl: %+v", h)
			}
		}
	})
	t.Run("Restart", func(t *testing.T) {
		first := newL(t)
		c := command(t, s, jobID(t, "restart"), "int:4")
		h, _ := started(t, first, c)
		if slices.ContainsFunc(running(t, first), func(r launch.Handle) bool { return r.ID == h.ID }) {
			t.Fatalf("Running lists a crawl its own launcher started: %s", h.ID)
		}
		second := newL(t)
		i := slices.IndexFunc(running(t, second), func(r launch.Handle) bool { return r.ID == h.ID })
		if i < 0 {
			t.Fatalf("a restarted daemon's Running misses %s", h.ID)
		}
		if got := running(t, second)[i]; got.Job != h.Job {
			t.Fatalf("Running's handle %+v: want job %s", got, h.Job)
		}
		w, _, err := second.Recover(t.Context(), h)
		if err != nil {
			t.Fatal(err)
		}
		if err := second.Signal(t.Context(), h, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		e := Wait(t, w)
		if s.ExitAfterRecover {
			WantCode(t, e, 4)
		} else if e.Known && (e.Code == nil || *e.Code != 4) {
			t.Fatalf("exit = %s, want 4 or unknown", e)
		}
	})
}

func running(t *testing.T, l launch.Launcher) []launch.Handle {
	t.Helper()
	hs, err := l.Running(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// Wait is how the crawl behind w ended; it fails the test if the crawl
// outlives the test's context.
func Wait(t testing.TB, w launch.Watch) launch.Exit {
	t.Helper()
	select {
	case <-w.Done():
		return w.Exit()
	case <-t.Context().Done():
		t.Fatal("the crawl never ended")
		return launch.Exit{}
	}
}

// WantCode fails the test unless the crawl exited with status code.
func WantCode(t testing.TB, e launch.Exit, code int) {
	t.Helper()
	if !e.Known || e.Code == nil || *e.Code != code || e.Signal != 0 {
		t.Fatalf("exit = %s, want exit status %d", e, code)
	}
}

// started starts the stand-in crawl c with l and waits until it runs its
// behaviour (its ready file exists).
func started(t *testing.T, l launch.Launcher, c crawl) (launch.Handle, launch.Watch) {
	t.Helper()
	h, w, err := l.Start(t.Context(), c.cmd)
	if err != nil {
		t.Fatal(err)
	}
	waitFile(t, c.ready)
	return h, w
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	eventually(t, "the crawl created "+path, func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// gone: the process does not exist or is a zombie.
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

// eventually polls cond until it holds; the test's deadline bounds it.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// NoLeaks fails the test if it ends with more goroutines than it began
// with, once every cleanup registered after this call has run (give
// exiting goroutines up to ten seconds).
func NoLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines: %d before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
