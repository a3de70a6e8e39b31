package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestScrapydWayMinimalConf: the binary started as Scrapyd is, in a folder
// holding only `[scrapyd]\nhttp_port = N\n`, with no --root and no package
// installed, takes Scrapyd's defaults relative to that folder (eggs, logs,
// dbs), so that a user who may write nowhere else can start it (it failed
// with "mkdir /var/log/scrapyd: permission denied"): an upload and a crawl
// work, and every file is below the folder.
func TestScrapydWayMinimalConf(t *testing.T) {
	testkit.RequireScrapy(t)
	if _, err := os.Stat("/etc/scrapyd"); err == nil {
		t.Skip("/etc/scrapyd exists: a start without --root takes the installed layout here")
	}
	t.Parallel()
	// The unprivileged daemon could write only below the folder, /tmp and
	// /var/tmp: that it starts and crawls shows it needs nothing else, and
	// the folder's listing below shows what it wrote there.
	t.Run("unprivileged", func(t *testing.T) {
		cred := scrapyUser(t)
		uid := int(cred.Uid)
		t.Parallel()
		d := minimalScrapydWayCrawl(t, cred)
		// Nothing needed root: every file is the user's.
		filepath.WalkDir(d.Root, func(p string, _ fs.DirEntry, err error) error {
			// The test's own capture of stderr is root's.
			if err == nil && filepath.Base(p) != "daemon-stderr.log" {
				if owner := fileUID(t, p); owner != uid {
					t.Errorf("%s belongs to uid %d, not the daemon's user %d", p, owner, uid)
				}
			}
			return err
		})
	})
	t.Run("as root", func(t *testing.T) {
		t.Parallel()
		minimalScrapydWayCrawl(t, nil)
	})
}

// minimalScrapydWayCrawl starts the daemon (as runAs, when set) in a folder
// holding only a minimal scrapyd.conf, uploads the sample project, runs a
// crawl to its end and checks where the files went.
func minimalScrapydWayCrawl(t *testing.T, runAs *syscall.Credential) *testkit.Daemon {
	t.Helper()
	port := testkit.FreePort(t)
	d := testkit.StartDaemon(t, testkit.Options{ScrapydWay: true, Port: port, Conf: fmt.Sprintf("http_port = %d", port), RunAs: runAs})
	id := crawlCatalog(t, d, 4, "logs")
	// Scrapyd's eggs_dir, logs_dir and dbs_dir, relative to the folder;
	// the daemon's own log in logs_dir, as installed.
	eggs, _ := filepath.Glob(d.Path("eggs", "sample", "*.egg"))
	dbs, _ := filepath.Glob(d.Path("dbs", "*"))
	if len(eggs) != 1 || len(dbs) == 0 {
		t.Errorf("eggs %v, dbs %v: want the egg below eggs/ and the job database below dbs/", eggs, dbs)
	}
	for _, f := range []string{"logs/sample/catalog/" + id + ".log", "logs/scrapyd.log"} {
		if _, err := os.Stat(d.Path(f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// items_dir is empty, as in Scrapyd: no item feed is imposed.
	if _, err := os.Stat(d.Path("items")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("items/ made although items_dir is empty: %v", err)
	}
	// Besides those and Scrapy's .scrapy, only run/ (crawl sockets),
	// envs/ (Python environments, beside eggs/) and what the test itself
	// put there.
	names, err := os.ReadDir(d.Root)
	if err != nil {
		t.Fatal(err)
	}
	allowed := []string{"scrapyd.conf", "eggs", "logs", "dbs", "run", "envs", ".scrapy", "home", "daemon-stderr.log"}
	for _, n := range names {
		if !slices.Contains(allowed, n.Name()) {
			t.Errorf("unexpected %s in the folder", n.Name())
		}
	}
	return d
}

// TestInstalledLayoutNotWritable: a non-root daemon whose default paths it
// cannot create says which option it is and how to fix it, instead of
// "mkdir /var/log/scrapyd: permission denied" alone.
func TestInstalledLayoutNotWritable(t *testing.T) {
	cred := scrapyUser(t)
	t.Parallel()
	root := testkit.TraversableTempDir(t) // root's, 0755: the user may not create var/ there
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(testkit.Binaries(t), "scrapyd"), "--root", root)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "HOME=/nonexistent", "SCRAPYD_BIND_ADDRESS=127.0.0.1", "SCRAPYD_HTTP_PORT="+strconv.Itoa(testkit.FreePort(t)))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("scrapyd: %v, want exit status 1\n%s", err, out)
	}
	want := fmt.Sprintf("log_file %s/var/log/scrapyd/scrapyd.log: mkdir %s/var: permission denied: set log_file in %s/etc/scrapyd/conf.d/*.conf, or give --root a folder you can write to", root, root, root)
	if !strings.Contains(string(out), want) {
		t.Errorf("got\n%s\nwant a line with\n%s", out, want)
	}
}
