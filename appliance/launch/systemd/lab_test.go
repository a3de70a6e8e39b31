package systemd

// Lab tests run the launcher against a real systemd. On the host, TestLab
// boots the lab (packaging/systemd-lab.sh, as LAB_NAME=launch so that other
// packages' labs do not collide), copies this test binary in and runs
// TestLab there again, as root with SCRAPYD_LAB=inside, where it runs the
// lab* tests as its subtests. Without root or a
// lab they skip with the reason, except when CI=true: then a skip is a
// failure.
//
// The benchmark runs the same way, by hand:
//
//	go test -c -o /tmp/launch.test ./appliance/launch/systemd
//	LAB_NAME=launch packaging/systemd-lab.sh start
//	LAB_NAME=launch packaging/systemd-lab.sh cp /tmp/launch.test /root/
//	LAB_NAME=launch packaging/systemd-lab.sh exec -e SCRAPYD_LAB=inside -- \
//	    /root/launch.test -test.run '^$' -test.bench BenchmarkLabStart

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch/dispatchtest"
	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/launchtest"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/runas"
)

const (
	labEnv  = "SCRAPYD_LAB" // "inside" in the lab
	labName = "launch"
)

// skipOrFail skips, or fails under CI=true, where the lab must run.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, so the lab must run: "+format, args...)
	}
	t.Skipf(format, args...)
}

// TestLab runs the lab tests: inside the lab directly, on the host by
// taking this binary into the lab.
func TestLab(t *testing.T) {
	if os.Getenv(labEnv) == "inside" {
		t.Run("StartCancel", labStartCancel)
		t.Run("Kill", labKill)
		t.Run("StartFails", labStartFails)
		t.Run("Recover", labRecover)
		t.Run("OutlivesDaemon", labOutlivesDaemon)
		t.Run("Confinement", labConfinement)
		t.Run("Contract", labContract)
		t.Run("CrashPoints", labCrashPoints)
		return
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "the systemd lab needs root")
	}
	script, err := filepath.Abs("../../../packaging/systemd-lab.sh")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		skipOrFail(t, "no lab script: %v", err)
	}
	lab := func(args ...string) *exec.Cmd {
		c := exec.Command("bash", append([]string{script}, args...)...)
		c.Env = append(os.Environ(), "LAB_NAME="+labName)
		return c
	}
	// Always a fresh boot (from the clean image): units a killed run left
	// in a running lab would collide with this run's job ids.
	if lab("status").Run() == nil {
		lab("stop").Run()
	}
	if out, err := lab("start").CombinedOutput(); err != nil {
		skipOrFail(t, "cannot start the lab: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := lab("stop").CombinedOutput(); err != nil {
			t.Errorf("stopping the lab: %v\n%s", err, out)
		}
	})
	if out, err := lab("cp", os.Args[0], "/root/launch.test").CombinedOutput(); err != nil {
		t.Fatalf("copying the test binary in: %v\n%s", err, out)
	}
	args := []string{"exec", "-e", labEnv + "=inside", "--", "/root/launch.test", "-test.run", "^TestLab$", "-test.count=1", "-test.timeout=4m"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	run := lab(args...)
	run.Stdout, run.Stderr = os.Stdout, os.Stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	// A hang inside must fail this test, not time out the whole package.
	timer := time.AfterFunc(5*time.Minute, func() { run.Process.Kill() })
	defer timer.Stop()
	if err := run.Wait(); err != nil {
		t.Fatalf("lab tests failed: %v", err)
	}
}

var labUserOnce sync.Once

// labLauncher is a Launcher in the lab, crawling as user scrapy (created on
// first use: the lab image does not have the package's user).
func labLauncher(t testing.TB) *Launcher {
	t.Helper()
	if os.Getenv(labEnv) != "inside" {
		t.Skipf("runs inside the lab only (%s=inside): run it through TestLab's instructions", labEnv)
	}
	labUserOnce.Do(func() {
		if _, err := runas.Lookup("scrapy", ""); err != nil {
			out, err := exec.Command("useradd", "--system", "--user-group", "--home-dir", "/var/lib/scrapyd",
				"--no-create-home", "--shell", "/usr/sbin/nologin", "scrapy").CombinedOutput()
			if err != nil {
				t.Fatalf("useradd scrapy: %v\n%s", err, out)
			}
		}
	})
	u, err := runas.Lookup("scrapy", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := Usable(context.Background()); err != nil {
		t.Fatalf("in the lab, the launcher must be usable: %v", err)
	}
	l, err := New(Options{User: u, StopTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// crawlScript stands in for a crawl: it records who it runs as, starts a
// helper process, and exits with $EXIT_ON_INT on SIGINT, $EXIT_ON_FILE as
// soon as $FILE exists, or ignores SIGINT when $IGNORE_INT is set.
const crawlScript = `
import os, signal, subprocess, sys, time
helper = subprocess.Popen(["sleep", "1000"])
print("uid", os.getuid(), "helper", helper.pid, flush=True)
def stop(*_):
    print("sigint", flush=True)
    sys.exit(int(os.environ.get("EXIT_ON_INT", "0")))
signal.signal(signal.SIGINT, signal.SIG_IGN if os.environ.get("IGNORE_INT") else stop)
while not os.path.exists(os.environ.get("FILE", "/nonexistent")):
    time.sleep(0.05)
sys.exit(int(os.environ["EXIT_ON_FILE"]))
`

func crawlCommand(t testing.TB, job string, env ...string) launch.Command {
	dir := labDir(t)
	return launch.Command{
		Job: job, Project: "lab", Spider: "script",
		Path: "/usr/bin/python3", Args: []string{"-c", crawlScript},
		Env:    append([]string{"PATH=/usr/bin:/bin"}, env...),
		Dir:    "/tmp",
		Stdout: filepath.Join(dir, "out"),
		Stderr: filepath.Join(dir, "err"),
		Limits: launch.Limits{MemoryMax: 256 << 20, CPUQuota: 50, TasksMax: 32, MaxRuntime: time.Hour},
	}
}

// labDir is a directory the test and its crawls share. Not under /tmp:
// crawls have their own (PrivateTmp), and not t.TempDir, whose parent is
// private to root.
func labDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/srv", "crawl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// eventually polls cond until it holds; the test's own timeout bounds it.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scriptOutput waits for the script's first line: "uid N helper PID".
func scriptOutput(t testing.TB, file string) (uid, helper int) {
	t.Helper()
	eventually(t, "the crawl wrote its first line", func() bool {
		b, _ := os.ReadFile(file)
		return strings.Contains(string(b), "\n")
	})
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Scan()
	if _, err := fmt.Sscanf(s.Text(), "uid %d helper %d", &uid, &helper); err != nil {
		t.Fatalf("first line %q: %v", s.Text(), err)
	}
	return uid, helper
}

func unitProps(t testing.TB, unit, iface string) map[string]any {
	t.Helper()
	c, err := sddbus.NewSystemConnectionContext(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var p map[string]any
	if iface == "" {
		p, err = c.GetUnitPropertiesContext(t.Context(), unit)
	} else {
		p, err = c.GetUnitTypePropertiesContext(t.Context(), unit, iface)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func loaded(t testing.TB, unit string) bool {
	return unitProps(t, unit, "")["LoadState"] == "loaded"
}

func labStartCancel(t *testing.T) {
	l := labLauncher(t)
	cmd := crawlCommand(t, "lab-cancel", "EXIT_ON_INT=7")
	h, w, err := l.Start(t.Context(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	if h.ID != `scrapyd-crawl-lab\x2dcancel.service` || h.PID <= 0 {
		t.Fatalf("handle = %+v", h)
	}
	uid, _ := scriptOutput(t, cmd.Stdout)
	if scrapy, _ := runas.Lookup("scrapy", ""); uid != int(scrapy.UID) {
		t.Fatalf("crawl runs as uid %d, want scrapy (%d)", uid, scrapy.UID)
	}
	// The limits are set on the unit (the lab does not enforce them).
	u, s := unitProps(t, h.ID, ""), unitProps(t, h.ID, "Service")
	for k, v := range map[string]any{
		"User": "scrapy", "Slice": DefaultSlice, "MemoryMax": uint64(256 << 20),
		"CPUQuotaPerSecUSec": uint64(500_000), "TasksMax": uint64(32),
		"RuntimeMaxUSec": uint64(time.Hour.Microseconds()), "KillMode": "mixed", "KillSignal": int32(2),
		"MainPID": uint32(h.PID),
	} {
		got, ok := s[k]
		if !ok {
			got = u[k]
		}
		if got != v {
			t.Errorf("unit %s = %#v, want %#v", k, got, v)
		}
	}
	if err := l.Signal(t.Context(), h, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	launchtest.WantCode(t, launchtest.Wait(t, w), 7)
	if out, _ := os.ReadFile(cmd.Stdout); !strings.Contains(string(out), "sigint") {
		t.Fatalf("stdout %q: the crawl did not see SIGINT", out)
	}
	eventually(t, "the ended unit is released", func() bool { return !loaded(t, h.ID) })
	if err := l.Signal(t.Context(), h, syscall.SIGINT); !errors.Is(err, launch.ErrGone) {
		t.Fatalf("Signal after the end = %v, want ErrGone", err)
	}
	if _, e, err := l.Recover(t.Context(), h); !errors.Is(err, launch.ErrGone) || e.Known {
		t.Fatalf("Recover of a released unit = %+v, %v; want unknown exit, ErrGone", e, err)
	}
}

func labKill(t *testing.T) {
	l := labLauncher(t)
	cmd := crawlCommand(t, "lab-kill", "IGNORE_INT=1")
	h, w, err := l.Start(t.Context(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	_, helper := scriptOutput(t, cmd.Stdout)
	// The first cancel is ignored by this crawl; the second kills the unit.
	if err := l.Signal(t.Context(), h, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := l.Signal(t.Context(), h, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if e := launchtest.Wait(t, w); !e.Known || e.Signal != syscall.SIGKILL || e.Code != nil {
		t.Fatalf("exit = %+v, want killed by SIGKILL", e)
	}
	eventually(t, "the helper process died with the unit", func() bool {
		return syscall.Kill(helper, 0) == syscall.ESRCH
	})
	eventually(t, "the failed unit is released", func() bool { return !loaded(t, h.ID) })
}

func labStartFails(t *testing.T) {
	l := labLauncher(t)
	cmd := crawlCommand(t, "lab-bad-path")
	cmd.Path = "/nonexistent/python3"
	if _, _, err := l.Start(t.Context(), cmd); err == nil || !strings.Contains(err.Error(), "203") {
		t.Fatalf("Start with a missing executable = %v, want an error naming status 203/EXEC", err)
	}
	eventually(t, "the failed unit is released", func() bool { return !loaded(t, UnitName(cmd.Job)) })
	// The name is free again: a job id reused after a failure can start.
	cmd.Path = "/usr/bin/python3"
	_, w, err := l.Start(t.Context(), withFile(cmd, 0))
	if err != nil {
		t.Fatal(err)
	}
	launchtest.WantCode(t, launchtest.Wait(t, w), 0)
}

// withFile makes the crawl exit with code as soon as it starts.
func withFile(cmd launch.Command, code int) launch.Command {
	cmd.Env = append(slices.Clip(cmd.Env), "FILE=/", "EXIT_ON_FILE="+strconv.Itoa(code))
	return cmd
}

// labRecover is the restart test: a new Launcher (a restarted daemon)
// finds a running crawl, sees its end, and learns the exit of a crawl that
// ended while no launcher was watching.
func labRecover(t *testing.T) {
	first := labLauncher(t)
	running := crawlCommand(t, "lab-recover-running", "EXIT_ON_INT=3")
	hr, _, err := first.Start(t.Context(), running)
	if err != nil {
		t.Fatal(err)
	}
	ended := crawlCommand(t, "lab-recover-ended")
	stop := filepath.Join(filepath.Dir(ended.Stdout), "stop")
	ended.Env = append(ended.Env, "FILE="+stop, "EXIT_ON_FILE=5")
	he, _, err := first.Start(t.Context(), ended)
	if err != nil {
		t.Fatal(err)
	}
	scriptOutput(t, running.Stdout)
	scriptOutput(t, ended.Stdout)
	first.Close()

	// While no launcher watches, one crawl ends.
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Ended is what the launcher reads as ended: the unit failed (exit 5)
	// after its leftover helper was stopped. SubState leaves "running" earlier,
	// while that helper is being stopped (deactivating), when the crawl
	// has not ended in the launcher's sense yet.
	eventually(t, "the crawl ended while unwatched", func() bool {
		p := unitProps(t, he.ID, "")
		return p["ActiveState"] == "failed" || p["SubState"] == "exited"
	})

	second := labLauncher(t)
	hs, err := second.Running(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []launch.Handle{hr, he} {
		if !slices.ContainsFunc(hs, func(h launch.Handle) bool { return h.ID == want.ID }) {
			t.Fatalf("Running() = %+v, missing %s", hs, want.ID)
		}
	}
	if _, e, err := second.Recover(t.Context(), he); !errors.Is(err, launch.ErrGone) {
		t.Fatalf("Recover(ended) = %v, want ErrGone", err)
	} else {
		launchtest.WantCode(t, e, 5)
	}
	eventually(t, "the recovered ended unit is released", func() bool { return !loaded(t, he.ID) })

	w, _, err := second.Recover(t.Context(), hr)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Signal(t.Context(), hr, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	launchtest.WantCode(t, launchtest.Wait(t, w), 3)
}

// labContract runs the launcher contract that the exec launcher and the
// fake keep too.
func labContract(t *testing.T) {
	launchtest.NoLeaks(t)
	launchtest.Run(t, launchtest.Setup{
		New: func(t *testing.T) launch.Launcher { return labLauncher(t) },
		Dir: func(t *testing.T) string {
			// Crawls run as scrapy and write here.
			d := labDir(t)
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
			return d
		},
		Processes:        true,
		ExitAfterRecover: true,
	})
}

// labCrashPoints is the dispatcher's restart test with transient units: a
// daemon dies at each point of a start; the next one never starts the job
// twice and leaves no unit untracked. The crawl's interpreter is a stand-in
// that counts its starts and runs until SIGINT.
func labCrashPoints(t *testing.T) {
	labLauncher(t) // creates the crawl user
	dispatchtest.Walk(t, func(t *testing.T) string { return labDir(t) }, func(t *testing.T, cfg *config.Config) dispatchtest.Rig {
		dir := labDir(t)
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		cfg.Python = filepath.Join(dir, "crawl")
		script := "#!/bin/sh\necho started >> \"$STARTS\"\ntrap 'exit 0' INT\nwhile :; do sleep 0.05; done\n"
		if err := os.WriteFile(cfg.Python, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		cfg.CrawlWritablePaths = []string{dir}
		unit := UnitName(dispatchtest.Job)
		return dispatchtest.Rig{
			NewLauncher: func() launch.Launcher { return labLauncher(t) },
			Env:         []string{"STARTS=" + filepath.Join(dir, "starts"), "PATH=/usr/bin:/bin"},
			Starts: func() int {
				b, _ := os.ReadFile(filepath.Join(dir, "starts"))
				return strings.Count(string(b), "started")
			},
			Running: func() bool {
				p := unitProps(t, unit, "")
				return p["LoadState"] == "loaded" && p["ActiveState"] != "inactive" && p["ActiveState"] != "failed" && p["SubState"] != "exited"
			},
		}
	})
}

const outliveOut = "/srv/lab-outlive.out"

// labOutlivesDaemon: a crawl started from inside a service keeps running
// when that service stops (KillMode=mixed kills the daemon's whole cgroup).
// The test re-runs itself as a transient service that starts one crawl.
func labOutlivesDaemon(t *testing.T) {
	if os.Getenv("LAB_HELPER_DAEMON") == "1" {
		l := labLauncher(t)
		cmd := crawlCommand(t, "lab-outlive", "EXIT_ON_INT=0")
		cmd.Stdout = outliveOut // outlives this process's temporary directories
		if _, _, err := l.Start(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
		return
	}
	l := labLauncher(t)
	out, err := exec.Command("systemd-run", "--quiet", "--wait", "--pipe", "--collect",
		"--unit=lab-fake-scrapyd", "-p", "KillMode=mixed",
		"--setenv="+labEnv+"=inside", "--setenv=LAB_HELPER_DAEMON=1",
		os.Args[0], "-test.run", "^TestLab$/^OutlivesDaemon$").CombinedOutput()
	if err != nil {
		t.Fatalf("the fake daemon failed: %v\n%s", err, out)
	}
	t.Cleanup(func() { os.Remove(outliveOut) })
	h := launch.Handle{ID: UnitName("lab-outlive")}
	w, _, err := l.Recover(t.Context(), h)
	if err != nil {
		t.Fatalf("the crawl did not outlive its daemon's unit: %v", err)
	}
	scriptOutput(t, outliveOut) // its SIGINT handler is installed
	if err := l.Signal(t.Context(), h, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	launchtest.WantCode(t, launchtest.Wait(t, w), 0)
}

// confinementScript reports what a crawl could do to the files it must
// not touch, as one JSON line: "ok" or the errno's name per attempt.
const confinementScript = `
import errno, json, os, sys, time
def attempt(op):
    try:
        op()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def write(path):
    return attempt(lambda: open(path, "w").write("x"))
def read(path):
    return attempt(lambda: open(path).read())
env = os.environ
print(json.dumps({
    "write_own": write(env["OWN"] + "/f"),
    "write_optional": write(env["OPTIONAL"] + "/f"),
    "write_other": write(env["OTHER"] + "/f"),
    "write_etc": write("/etc/scrapyd-crawl-was-here"),
    "write_tmp": write("/tmp/f"),
    "read_own_egg": read(env["EGGS"] + "/own.egg"),
    "read_other_egg": read(env["EGGS"] + "/other.egg"),
    "read_db": read(env["DBS"] + "/scrapyd.db"),
    "see_pid1": os.path.exists("/proc/1/cmdline"),
    "uid": os.getuid(),
}), flush=True)
while not os.path.exists(env["FILE"]):  # stay, to be scored, until told
    time.sleep(0.05)
`

// labConfinement: a crawl writes its own directories only (not another
// directory it owns, not /etc), reads its own egg but not another
// project's or the job database, and cannot see the system's processes;
// Unix permissions alone would allow all of those but /etc.
func labConfinement(t *testing.T) {
	l := labLauncher(t)
	u, _ := runas.Lookup("scrapy", "")
	base := labDir(t)
	dirs := map[string]string{}
	for _, name := range []string{"OWN", "OPTIONAL", "OTHER", "EGGS", "DBS"} {
		d := filepath.Join(base, strings.ToLower(name))
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, int(u.UID), int(u.GID)); err != nil {
			t.Fatal(err)
		}
		dirs[name] = d
	}
	for _, f := range []string{"eggs/own.egg", "eggs/other.egg", "dbs/scrapyd.db"} {
		if err := os.WriteFile(filepath.Join(base, f), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := crawlCommand(t, "lab-confined")
	cmd.Args = []string{"-c", confinementScript}
	for k, d := range dirs {
		cmd.Env = append(cmd.Env, k+"="+d)
	}
	cmd.Sandbox = launch.Sandbox{
		Writable: []string{dirs["OWN"]},
		Optional: []string{dirs["OPTIONAL"], filepath.Join(base, "missing")},
		Hidden:   []string{dirs["EGGS"], dirs["DBS"]},
		Exposed:  []string{filepath.Join(dirs["EGGS"], "own.egg")},
	}
	stop := filepath.Join(base, "stop")
	cmd.Env = append(cmd.Env, "FILE="+stop)
	h, w, err := l.Start(t.Context(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the probe reported", func() bool {
		b, _ := os.ReadFile(cmd.Stdout)
		return strings.HasSuffix(string(b), "\n")
	})
	score := securityScore(t, h.ID)
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	launchtest.WantCode(t, launchtest.Wait(t, w), 0)
	out, _ := os.ReadFile(cmd.Stdout)
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		errOut, _ := os.ReadFile(cmd.Stderr)
		t.Fatalf("crawl output %q (stderr %q): %v", out, errOut, err)
	}
	want := map[string]any{
		"write_own": "ok", "write_optional": "ok", "write_other": "EROFS", "write_etc": "EROFS", "write_tmp": "ok",
		"read_own_egg": "ok", "read_other_egg": "ENOENT", "read_db": "ENOENT",
		"see_pid1": false, "uid": float64(u.UID),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if _, err := os.Stat(filepath.Join(dirs["OWN"], "f")); err != nil {
		t.Errorf("the crawl's write to its own directory is not on the host: %v", err)
	}
	// systemd-analyze security: 10 is unconfined (a crawl unit was 9.0
	// before its sandbox), under 5 is "OK"; this sandbox scores 1.6 on
	// systemd 252. Reported with -v, for the closing note.
	t.Logf("systemd-analyze security %s: %.1f", h.ID, score)
	if score > 2.5 {
		t.Errorf("crawl unit exposure %.1f, want at most 2.5", score)
	}
}

// securityScore is the unit's overall exposure by systemd-analyze security
// (lower is safer), read while the unit is loaded.
func securityScore(t testing.TB, unit string) float64 {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "security", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := strings.Fields(lines[len(lines)-1]) // "→ Overall exposure level for UNIT: 2.1 OK 🙂"
	for i, f := range last {
		if strings.HasSuffix(f, ":") && i+1 < len(last) {
			if v, err := strconv.ParseFloat(last[i+1], 64); err == nil {
				return v
			}
		}
	}
	t.Fatalf("no score in %q", lines[len(lines)-1])
	return 0
}

// BenchmarkLabStart measures Start (StartTransientUnit until the start job
// is done, i.e. the executable was exec'd) and reports its median.
func BenchmarkLabStart(b *testing.B) {
	l := labLauncher(b)
	d := make([]time.Duration, 0, b.N)
	ctx := context.Background()
	cmd := launch.Command{Path: "/bin/true", Dir: "/"}
	for i := 0; b.Loop(); i++ {
		cmd.Job = fmt.Sprintf("bench-%d-%d", os.Getpid(), i)
		t0 := time.Now()
		_, w, err := l.Start(ctx, cmd)
		d = append(d, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		<-w.Done()
		b.StartTimer()
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(d[len(d)*9/10].Microseconds())/1000, "p90-ms")
}
