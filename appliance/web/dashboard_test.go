package web_test

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

func TestDashboard(t *testing.T) {
	f := newFixture(t, "SCRAPYD_MAX_PROC=3")
	f.project(t, "sample", "catalog", "never<run>")
	f.jobWithStats(t, job.Spec{ID: "c1", Project: "sample", Spider: "catalog"}, job.Finished, job.OutcomeFinished, `{"item_scraped_count": 40}`)
	f.jobWithStats(t, job.Spec{ID: "c2", Project: "sample", Spider: "catalog"}, job.Finished, job.OutcomeFinished, `{"item_scraped_count": 10}`)
	f.job(t, job.Spec{ID: "c3<x>", Project: "sample", Spider: "catalog"}, job.Finished, job.OutcomeFailed)
	f.job(t, job.Spec{ID: "r1", Project: "sample", Spider: "catalog"}, job.Running, "")
	// A spider no deployed project lists (a [settings] project's) still
	// shows, from the history.
	f.job(t, job.Spec{ID: "o1", Project: "other", Spider: "gone"}, job.Finished, job.OutcomeLost)
	f.job(t, job.Spec{ID: "p1", Project: "sample", Spider: "catalog"}, job.Pending, "")
	f.job(t, job.Spec{ID: "p2", Project: "sample", Spider: "catalog"}, job.Pending, "")

	resp, body := f.get(t, "/dashboard")
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP %d\n%s", resp.StatusCode, body)
	}
	for _, want := range []string{
		`id="slots">1 / 3<`, `id="queue">2<`, `id="failures">2<`,
		`<a href="/jobs/sample/c3%3Cx%3E">c3&lt;x&gt;</a>`, // escaped, and the link reaches it
		`data-spider="sample/never&lt;run&gt;"`, `No finished runs.`,
		`data-spider="other/gone"`,
		`Items, most 40`, `Duration, longest 0:01:05`,
		`<a href="/dashboard">Dashboard</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the dashboard lacks %s", want)
		}
	}
	if strings.Contains(body, "<run>") || strings.Contains(body, "c3<x>") {
		t.Error("a name is not escaped")
	}
	// catalog: three runs, oldest first: c1 (40 items), c2 (10), c3 failed.
	card := body[strings.Index(body, `data-spider="sample/catalog"`):]
	card = card[:strings.Index(card, "</section>")]
	rects := regexp.MustCompile(`<rect class="(\w+)" x="\d+" y="\d+" width="\d+" height="(\d+)"><title>([^<]*)</title>`).FindAllStringSubmatch(card, -1)
	if len(rects) != 6 {
		t.Fatalf("catalog's charts have %d bars, want 3 + 3:\n%s", len(rects), card)
	}
	items := rects[3:]
	if items[0][1] != "finished" || items[2][1] != "failed" || items[0][2] != "58" || items[1][2] != "14" || items[2][2] != "2" ||
		!strings.Contains(items[0][3], "c1: finished, 0:01:05, 40 items") || !strings.Contains(items[2][3], "items unknown") {
		t.Errorf("catalog's item bars %q", items)
	}
	if !strings.Contains(card, "2 of 3 finished") {
		t.Errorf("catalog's card:\n%s", card)
	}
}

func TestDashboardNeedsAuth(t *testing.T) {
	f := newFixture(t, "SCRAPYD_USERNAME=u", "SCRAPYD_PASSWORD=p")
	if resp, _ := f.get(t, "/dashboard"); resp.StatusCode != 401 {
		t.Errorf("/dashboard without credentials: HTTP %d", resp.StatusCode)
	}
}

// TestDashboardInBrowser: after real crawls (two that finish, one that
// fails), the dashboard at a laptop's and a phone's width shows the
// failure and each spider's bars, with nothing running off the edge.
func TestDashboardInBrowser(t *testing.T) {
	testkit.RequireScrapy(t)
	ctx := newBrowser(t)
	d := testkit.StartDaemon(t, testkit.Options{})
	if r := d.Upload(t, "sample", "1.0", testkit.SampleEgg(t)); r["status"] != "ok" {
		t.Fatalf("upload: %v", r)
	}
	for i, form := range []url.Values{
		{"project": {"sample"}, "spider": {"params"}, "limit": {"3"}},
		{"project": {"sample"}, "spider": {"params"}, "limit": {"7"}},
		{"project": {"sample"}, "spider": {"failing"}},
	} {
		if r := d.Post(t, "schedule.json", form); r["status"] != "ok" {
			t.Fatalf("schedule %d: %v", i, r)
		}
	}
	testkit.Eventually(t, 3*time.Minute, "the crawls finished", func() bool {
		fin, _ := d.Get(t, "listjobs.json", url.Values{"project": {"sample"}})["finished"].([]any)
		return len(fin) == 3
	})
	for _, size := range []struct {
		name          string
		width, height int64
		mobile        bool
	}{{"1280", 1280, 900, false}, {"phone", 390, 844, true}} {
		opts := []chromedp.EmulateViewportOption{}
		if size.mobile {
			opts = append(opts, chromedp.EmulateMobile)
		}
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(size.width, size.height, opts...),
			chromedp.Navigate(d.URL+"/"), chromedp.WaitVisible(chromedp.CSS("nav.top")),
			chromedp.Click(chromedp.CSS(`nav.top a[href="/dashboard"]`)), chromedp.WaitVisible(chromedp.ID("spiders"))); err != nil {
			t.Fatal(err)
		}
		screenshot(t, ctx, "20-dashboard-"+size.name+".png")
		l := measureLayout(t, ctx)
		if l.ScrollWidth > l.ClientWidth {
			t.Errorf("dashboard at %s: the page is %dpx wide in a %dpx window", size.name, l.ScrollWidth, l.ClientWidth)
		}
		type shown struct {
			Params, Failing []string
			Failures        int
			ChartWidth      float64
		}
		seen, err := chromedp.Run(ctx, chromedp.Evaluate[shown](`(() => {
  const bars = s => Array.from(document.querySelectorAll('[data-spider="' + s + '"] figure:first-of-type rect')).map(r => r.getAttribute("class"));
  const svg = document.querySelector('[data-spider="sample/params"] svg');
  return { Params: bars("sample/params"), Failing: bars("sample/failing"),
    Failures: document.querySelectorAll("#failed tbody tr").length, ChartWidth: svg ? svg.getBoundingClientRect().width : 0 };
})()`))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(seen.Params, " ") != "finished finished" || strings.Join(seen.Failing, " ") != "failed" || seen.Failures != 1 || seen.ChartWidth < 200 {
			t.Errorf("dashboard at %s shows %+v", size.name, seen)
		}
	}
}

// BenchmarkDashboard: 40 spiders with 100 finished runs each (4,000 in
// the history); the page reads 20 per spider.
func BenchmarkDashboard(b *testing.B) {
	f := newFixture(b)
	var spiders []string
	for s := range 40 {
		spiders = append(spiders, "spider"+strconv.Itoa(s))
	}
	f.project(b, "sample", spiders...)
	for i := range 100 {
		for _, s := range spiders {
			f.jobWithStats(b, job.Spec{ID: s + "-" + strconv.Itoa(i), Project: "sample", Spider: s}, job.Finished, job.OutcomeFinished, `{"item_scraped_count": 5}`)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if resp, _ := f.get(b, "/dashboard"); resp.StatusCode != 200 {
			b.Fatal(resp.StatusCode)
		}
	}
}
