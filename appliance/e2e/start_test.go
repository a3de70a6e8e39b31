package e2e

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// scrapydWayConf is a scrapyd.conf as a Scrapyd user writes it, with
// Scrapyd's own relative directories (its default_scrapyd.conf says
// eggs_dir = eggs, logs_dir = logs, dbs_dir = dbs), plus the files this
// daemon keeps beside them.
const scrapydWayConf = `eggs_dir = eggs
dbs_dir = dbs
logs_dir = logs
items_dir = items
runtime_dir = run
log_file = var/log/scrapyd/scrapyd.log`

// TestScrapydWayStart: the binary run in a folder holding scrapyd.conf, no
// --root and no /var/lib/scrapyd, uploads and crawls (issue 13: every
// upload and crawl failed with "fork/exec /usr/bin/python3: no such file
// or directory", the crawls' directory being <root>/var/lib/scrapyd).
// Crawls run in the daemon's working directory, as in Scrapyd.
func TestScrapydWayStart(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	t.Run("as the caller", func(t *testing.T) {
		t.Parallel()
		scrapydWayCrawl(t, nil)
	})
	// The usual Scrapyd user is not root: the daemon and its crawls run as
	// that user, in a folder of theirs.
	t.Run("unprivileged", func(t *testing.T) {
		cred := scrapyUser(t)
		uid := int(cred.Uid)
		t.Parallel()
		d := scrapydWayCrawl(t, cred)
		if owner := fileUID(t, d.Path(".scrapy")); owner != uid {
			t.Errorf(".scrapy belongs to uid %d, want the daemon's user %d", owner, uid)
		}
	})
}

// scrapydWayCrawl starts the daemon the Scrapyd way (as runAs, when set),
// uploads the sample project and runs a crawl to its end.
func scrapydWayCrawl(t *testing.T, runAs *syscall.Credential) *testkit.Daemon {
	t.Helper()
	d := testkit.StartDaemon(t, testkit.Options{ScrapydWay: true, Conf: scrapydWayConf, RunAs: runAs})
	id := crawlCatalog(t, d, 4, "logs")
	if items := readItems(t, d.Path("items/sample/catalog", id+".jl")); len(items) != 4 {
		t.Errorf("%d items, want 4", len(items))
	}
	// Scrapy's data directory (.scrapy) is made in the working directory.
	if _, err := os.Stat(d.Path(".scrapy")); err != nil {
		t.Errorf("crawls did not run in the daemon's working directory: %v", err)
	}
	return d
}

// crawlCatalog uploads the sample project and runs its catalog spider
// over a site of pages to its end; logs is the daemon's logs_dir below its
// folder, where a failed crawl's log is read.
func crawlCatalog(t *testing.T, d *testkit.Daemon, pages int, logs string) string {
	t.Helper()
	if r := d.Upload(t, "sample", "1.0", testkit.SampleEgg(t)); r["status"] != "ok" || r["spiders"] != 4.0 {
		t.Fatalf("addversion: %v\n%s", r, d.Logs())
	}
	id := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"catalog"}, "url": {testkit.Site(t, pages)}})
	if fin := waitState(t, d, id, "finished"); fin["outcome"] != "finished" {
		t.Fatalf("crawl: %v\n%s\n%s", fin, readFile(d.Path(logs, "sample/catalog", id+".log")), d.Logs())
	}
	return id
}

// fileUID is the owner of path.
func fileUID(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

// scrapyUser skips a test that needs root and the scrapy user to run the
// daemon as, and returns that user's credential.
func scrapyUser(t *testing.T) *syscall.Credential {
	t.Helper()
	requireRoot(t)
	u, err := user.Lookup("scrapy")
	if err != nil {
		t.Skip("no scrapy user to run the daemon as")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// requireRoot skips a test about what a root daemon does (CI runs as root).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon runs crawls as crawl_user only when it is root")
	}
}

// TestRootWithoutCrawlUser: a root daemon without its crawl user says
// what to run, the Debian package's adduser line, or which option to set
// (issue 13: it said "unknown user scrapy", why but not what to do).
func TestRootWithoutCrawlUser(t *testing.T) {
	requireRoot(t)
	testkit.RequireScrapy(t)
	t.Parallel()
	name := fmt.Sprintf("scrapyd-e2e-%d", os.Getpid())
	out := failingStart(t, "crawl_user = "+name)
	command := "adduser --system --group --home /var/lib/scrapyd --no-create-home --shell /usr/sbin/nologin " + name
	for _, want := range []string{
		fmt.Sprintf("crawl_user: there is no user %q, and the daemon runs as root", name),
		"Create it as the Debian package does: `" + command + "`",
		"or set crawl_user to an existing unprivileged user",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrapyd printed %q\nwant %q", out, want)
		}
	}
	if n := strings.Count(strings.TrimSpace(out), "\n"); n != 0 {
		t.Errorf("not one line:\n%s", out)
	}
	if _, err := exec.LookPath("adduser"); err != nil {
		t.Skip("no adduser to run what the message says")
	}

	// The one step it names, then the daemon starts and crawls as that user.
	if out, err := exec.Command("sh", "-c", command).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", command, err, out)
	}
	t.Cleanup(func() {
		exec.Command("deluser", "--system", "--quiet", name).Run()
		exec.Command("delgroup", "--system", "--quiet", name).Run()
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	d := testkit.StartDaemon(t, testkit.Options{Conf: "crawl_user = " + name})
	id := crawlCatalog(t, d, 2, "var/log/scrapyd")
	if owner := fileUID(t, d.Path("var/log/scrapyd/sample/catalog", id+".log")); strconv.Itoa(owner) != u.Uid {
		t.Errorf("the crawl's log belongs to uid %d, want %s's %s", owner, name, u.Uid)
	}
}

// TestPrivateDataDirectory: a root daemon whose data sits under a 0700
// directory (mktemp -d) refuses to start with one line naming the
// directory, its owner and mode, and the chmod that fixes it; after that
// chmod, uploads and crawls work; a reload while the directory is private
// again keeps the running configuration and says why. Before, crawls
// could not reach the egg and the upload answered with a Python
// traceback (issue 13).
func TestPrivateDataDirectory(t *testing.T) {
	requireRoot(t)
	testkit.RequireScrapy(t)
	t.Parallel()
	private, err := os.MkdirTemp("", "tmp.")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(private) })
	root := filepath.Join(private, "root")
	out := failingStartIn(t, root, "")
	want := fmt.Sprintf("cannot reach the working directory (crawl_dir) %s/var/lib/scrapyd at %s (owner root:root, mode 0700): run `chmod o+x %s`",
		root, private, private)
	if !strings.Contains(out, `crawl user "scrapy" `+want) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("scrapyd printed %q\nwant one line with %q", out, want)
	}

	// `config check` is the same validation.
	check, err := exec.Command(filepath.Join(testkit.Binaries(t), "scrapyd"), "--root", root, "config", "check").CombinedOutput()
	if err == nil || !strings.Contains(string(check), want) {
		t.Errorf("config check: %v %q", err, check)
	}

	if err := os.Chmod(private, 0o711); err != nil { // the fix it printed
		t.Fatal(err)
	}
	d := testkit.StartDaemon(t, testkit.Options{Root: root})
	crawlCatalog(t, d, 2, "var/log/scrapyd")

	// The upload's own check: a staging directory the crawl user cannot
	// enter is one line, not a Python traceback.
	staging := d.Path("var/lib/scrapyd/eggs/.staging")
	os.MkdirAll(staging, 0o700)
	os.Chmod(staging, 0o700)
	r := d.Upload(t, "sample", "2.0", testkit.SampleEgg(t))
	msg, _ := r["message"].(string)
	if r["status"] != "error" || strings.Contains(msg, "Traceback") || !strings.Contains(msg, "at "+staging+" (owner root:root, mode 0700): run `chmod o+x "+staging+"`") {
		t.Errorf("upload with a private staging directory: %v", r)
	}
	os.Chmod(staging, 0o755)

	// A reload re-checks, and keeps the running configuration.
	os.Chmod(private, 0o700)
	syscall.Kill(d.PID(), syscall.SIGHUP)
	testkit.Eventually(t, 20*time.Second, "the reload refused", func() bool {
		return strings.Contains(d.Logs(), "configuration invalid; the running configuration stays") &&
			strings.Contains(d.Logs(), "run `chmod o+x "+private+"`")
	})
	os.Chmod(private, 0o711)
	if r := d.Get(t, "daemonstatus.json", nil); r["status"] != "ok" {
		t.Errorf("daemonstatus after a refused reload: %v", r)
	}
}

// TestMissingCrawlDirNamed: should the working directory vanish under a
// running daemon, the upload's error names it; Go alone blames the
// interpreter ("fork/exec /usr/bin/python3: no such file or directory"),
// which is what issue 13's user saw.
func TestMissingCrawlDirNamed(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{Conf: "crawl_dir = work"})
	work := d.Path("work")
	if err := os.Remove(work); err != nil {
		t.Fatalf("the daemon did not make crawl_dir at start: %v", err)
	}
	r := d.Upload(t, "sample", "1.0", testkit.SampleEgg(t))
	if msg, _ := r["message"].(string); r["status"] != "error" || !strings.Contains(msg, "working directory "+work+" (crawl_dir) does not exist") {
		t.Errorf("addversion with crawl_dir gone: %v", r)
	}
}
