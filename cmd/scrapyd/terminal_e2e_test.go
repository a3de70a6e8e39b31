package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestTerminal starts the real daemon as a user does in a terminal, with
// --bind and --port and no configuration naming either: the first line
// says where it logs, the log follows on the terminal, and it serves on
// the flags' address. With stderr not a terminal, the first line is the
// same but for the terminal, and nothing else follows there.
func TestTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	bin := filepath.Join(testkit.Binaries(t), "scrapyd")
	for _, tty := range []bool{true, false} {
		t.Run(fmt.Sprintf("tty=%v", tty), func(t *testing.T) {
			root := testkit.TraversableTempDir(t)
			port := testkit.FreePort(t)
			cmd := exec.Command(bin, "--root", ".", "--bind", "127.0.0.1", "--port", strconv.Itoa(port))
			cmd.Dir = root
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + root}
			var out io.Reader
			if tty {
				master, slave := openPTY(t)
				cmd.Stdout, cmd.Stderr, out = slave, slave, master
				defer slave.Close()
			} else {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				cmd.Stderr, out = w, r
				defer w.Close()
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
			lines := make(chan string, 100)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					lines <- strings.TrimRight(sc.Text(), "\r")
				}
				close(lines)
			}()
			url := fmt.Sprintf("http://127.0.0.1:%d/daemonstatus.json", port)
			testkit.Eventually(t, 20*time.Second, "the daemon answers on --port", func() bool {
				resp, err := http.Get(url)
				if err == nil {
					resp.Body.Close()
				}
				return err == nil && resp.StatusCode == 200
			})
			logFile := filepath.Join(root, "var", "log", "scrapyd", "scrapyd.log")
			want := "scrapyd: logging to " + logFile
			if tty {
				want += " and to this terminal"
			}
			if first := <-lines; first != want {
				t.Errorf("first line on stderr %q, want %q", first, want)
			}
			if tty {
				// The log is mirrored: its start line comes on the terminal too.
				testkit.Eventually(t, 10*time.Second, "the log on the terminal", func() bool {
					select {
					case l := <-lines:
						return strings.Contains(l, `msg="scrapyd started"`)
					default:
						return false
					}
				})
			}
			log, err := os.ReadFile(logFile)
			if err != nil || !strings.Contains(string(log), fmt.Sprintf(`msg=listening address=127.0.0.1:%d`, port)) {
				t.Errorf("the log file says %q (%v), want it listening on the flags' address", log, err)
			}
			if !tty {
				cmd.Process.Signal(syscall.SIGTERM)
				cmd.Wait()
				cmd.Stderr.(*os.File).Close()
				for l := range lines {
					t.Errorf("stderr, not a terminal, has more than the first line: %q", l)
				}
			}
		})
	}
}

// openPTY opens a pseudo-terminal pair (what a terminal emulator gives a
// shell): the daemon writes to the slave, the test reads the master.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatal(e)
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return master, slave
}
