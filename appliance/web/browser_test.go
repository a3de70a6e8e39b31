package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// chromium is Debian's package (packaging/test-deps.sh installs it).
const chromium = "/usr/bin/chromium"

// newBrowser starts a headless Chromium with a fresh profile and nothing
// that would reach the network, and accepts every confirm() dialog (the
// cancel buttons ask "Are you sure?").
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing: run packaging/test-deps.sh", chromium)
		}
		t.Skipf("%s is missing (apt-get install chromium): browser tests skipped", chromium)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true))
	browser, cancelBrowser := chromedp.NewContext(alloc)
	// The first call starts the browser for the browser context's life, so
	// it gets no timeout; the test's actions run under one.
	if err := chromedp.Do(browser); err != nil {
		t.Fatal(err)
	}
	ctx, cancelTimeout := context.WithTimeout(browser, 4*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelBrowser(); cancelAlloc() })
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return ctx
}

// artifact is where screenshots go (gitignored; CI keeps them).
func artifact(t *testing.T, name string) string {
	dir := filepath.Join(testkit.RepoRoot(), "appliance", "e2e", "artifacts", "web")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(artifact(t, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// text returns an element's text, "" when it is not there.
func text(t *testing.T, ctx context.Context, js string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// schedule fills the project page's form and submits it; it returns the
// job page's URL the form redirected to.
func schedule(t *testing.T, ctx context.Context, d *testkit.Daemon, args string) string {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Navigate(d.URL+"/projects/sample"),
		chromedp.SetValue(chromedp.CSS(`select[name=spider]`), "slow"),
		chromedp.SetValue(chromedp.CSS(`textarea[name=args]`), args),
		chromedp.SetValue(chromedp.CSS(`textarea[name=settings]`), "LOG_LEVEL=INFO"),
		chromedp.Click(chromedp.ID("schedule")),
	)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "the job page after scheduling", func() bool {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		return strings.HasPrefix(loc, d.URL+"/jobs/sample/")
	})
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("log"))); err != nil {
		t.Fatal(err)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if !strings.HasPrefix(loc, d.URL+"/jobs/sample/") {
		t.Fatalf("the form led to %s, not a job page", loc)
	}
	return loc
}

// TestBrowser drives the pages in Chromium against the real daemon with
// real crawls: schedule from the form, watch the log arrive live and the
// outcome appear, cancel from the page; and reads /jobs and /logs/ with
// ScrapydWeb's patterns.
func TestBrowser(t *testing.T) {
	testkit.RequireScrapy(t)
	ctx := newBrowser(t)
	d := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 2"})
	if r := d.Upload(t, "sample", "1.0", testkit.SampleEgg(t)); r["status"] != "ok" {
		t.Fatalf("upload: %v", r)
	}

	// A short crawl, followed from its page until it ends.
	jobURL := schedule(t, ctx, d, "pages=15")
	screenshot(t, ctx, "01-job-scheduled.png")
	// A marker that a reload would lose: the lines must come in by the stream.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.notReloaded = true`)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 2*time.Minute, "log lines arriving on the job page", func() bool {
		return strings.Count(text(t, ctx, `document.getElementById("log").textContent`), "slow page") >= 3
	})
	screenshot(t, ctx, "02-job-live-log.png")
	testkit.Eventually(t, 2*time.Minute, "the outcome on the job page", func() bool {
		return strings.Contains(text(t, ctx, `document.getElementById("outcome").textContent`), "Job finished (exit code 0)")
	})
	if text(t, ctx, `String(window.notReloaded)`) != "true" {
		t.Error("the page reloaded; the log should arrive live")
	}
	if logText := text(t, ctx, `document.getElementById("log").textContent`); !strings.Contains(logText, "slow page 14") ||
		!strings.Contains(logText, "Spider closed (finished)") {
		t.Errorf("the live log misses the end of the crawl:\n%s", logText)
	}
	if got := text(t, ctx, `document.querySelector("[data-field=items]").textContent`); got != "15" {
		t.Errorf("items %q, want 15", got)
	}
	screenshot(t, ctx, "03-job-finished.png")
	finishedID := jobURL[strings.LastIndex(jobURL, "/")+1:]

	// A long crawl, cancelled from its page once it runs.
	jobURL = schedule(t, ctx, d, "pages=100000")
	testkit.Eventually(t, 2*time.Minute, "the long crawl logging", func() bool {
		return strings.Contains(text(t, ctx, `document.getElementById("log").textContent`), "slow page 2")
	})
	// Its item count is the crawl's own, from its live stats (the feed
	// file lags behind, buffered), and it keeps up while the crawl runs.
	const liveItems = `(() => { const row = Array.from(document.querySelectorAll("#stats tr")).find(tr => tr.cells[0].textContent === "item_scraped_count");
  return JSON.stringify([document.querySelector("[data-field=items]").textContent, row ? row.cells[1].textContent : ""]); })()`
	testkit.Eventually(t, 2*time.Minute, "the running crawl's item count from its live stats", func() bool {
		var got [2]string
		json.Unmarshal([]byte(text(t, ctx, liveItems)), &got)
		n, err := strconv.Atoi(got[0])
		return err == nil && n >= 3 && got[0] == got[1]
	})
	screenshot(t, ctx, "03b-job-running-stats.png")
	// Live stats through the crawl web service keep integers whole.
	if page := text(t, ctx, "document.body.innerText"); !regexp.MustCompile(`memusage/max\s+\d{7,}\b`).MatchString(page) ||
		regexp.MustCompile(`\de[+-]\d`).MatchString(page) {
		t.Errorf("the running crawl's page shows memusage/max in scientific notation or not at all:\n%s", page)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`form.cancel button`))); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 2*time.Minute, "the cancelled outcome", func() bool {
		return strings.Contains(text(t, ctx, `(document.getElementById("outcome")||{}).textContent||""`), "Job cancelled")
	})
	screenshot(t, ctx, "04-job-cancelled.png")
	cancelledID := jobURL[strings.LastIndex(jobURL, "/")+1:]

	// Scrapyd's /jobs, read as ScrapydWeb reads it.
	body := fetch(t, d.URL+"/jobs")
	found := map[string]map[string]string{}
	for _, m := range jobRe.FindAllStringSubmatch(body, -1) {
		row := named(jobRe, m)
		found[row["Job"]] = row
	}
	for _, id := range []string{finishedID, cancelledID} {
		row, ok := found[id]
		if !ok || row["Start"] == "" || row["Finish"] == "" || !strings.Contains(row["Log"], "/logs/sample/slow/"+id+".log") {
			t.Errorf("/jobs row for %s: %v", id, row)
		}
	}
	listing := fetch(t, d.URL+"/logs/sample/slow/")
	if n := len(pythonRows(t, listing)); n != 2 {
		t.Errorf("/logs/sample/slow/ has %d rows DIRECTORY_PATTERN reads, want 2:\n%s", n, listing)
	}

	// The people's list, at a phone's width.
	err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(d.URL+"/browse?project=sample"), chromedp.WaitVisible(chromedp.CSS(`table.list`)))
	if err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "05-browse-phone.png")
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL+"/jobs"), chromedp.WaitVisible(chromedp.ID("jobs"))); err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "06-scrapyd-jobs-phone.png")
}

func fetch(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// longStat is a stat name as long as extensions make them (Spidermon's
// are of this kind), recorded by the sample spider with an 8-digit value.
const longStat = "spidermon/validation/fields/errors/missing_required_field/product_price_including_tax"

// layout is what a person would judge on a page: does anything run off
// the right edge, is a number in scientific notation, and how many lines
// the texts of interest take.
type layout struct {
	ScrollWidth, ClientWidth int
	SciNotation              bool
	ValueLines               int            // lines of the long stat's value
	NameLines                int            // lines of the long stat's name
	NameSegments             int            // its "/"-separated parts
	Broken                   map[string]int // badge or spider name text → its lines, when more than one
}

const measure = `(() => {
  const lines = el => { const r = document.createRange(); r.selectNodeContents(el);
    return new Set(Array.from(r.getClientRects()).filter(x => x.width > 0).map(x => Math.round(x.top))).size; };
  const out = { ScrollWidth: document.documentElement.scrollWidth, ClientWidth: document.documentElement.clientWidth,
    SciNotation: /\de[+-]\d/i.test(document.body.innerText), ValueLines: 0, NameLines: 0, NameSegments: 0, Broken: {} };
  for (const tr of document.querySelectorAll("#stats tr")) {
    if (tr.cells[0] && tr.querySelector("th").textContent === %q) {
      out.NameLines = lines(tr.querySelector("th")); out.ValueLines = lines(tr.querySelector("td"));
      out.NameSegments = tr.querySelector("th").textContent.split("/").length;
    }
  }
  for (const el of document.querySelectorAll(".badge, table.list td[data-label=Spider], table.list td[data-label=Project] a")) {
    const n = lines(el); if (n > 1) out.Broken[el.textContent] = n;
  }
  return out;
})()`

func measureLayout(t *testing.T, ctx context.Context) layout {
	t.Helper()
	l, err := chromedp.Run(ctx, chromedp.Evaluate[layout](fmt.Sprintf(measure, longStat)))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestJobPageReadable opens the pages of a real finished crawl whose stats
// hold a long name and 8-digit values (the spider's and Scrapy's own
// memusage/max) at a laptop's and a phone's width: nothing runs off the
// edge, no number is in scientific notation, a number stays on one line
// and a name breaks only between its parts; badges and spider names are
// never broken. The screenshots are for a person to look at.
func TestJobPageReadable(t *testing.T) {
	testkit.RequireScrapy(t)
	ctx := newBrowser(t)
	d := testkit.StartDaemon(t, testkit.Options{})
	if r := d.Upload(t, "sample", "1.0", testkit.SampleEgg(t)); r["status"] != "ok" {
		t.Fatalf("upload: %v", r)
	}
	r := d.Post(t, "schedule.json", url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {"stats-1"},
		"stat": {longStat}, "stat_value": {"12345678"}, "limit": {"3"}})
	if r["status"] != "ok" {
		t.Fatalf("schedule: %v", r)
	}
	// And one with a generated id, 32 hex digits that the lists must fit.
	if r := d.Post(t, "schedule.json", url.Values{"project": {"sample"}, "spider": {"params"}}); r["status"] != "ok" {
		t.Fatalf("schedule: %v", r)
	}
	testkit.Eventually(t, 3*time.Minute, "the crawls finished", func() bool {
		fin, _ := d.Get(t, "listjobs.json", url.Values{"project": {"sample"}})["finished"].([]any)
		return len(fin) == 2
	})
	for _, size := range []struct {
		name          string
		width, height int64
		mobile        bool
	}{{"1280", 1280, 900, false}, {"tablet", 800, 1000, false}, {"phone", 390, 844, true}} {
		opts := []chromedp.EmulateViewportOption{}
		if size.mobile {
			opts = append(opts, chromedp.EmulateMobile)
		}
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(size.width, size.height, opts...)); err != nil {
			t.Fatal(err)
		}
		for _, p := range []struct{ name, path, ready string }{
			{"job", "/jobs/sample/stats-1", "#stats"},
			{"project", "/projects/sample", "table.list"},
			{"home", "/", "main"},
			{"jobs", "/jobs", "#jobs"},
		} {
			if err := chromedp.Do(ctx, chromedp.Navigate(d.URL+p.path), chromedp.WaitVisible(chromedp.CSS(p.ready))); err != nil {
				t.Fatal(err)
			}
			screenshot(t, ctx, "10-"+p.name+"-"+size.name+".png")
			l := measureLayout(t, ctx)
			where := p.path + " at " + size.name
			if l.ScrollWidth > l.ClientWidth {
				t.Errorf("%s: the page is %dpx wide in a %dpx window", where, l.ScrollWidth, l.ClientWidth)
			}
			if l.SciNotation {
				t.Errorf("%s: a number in scientific notation:\n%s", where, text(t, ctx, "document.body.innerText"))
			}
			if len(l.Broken) > 0 {
				t.Errorf("%s: broken over lines: %v", where, l.Broken)
			}
			if p.name != "job" {
				continue
			}
			if l.ValueLines != 1 || l.NameLines < 1 || l.NameLines > l.NameSegments {
				t.Errorf("%s: the long stat's value takes %d lines (want 1), its name %d (at most %d, one per part)",
					where, l.ValueLines, l.NameLines, l.NameSegments)
			}
			page := text(t, ctx, "document.body.innerText")
			if !strings.Contains(page, "12345678") || !regexp.MustCompile(`memusage/max\s+\d{7,}\b`).MatchString(page) {
				t.Errorf("%s: no 12345678 or no integer memusage/max:\n%s", where, page)
			}
		}
	}
}
