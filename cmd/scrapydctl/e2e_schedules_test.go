package main

import (
	"context"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/client"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestBulkAndSchedules drives issue 16's commands against the real
// daemon and real Scrapy: schedule by glob, bulk cancel, rerun with the
// same arguments and settings, and the schedules subcommands.
func TestBulkAndSchedules(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	testkit.RequireScrapy(t)
	d := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 1"})
	if r := d.Upload(t, "sample", "r1", testkit.SampleEgg(t)); r["status"] != "ok" {
		t.Fatal(r)
	}
	t.Setenv("NETRC", filepath.Join(t.TempDir(), "none"))
	u := "--url=" + d.URL
	c, err := client.New(d.URL, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctl := func(args ...string) string {
		t.Helper()
		out, stderr, err := scrapydctl(t, append(args, u)...)
		if err != nil {
			t.Fatalf("scrapydctl %s: %v\n%s\n%s", strings.Join(args, " "), err, out, stderr)
		}
		return out
	}
	jobs := func() client.Jobs {
		t.Helper()
		j, err := c.ListJobs(context.Background(), "sample")
		if err != nil {
			t.Fatal(err)
		}
		return j
	}

	// A long crawl holds the only slot; a glob queues params and slow.
	hold := strings.TrimSpace(ctl("schedule", "sample", "slow"))
	out := ctl("schedule", "-p", "sample", "[ps]*", "-a", "pages=1")
	if !regexp.MustCompile(`(?m)^params +[0-9a-f]{32}$`).MatchString(out) || !regexp.MustCompile(`(?m)^slow +[0-9a-f]{32}$`).MatchString(out) {
		t.Fatalf("schedule '[ps]*' printed %q, want a job of params and of slow", out)
	}
	if _, _, err := scrapydctl(t, "schedule", "sample", "nomatch*", u); err == nil || !strings.Contains(err.Error(), `matches "nomatch*"`) {
		t.Fatalf("a glob matching nothing: %v", err)
	}
	testkit.Eventually(t, 60*time.Second, "the long crawl running", func() bool { return len(jobs().Running) == 1 })
	// Bulk: only the pending slow job, then everything else.
	if out := ctl("cancel", "-p", "sample", "--spider", "slow", "--state", "pending"); !strings.Contains(out, "cancelled 1 job(s)") {
		t.Fatalf("bulk cancel of pending slow jobs printed %q", out)
	}
	if l := jobs(); len(l.Pending) != 1 || l.Pending[0].Spider != "params" || len(l.Running) != 1 || l.Running[0].ID != hold {
		t.Fatalf("after cancelling the pending slow job: %+v", l)
	}
	if out := ctl("cancel", "-p", "sample"); !strings.Contains(out, "cancelled 2 job(s)") {
		t.Fatalf("bulk cancel printed %q", out)
	}
	testkit.Eventually(t, 60*time.Second, "nothing pending or running", func() bool {
		l := jobs()
		return len(l.Pending) == 0 && len(l.Running) == 0
	})

	// Rerun: the same spider, arguments, settings and version.
	first := strings.TrimSpace(ctl("schedule", "sample", "params", "-a", "category=books", "-s", "SAMPLE_GREETING=hi", "--version", "r1"))
	testkit.Eventually(t, 60*time.Second, "the first run finished", func() bool {
		st, _ := c.Status(context.Background(), first, "sample")
		return st.State == "finished"
	})
	again := strings.TrimSpace(ctl("rerun", first))
	var rerun client.Job
	testkit.Eventually(t, 60*time.Second, "the rerun listed", func() bool {
		rerun, err = c.FindJob(context.Background(), "sample", again)
		return err == nil
	})
	if rerun.Spider != "params" || rerun.Args["category"] != "books" || rerun.Settings["SAMPLE_GREETING"] != "hi" || rerun.Version != "r1" {
		t.Fatalf("rerun %+v lost the spider, arguments, settings or version", rerun)
	}

	// Schedules: add, list, pause, resume, rm.
	out = ctl("schedules", "add", "sample", "params", "--cron", "0 3 * * *", "--timezone", "Europe/Paris", "--retries", "2", "-a", "category=news")
	id := strings.SplitN(out, "\n", 2)[0]
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) || !strings.Contains(out, "next run: ") {
		t.Fatalf("schedules add printed %q", out)
	}
	if _, _, err := scrapydctl(t, "schedules", "add", "sample", "params", "--cron", "0 3 * *", u); err == nil ||
		!strings.Contains(err.Error(), "has 4 fields, expected 5") {
		t.Fatalf("a bad cron: %v", err)
	}
	ctl("schedules", "pause", "sample", id)
	if out := ctl("schedules", "list", "-p", "sample"); !strings.Contains(out, id) || !strings.Contains(out, "0 3 * * * (Europe/Paris)") || !strings.Contains(out, "paused by a user") {
		t.Fatalf("schedules list printed %q", out)
	}
	ctl("schedules", "resume", "-p", "sample", id)
	list, err := c.ListSchedules(context.Background(), "sample")
	if err != nil || len(list) != 1 || list[0].Paused || list[0].NextRun == "" || list[0].Args["category"] != "news" || list[0].Retries != 2 {
		t.Fatalf("after resume: %+v (%v)", list, err)
	}
	ctl("schedules", "rm", "sample", id)
	if list, _ := c.ListSchedules(context.Background(), ""); len(list) != 0 {
		t.Fatalf("after rm: %+v", list)
	}
	if r := d.Post(t, "delschedule.json", url.Values{"project": {"sample"}, "schedule": {id}}); r["message"] != "schedule '"+id+"' not found in project 'sample'" {
		t.Fatalf("deleting it again: %v", r)
	}
}
