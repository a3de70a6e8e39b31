package jobfiles

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
)

// TestLayout: Scrapyd's layout, so an existing Scrapyd data directory and
// the tools that read it (ScrapydWeb, LogParser) keep working.
func TestLayout(t *testing.T) {
	cfg := &config.Config{LogsDir: "/l", ItemsDir: "file:///i", JobsDir: "/j"}
	got := Of(cfg, "p", "s", "id")
	want := Paths{Log: "/l/p/s/id.log", Items: "/i/p/s/id.jl", JobDir: "/j/p/s/id"}
	if got != want {
		t.Errorf("Of = %+v, want %+v", got, want)
	}
	cfg = &config.Config{ItemsDir: "s3://bucket/items/?region=eu"}
	if got := Of(cfg, "p", "s", "id"); got != (Paths{Feed: "s3://bucket/items/p/s/id.jl?region=eu"}) {
		t.Errorf("remote items: %+v", got)
	}
	if l, i := URLs(cfg, "p", "s", "id"); l != "" || i != "" {
		t.Errorf("no logs_dir and a remote items_dir are not served, got %q %q", l, i)
	}
}

// TestURLsEscaped: every name that job.CheckName allows gives a link that
// decodes back to the file's own path (issue 13 point 10). Scrapyd builds
// the links unescaped (scrapyd/utils.py:
//
//	def job_log_url(job):
//	    return f"/logs/{job.project}/{job.spider}/{job.job}.log"
//
// ), so a `#` or `?` in a job id cut its link short; for plain names the
// links are the same bytes as Scrapyd's.
func TestURLsEscaped(t *testing.T) {
	cfg := &config.Config{LogsDir: "/l", ItemsDir: "/i"}
	if l, i := URLs(cfg, "shop", "catalog", "0a1b-2c_3.x"); l != "/logs/shop/catalog/0a1b-2c_3.x.log" || i != "/items/shop/catalog/0a1b-2c_3.x.jl" {
		t.Errorf("plain names: %q %q, want Scrapyd's links", l, i)
	}
	for _, name := range []string{"plain", "a b", "100%", "x#y", "why?", "%2F", "é ü", "a+b&c=d;e"} {
		logURL, itemsURL := URLs(cfg, name, "s "+name, "j"+name)
		for _, u := range []string{logURL, itemsURL} {
			parsed, err := url.Parse("http://h" + u)
			if err != nil {
				t.Fatalf("%q: %v", u, err)
			}
			if parsed.RawQuery != "" || parsed.Fragment != "" {
				t.Errorf("%q: the name leaks into the query or fragment", u)
			}
		}
		// LogParser's JSON sits beside the log, escaped the same way.
		if want := strings.TrimSuffix(logURL, ".log") + ".json"; LogParserURL(cfg, name, "s "+name, "j"+name) != want {
			t.Errorf("LogParserURL = %q, want %q", LogParserURL(cfg, name, "s "+name, "j"+name), want)
		}
		p := Of(cfg, name, "s "+name, "j"+name)
		for _, c := range []struct{ link, prefix, file, root string }{{logURL, "/logs", p.Log, "/l"}, {itemsURL, "/items", p.Items, "/i"}} {
			path, err := url.PathUnescape(c.link[len(c.prefix):])
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Join(c.root, path) != c.file {
				t.Errorf("%q decodes to %q, the file is %q", c.link, path, c.file)
			}
		}
	}
}

// TestIndex: listjobs.json links only files that exist.
func TestIndex(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{LogsDir: filepath.Join(dir, "logs"), ItemsDir: filepath.Join(dir, "items")}
	p := Of(cfg, "p q", "s", "a#1")
	os.MkdirAll(filepath.Dir(p.Log), 0o755)
	os.WriteFile(p.Log, nil, 0o644)
	ix := NewIndex()
	if l, i := ix.URLs(cfg, "p q", "s", "a#1"); l != "/logs/p%20q/s/a%231.log" || i != "" {
		t.Errorf("log only: %q %q", l, i)
	}
	if l, i := ix.URLs(cfg, "p q", "s", "b"); l != "" || i != "" {
		t.Errorf("no files: %q %q", l, i)
	}
}
