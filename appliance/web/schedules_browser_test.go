package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestBrowserSchedules: a schedule added from the project page's form
// (Repeat) and one made through the API show on the Schedules page with
// their next and last runs and their last runs' outcomes as coloured
// marks; Pause and Resume work from the page; a cross-site post is
// refused. Screenshots go to the artifacts directory.
func TestBrowserSchedules(t *testing.T) {
	testkit.RequireScrapy(t)
	ctx := newBrowser(t)
	d := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 2"})
	if r := d.Upload(t, "sample", "r1", testkit.SampleEgg(t)); r["status"] != "ok" {
		t.Fatal(r)
	}
	err := chromedp.Do(ctx,
		chromedp.Navigate(d.URL+"/projects/sample"),
		chromedp.SetValue(chromedp.CSS(`select[name=spider]`), "params"),
		chromedp.SetValue(chromedp.CSS(`textarea[name=args]`), "category=books"),
		chromedp.Click(chromedp.CSS(`details summary`)),
		chromedp.SetValue(chromedp.ID("repeat"), "3s"),
		chromedp.Click(chromedp.ID("schedule")),
	)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "the Schedules page after adding", func() bool {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		return loc == d.URL+"/schedules"
	})
	r := d.Post(t, "addschedule.json", url.Values{"project": {"sample"}, "spider": {"failing"}, "cron": {"@every 3s"}})
	if r["status"] != "ok" {
		t.Fatal(r)
	}
	failing := r["schedule"].(string)
	// Both have finished a few runs: green marks and red ones.
	testkit.Eventually(t, 3*time.Minute, "three finished runs of each", func() bool {
		l := d.Get(t, "listjobs.json", url.Values{"project": {"sample"}, "state": {"finished"}})
		n := map[string]int{}
		for _, e := range l["finished"].([]any) {
			n[e.(map[string]any)["spider"].(string)]++
		}
		return n["params"] >= 3 && n["failing"] >= 3
	})
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL+"/schedules"), chromedp.WaitVisible(chromedp.ID("schedules"))); err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "schedules.png")
	if n := text(t, ctx, `String(document.querySelectorAll("#s-`+failing+` .mark.failed").length)`); n == "0" || n == "1" || n == "2" {
		t.Errorf("the failing schedule shows %s red marks, want at least 3", n)
	}
	if n := text(t, ctx, `String(document.querySelectorAll("#schedules tr:not(#s-`+failing+`) .mark.finished").length)`); n == "0" || n == "" {
		t.Errorf("the params schedule shows no green mark")
	}
	if got := text(t, ctx, `document.querySelector("nav.top a[href$='/schedules']") ? "yes" : ""`); got != "yes" {
		t.Errorf("the navigation has no Schedules link")
	}
	if got := text(t, ctx, `document.querySelector("#s-`+failing+` td[data-label=When]").innerText`); !strings.Contains(got, "@every 3s") {
		t.Errorf("When shows %q", got)
	}
	if got := text(t, ctx, `document.querySelector("#schedules tr:not(#s-`+failing+`) td[data-label=Spider]").innerText`); !strings.Contains(got, "category=books") {
		t.Errorf("the form's schedule lost its arguments: %q", got)
	}

	// Pause from the page, then resume.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#s-`+failing+` button.pause`)), chromedp.WaitVisible(chromedp.CSS(`#s-`+failing+` button.resume`))); err != nil {
		t.Fatal(err)
	}
	if got := text(t, ctx, `document.querySelector("#s-`+failing+` td[data-label=State]").innerText`); !strings.Contains(got, "paused by a user") {
		t.Errorf("after Pause the state reads %q", got)
	}
	l := d.Get(t, "listschedules.json", url.Values{"project": {"sample"}})
	for _, e := range l["schedules"].([]any) {
		if m := e.(map[string]any); m["id"] == failing && m["paused"] != true {
			t.Errorf("the page's Pause did not pause it: %v", m)
		}
	}
	screenshot(t, ctx, "schedules-paused.png")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#s-`+failing+` button.resume`)), chromedp.WaitVisible(chromedp.CSS(`#s-`+failing+` button.pause`))); err != nil {
		t.Fatal(err)
	}

	// Another site's form cannot pause it.
	req, _ := http.NewRequest(http.MethodPost, d.URL+"/schedules/sample/"+failing+"/pause", nil)
	req.Header.Set("Origin", "http://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site post answered %d, want 403", resp.StatusCode)
	}
}
