package web_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
