package dispatch

import (
	"reflect"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/launch"
)

// TestSandbox: a crawl writes only its own per-spider directories and
// Scrapy's cache, and reads no egg but its own, nor the job database.
func TestSandbox(t *testing.T) {
	cfg := &config.Config{
		Root: "/", EggsDir: "/var/lib/scrapyd/eggs", DbsDir: "/var/lib/scrapyd/dbs", CrawlDir: "/var/lib/scrapyd",
		LogsDir: "/var/log/scrapyd", ItemsDir: "/var/lib/scrapyd/items", JobsDir: "/var/lib/scrapyd/jobs",
		CrawlWritablePaths: []string{"/srv/exports"},
	}
	egg := "/var/lib/scrapyd/eggs/p/r1.egg"
	got := sandbox(cfg, jobfiles.Of(cfg, "p", "s", "j1"), egg)
	want := launch.Sandbox{
		Writable: []string{"/var/lib/scrapyd/.scrapy", "/var/log/scrapyd/p/s", "/var/lib/scrapyd/items/p/s", "/var/lib/scrapyd/jobs/p/s/j1"},
		Optional: []string{"/srv/exports"},
		Hidden:   []string{"/var/lib/scrapyd/eggs", "/var/lib/scrapyd/dbs"},
		Exposed:  []string{egg},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sandbox =\n %+v\nwant\n %+v", got, want)
	}

	// No logs, a remote items feed, no JOBDIR, a [settings] project (no egg).
	cfg.LogsDir, cfg.ItemsDir, cfg.JobsDir, cfg.CrawlWritablePaths = "", "s3://bucket/items", "", nil
	got = sandbox(cfg, jobfiles.Of(cfg, "p", "s", "j1"), "")
	want = launch.Sandbox{
		Writable: []string{"/var/lib/scrapyd/.scrapy"},
		Hidden:   []string{"/var/lib/scrapyd/eggs", "/var/lib/scrapyd/dbs"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sandbox without local files =\n %+v\nwant\n %+v", got, want)
	}
}
