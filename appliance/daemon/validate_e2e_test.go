package daemon_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// newRoot is a --root tree with conf.d; other users may traverse it (a
// root daemon checks that its crawl user can).
func newRoot(t *testing.T) (root, confD string) {
	t.Helper()
	root, err := os.MkdirTemp("", "scrapyd-validate-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	confD = filepath.Join(root, "etc", "scrapyd", "conf.d")
	if err := os.MkdirAll(confD, 0o755); err != nil {
		t.Fatal(err)
	}
	return root, confD
}

// scrapyd runs the real binary to its end and returns its exit status
// and stderr.
func scrapyd(t *testing.T, root string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(testkit.Binaries(t), "scrapyd"), append([]string{"--root", root}, args...)...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("SCRAPYD_HTTP_PORT=%d", testkit.FreePort(t)), "SCRAPYD_BIND_ADDRESS=127.0.0.1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// TestConfigCheckIsTheDaemonsCheck: `scrapyd config check` refuses what
// the daemon refuses, with the daemon's own words; it once said
// "configuration OK" for a crawl web service resource the daemon then
// refused to start with (issue 14 point 4).
func TestConfigCheckIsTheDaemonsCheck(t *testing.T) {
	root, confD := newRoot(t)
	if err := os.WriteFile(filepath.Join(confD, "50-ws.conf"), []byte("[scrapyd]\nwebservice_resources = crawler, bogus\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const want = `scrapyd: webservice_resources: unknown resource "bogus" (known: crawler, stats, enginestatus)`
	checkExit, check := scrapyd(t, root, "config", "check")
	startExit, start := scrapyd(t, root)
	if checkExit != 1 || !strings.Contains(check, want) {
		t.Errorf("config check: exit %d, stderr %q; want exit 1 and %q", checkExit, check, want)
	}
	if startExit != 1 || !strings.Contains(start, want) {
		t.Errorf("daemon: exit %d, stderr %q; want exit 1 and %q", startExit, start, want)
	}

	// Fixed, both take it (the daemon is not started again: check is enough).
	if err := os.WriteFile(filepath.Join(confD, "50-ws.conf"), []byte("[scrapyd]\nwebservice_resources = crawler\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := scrapyd(t, root, "config", "check"); code != 0 {
		t.Errorf("a valid file: exit %d, %s", code, out)
	}
}

// TestReloadRefusedEverywhere: a reload that any component refuses leaves
// the running configuration in force in all of them, and says so in the
// log. The crawl web service refuses one value in its check and another
// only when it applies it (a request log it cannot open); node_name, set
// in the same file, shows that the rest of the daemon kept its value too.
func TestReloadRefusedEverywhere(t *testing.T) {
	d := testkit.StartDaemon(t, testkit.Options{Conf: "node_name = base"})
	for _, c := range []struct{ body, err string }{
		{"webservice_resources = crawler, bogus", `webservice_resources: unknown resource \"bogus\"`},
		{"webservice_logfile = " + d.Path("no", "such", "dir", "ws.log"), "webservice_logfile: open " + d.Path("no", "such", "dir", "ws.log")},
	} {
		conf(t, d, "60-refused.conf", "node_name = changed\n"+c.body)
		if err := syscall.Kill(d.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, wait, "the refusal in the log", func() bool {
			for _, l := range strings.Split(d.Logs(), "\n") {
				if strings.Contains(l, `msg="configuration invalid; the running configuration stays"`) && strings.Contains(l, c.err) {
					return true
				}
			}
			return false
		})
		if s := status(t, d); s["node_name"] != "base" {
			t.Fatalf("%s: node_name = %v, the refused file took effect", c.body, s["node_name"])
		}
		if diag, _ := d.Get(t, "diagnostics.json", nil)["config_error"].(string); !strings.Contains(diag, strings.ReplaceAll(c.err, `\"`, `"`)) {
			t.Errorf("diagnostics.json config_error = %q, want %q", diag, c.err)
		}
	}
	conf(t, d, "60-refused.conf", "node_name = changed\nwebservice_resources = stats")
	nodeIs(t, d, "changed")
}

// heldAtStart starts the real binary with a configuration file that is a
// FIFO and returns once the daemon has it open: then it is past the point
// where it takes its signals, and not yet ready. release lets it go on
// (later reads find a regular file with the same text).
func heldAtStart(t *testing.T, body string) (cmd *exec.Cmd, root string, port int, output *bytes.Buffer, exited <-chan struct{}, release func()) {
	t.Helper()
	root, confD := newRoot(t)
	fifo := filepath.Join(confD, "50-test.conf")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	port = testkit.FreePort(t)
	cmd = exec.Command(filepath.Join(testkit.Binaries(t), "scrapyd"), "--root", root)
	cmd.Env = append(os.Environ(), fmt.Sprintf("SCRAPYD_HTTP_PORT=%d", port), "SCRAPYD_BIND_ADDRESS=127.0.0.1")
	output = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = output, output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); <-done })

	// Opening a FIFO to write without blocking fails (ENXIO) until a
	// reader has it open: then the daemon is reading its configuration.
	var fd int
	testkit.Eventually(t, wait, "the daemon reading its configuration", func() bool {
		var err error
		fd, err = syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
		return err == nil
	})
	return cmd, root, port, output, done, func() {
		t.Helper()
		tmp := filepath.Join(confD, ".50-test.conf.tmp")
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, fifo); err != nil {
			t.Fatal(err)
		}
		if _, err := syscall.Write(fd, []byte(body)); err != nil {
			<-done
			t.Fatalf("the daemon died while starting (%v): %v\n%s", err, cmd.ProcessState, output.String())
		}
		syscall.Close(fd)
	}
}

// TestSIGHUPWhileStarting: a SIGHUP (systemctl reload) that comes while the
// daemon is still starting does not kill it (SIGHUP's default action); it
// is applied once the daemon is ready.
func TestSIGHUPWhileStarting(t *testing.T) {
	cmd, root, port, output, exited, release := heldAtStart(t, "[scrapyd]\nnode_name = early\ndebug = on\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	release()
	url := fmt.Sprintf("http://127.0.0.1:%d/daemonstatus.json", port)
	testkit.Eventually(t, wait, "the daemon answering", func() bool {
		select {
		case <-exited:
			t.Fatalf("the daemon died of the SIGHUP it got while starting: %v\n%s", cmd.ProcessState, output.String())
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	logFile := filepath.Join(root, "var", "log", "scrapyd", "scrapyd.log")
	testkit.Eventually(t, wait, "the early SIGHUP applied once ready", func() bool {
		data, _ := os.ReadFile(logFile)
		return strings.Contains(string(data), `msg="configuration unchanged" trigger=SIGHUP`)
	})
}

// TestSIGTERMWhileStarting: a SIGTERM while the daemon starts stops it
// cleanly (exit status 0) before it serves or dispatches anything.
func TestSIGTERMWhileStarting(t *testing.T) {
	cmd, root, _, output, exited, release := heldAtStart(t, "[scrapyd]\nnode_name = early\n")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	release()
	<-exited
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %v after a SIGTERM while starting, want 0\n%s", cmd.ProcessState, output.String())
	}
	data, _ := os.ReadFile(filepath.Join(root, "var", "log", "scrapyd", "scrapyd.log"))
	if log := string(data); !strings.Contains(log, "scrapyd stopped while starting") || strings.Contains(log, "scrapyd started") {
		t.Errorf("the log of a daemon stopped while starting:\n%s", log)
	}
}

// TestDatabasePasswordFileChecked: a password file others may read is
// refused by `config check` and at start alike, naming the option and
// never printing the password.
func TestDatabasePasswordFileChecked(t *testing.T) {
	root, confD := newRoot(t)
	pw := filepath.Join(root, "db-password")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := "[scrapyd]\ndatabase = postgresql://scrapyd@127.0.0.1:1/scrapyd\ndatabase_password_file = " + pw + "\n"
	if err := os.WriteFile(filepath.Join(confD, "50-db.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"config", "check"}, nil} {
		code, out := scrapyd(t, root, args...)
		if code != 1 || !strings.Contains(out, "database_password_file "+pw+": readable by others") || strings.Contains(out, "s3cret") {
			t.Errorf("scrapyd %v: exit %d, stderr %q", args, code, out)
		}
	}
}
