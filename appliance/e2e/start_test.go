package e2e

import (
	"net/url"
	"os"
	"path/filepath"
	"testing"

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
	d := testkit.StartDaemon(t, testkit.Options{ScrapydWay: true, Conf: scrapydWayConf})
	if r := d.Upload(t, "sample", "1.0", testkit.SampleEgg(t)); r["status"] != "ok" || r["spiders"] != 4.0 {
		t.Fatalf("addversion: %v\n%s", r, d.Logs())
	}
	id := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"catalog"}, "url": {testkit.Site(t, 4)}})
	if fin := waitState(t, d, id, "finished"); fin["outcome"] != "finished" {
		t.Fatalf("crawl: %v\n%s\n%s", fin, readFile(d.Path("logs/sample/catalog", id+".log")), d.Logs())
	}
	if items := readItems(t, d.Path("items/sample/catalog", id+".jl")); len(items) != 4 {
		t.Errorf("%d items, want 4", len(items))
	}
	// Scrapy's data directory (.scrapy) is made in the working directory.
	if _, err := os.Stat(filepath.Join(d.Root, ".scrapy")); err != nil {
		t.Errorf("crawls did not run in the daemon's working directory: %v", err)
	}
}
