package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/client"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestReadmeWalkthrough runs the README's walkthrough as a new user would,
// in a fresh copy of the repository: `make install` into a temporary
// PREFIX put first on PATH, the walkthrough's first block (the daemon) in
// the top folder, then its other blocks, exactly as written, in one bash
// started in the top folder (the second terminal). Every command must
// succeed (bash -e; -x traces them into a failure's output), and what the
// README's comments promise must show. The walkthrough uses the real port
// 6800, as the README does.
func TestReadmeWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	testkit.RequireScrapy(t)
	needTool(t, "make", "--version")
	needTool(t, "curl", "--version")
	if c, err := net.Dial("tcp", "127.0.0.1:6800"); err == nil {
		c.Close()
		t.Fatal("something already listens on 127.0.0.1:6800, which the README's walkthrough uses: stop it")
	}
	clone := freshCopy(t)
	blocks := walkthroughBlocks(t, filepath.Join(clone, "README.md"))
	if len(blocks) < 2 || strings.Count(strings.TrimSpace(blocks[0]), "\n") != 0 {
		t.Fatalf("the walkthrough should start the daemon in its first block, one command, then use it:\n%q", blocks)
	}

	prefix := testkit.TraversableTempDir(t)
	home := testkit.TraversableTempDir(t) // no ~/.scrapyd.conf, ~/.netrc or ~/.scrapy.cfg of the tester's
	env := []string{"HOME=" + home, "PATH=" + filepath.Join(prefix, "bin") + ":" + os.Getenv("PATH")}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k != "HOME" && k != "PATH" && k != "NETRC" && !strings.HasPrefix(k, "SCRAPYD_") {
			env = append(env, kv)
		}
	}
	// The tester's Go caches, which the empty HOME would otherwise hide.
	goEnv, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH").Output()
	if err != nil {
		t.Fatal(err)
	}
	caches := strings.Split(strings.TrimSpace(string(goEnv)), "\n")
	install := exec.Command("make", "install", "PREFIX="+prefix)
	install.Dir = clone
	install.Env = append(slices.Clone(env), "GOCACHE="+caches[0], "GOMODCACHE="+caches[1], "GOPATH="+caches[2])
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, bin := range []string{"scrapyd", "scrapydctl"} {
		if _, err := os.Stat(filepath.Join(prefix, "bin", bin)); err != nil {
			t.Fatalf("make install did not install %s: %v", bin, err)
		}
	}

	// The first terminal.
	daemonOut := &lockedBuffer{}
	daemon := bashIn(clone, env, blocks[0], daemonOut, daemonOut)
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { daemon.Wait(); close(exited) }()
	t.Cleanup(func() {
		// Crawls outlive the daemon: a walkthrough that failed half-way
		// must not leave its slow crawl running for hours.
		if c, err := client.New("http://127.0.0.1:6800/", client.Options{}); err == nil {
			if jobs, err := c.ListJobs(context.Background(), ""); err == nil {
				for _, j := range append(jobs.Pending, jobs.Running...) {
					c.Cancel(context.Background(), j.Project, j.ID, "KILL")
				}
			}
		}
		syscall.Kill(-daemon.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			syscall.Kill(-daemon.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	testkit.Eventually(t, 30*time.Second, "the daemon answers on 127.0.0.1:6800", func() bool {
		select {
		case <-exited:
			t.Fatalf("the daemon exited:\n%s", daemonOut)
		default:
		}
		resp, err := http.Get("http://127.0.0.1:6800/daemonstatus.json")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	logFile := filepath.Join(clone, "var", "log", "scrapyd", "scrapyd.log")
	if first, _, _ := strings.Cut(daemonOut.String(), "\n"); first != "scrapyd: logging to "+logFile {
		t.Errorf("the daemon's first line on stderr is %q, want it to say it logs to %s", first, logFile)
	}

	// The second terminal.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stdout, all := &lockedBuffer{}, &lockedBuffer{}
	user := bashIn(clone, env, strings.Join(blocks[1:], "\n"), io.MultiWriter(stdout, all), all, "-e", "-o", "pipefail", "-x")
	if err := runWithin(ctx, user); err != nil {
		t.Fatalf("the walkthrough failed: %v\noutput:\n%s\ndaemon:\n%s", err, all, daemonOut)
	}
	out := stdout.String()
	for _, want := range []string{
		`"project": "sample", "version": "1.0", "spiders": 4`,
		"catalog\nfailing\nparams\nslow\n",
		"finished: finished (exit 0)\n",
		"cancelled (it was running)\n",
		`"project": "sample", "version": "1.1", "spiders": 4`,
		`"jobid": "by-curl"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the walkthrough's output has no %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, `"greeting": "hi"`); n != 3 {
		t.Errorf("scrapydctl items printed %d items with the -s setting, want 3:\n%s", n, out)
	}
	if n := strings.Count(out, `"greeting": "hello-from-settings"`); n != 2 {
		t.Errorf("curl .../items/sample/params/by-curl.jl printed %d items, want 2:\n%s", n, out)
	}
	if _, err := os.Stat(filepath.Join(clone, "appliance", "e2e", "testdata", "sample", "sample.egg")); !os.IsNotExist(err) {
		t.Errorf("the walkthrough leaves sample.egg behind: %v", err)
	}
}

// freshCopy copies the repository's files (tracked and new, as git would
// clone them once committed; nothing ignored, so no local data) into a
// directory the crawl user can traverse.
func freshCopy(t *testing.T) string {
	t.Helper()
	root := testkit.RepoRoot()
	ls := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	ls.Dir = root
	names, err := ls.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := testkit.TraversableTempDir(t)
	for _, name := range strings.Split(strings.TrimRight(string(names), "\x00"), "\x00") {
		src := filepath.Join(root, name)
		fi, err := os.Lstat(src)
		if os.IsNotExist(err) {
			continue // deleted, not yet committed
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			link, err := os.Readlink(src)
			if err == nil {
				err = os.Symlink(link, target)
			}
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// walkthroughBlocks returns the ```sh blocks of the README's walkthrough
// section, in order.
func walkthroughBlocks(t *testing.T, readme string) []string {
	t.Helper()
	f, err := os.Open(readme)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		blocks  []string
		in      bool // inside the walkthrough section
		block   *strings.Builder
		section bool
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case block != nil && line == "```":
			blocks, block = append(blocks, block.String()), nil
		case block != nil:
			block.WriteString(line + "\n")
		case strings.HasPrefix(line, "## "):
			in = strings.HasPrefix(line, "## Walkthrough")
			section = section || in
		case in && line == "```sh":
			block = &strings.Builder{}
		}
	}
	if !section {
		t.Fatal("README.md has no \"## Walkthrough\" section")
	}
	return blocks
}

// bashIn is bash running script in dir, in its own process group.
func bashIn(dir string, env []string, script string, stdout, stderr io.Writer, opts ...string) *exec.Cmd {
	cmd := exec.Command("bash", append(opts, "-c", script)...)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// runWithin runs cmd, killing its process group when ctx ends.
func runWithin(ctx context.Context, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return ctx.Err()
	}
}

// lockedBuffer is written by a process's stdout and stderr copiers at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
