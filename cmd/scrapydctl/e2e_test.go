package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/client"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestEndToEnd drives every scrapydctl command against the real daemon
// running real Scrapy: deploy with GIT and HG versions, schedule, follow a
// slow crawl's log, the crawl web service, cancel, and deletion.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	testkit.RequireScrapy(t)
	needTool(t, "git", "--version")
	needTool(t, "hg", "--version")
	d := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 2"})
	t.Setenv("NETRC", filepath.Join(t.TempDir(), "none"))
	url := "--url=" + d.URL
	c, err := client.New(d.URL, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctl := func(args ...string) string {
		t.Helper()
		out, stderr, err := scrapydctl(t, args...)
		if err != nil {
			t.Fatalf("scrapydctl %s: %v\n%s\n%s\ndaemon:\n%s", strings.Join(args, " "), err, out, stderr, d.Logs())
		}
		return out
	}
	waitState := func(id string, want job.State) {
		t.Helper()
		testkit.Eventually(t, 60*time.Second, "job "+id+" "+string(want), func() bool {
			st, err := c.Status(context.Background(), id, "sample")
			return err == nil && st.State == want
		})
	}

	// Deploy twice from repositories: the version names come from them.
	cfg := "[settings]\ndefault = sample.settings\n[deploy]\nurl = " + d.URL + "/\nproject = sample\n"
	gitDir := copyProject(t)
	writeFile(t, filepath.Join(gitDir, "scrapy.cfg"), cfg)
	sh(t, gitDir, "git", "init", "-q", "-b", "main")
	sh(t, gitDir, "git", "add", ".")
	sh(t, gitDir, "git", "commit", "-q", "-m", "sample")
	t.Chdir(gitDir)
	if out := ctl("deploy", "--version", "GIT"); !strings.Contains(out, `"version": "r1-main"`) || !strings.Contains(out, `"spiders": 4`) {
		t.Fatalf("deploy GIT answered %s", out)
	}
	hgDir := copyProject(t)
	writeFile(t, filepath.Join(hgDir, "scrapy.cfg"), cfg)
	sh(t, hgDir, "hg", "init")
	sh(t, hgDir, "hg", "add", "-q")
	sh(t, hgDir, "hg", "commit", "-m", "sample")
	t.Chdir(hgDir)
	ctl("deploy", "--version", "HG")
	if out := ctl("deploy", "-L", "default"); out != "sample\n" {
		t.Errorf("deploy -L: %q", out)
	}

	// From here the scrapy.cfg's default target addresses the daemon.
	if out := ctl("projects"); out != "sample\n" {
		t.Errorf("projects: %q", out)
	}
	// The daemon orders versions by name, not by upload time.
	if out := ctl("versions", "sample"); out != "r0-default\nr1-main\n" {
		t.Errorf("versions: %q", out)
	}
	if out := ctl("versions", "-p", "sample"); out != "r0-default\nr1-main\n" {
		t.Errorf("versions -p: %q", out)
	}

	// A project whose settings fail to import: the daemon refuses it with
	// Scrapy's traceback, which scrapydctl prints once (main prints err).
	brokenDir := copyProject(t)
	writeFile(t, filepath.Join(brokenDir, "sample", "settings.py"), "raise ImportError('settings-cannot-import')\n")
	t.Chdir(brokenDir)
	out, stderr, err := scrapydctl(t, "deploy", "--url", d.URL, "-p", "broken", "--version", "1")
	if all := out + stderr + "scrapydctl: " + fmt.Sprint(err); err == nil || exitStatus(err) != exitFailed ||
		strings.Count(all, "settings-cannot-import") != 1 {
		t.Errorf("a refused deploy: %v (status %d); printed:\n%s", err, exitStatus(err), all)
	}
	t.Chdir(hgDir)
	if out := ctl("projects"); out != "sample\n" {
		t.Errorf("projects after a refused deploy: %q", out)
	}
	if out := ctl("spiders", "sample", "--version", "r1-main"); out != "catalog\nfailing\nparams\nslow\n" {
		t.Errorf("spiders: %q", out)
	}

	// A short crawl: its items carry the egg's package data.
	params := strings.TrimSpace(ctl("schedule", "sample", "params", "-a", "limit=2", "-s", "SAMPLE_GREETING=hi", url))
	waitState(params, job.Finished)
	// log and items read the daemon's /logs/ and /items/; a failure there
	// must not hide what the rest of the test finds, so it is not fatal.
	if out, _, err := scrapydctl(t, "items", params, "-p", "sample"); err != nil ||
		strings.Count(out, `"package_data": "greetings-from-package-data"`) != 2 {
		t.Errorf("items: %v: %q", err, out)
	}
	if out := ctl("status", params, url); !strings.HasPrefix(out, "finished") {
		t.Errorf("status: %q", out)
	}

	// Follow a slow crawl's log from its start to its end.
	slow := strings.TrimSpace(ctl("schedule", "sample", "slow", "-a", "pages=10", "--jobid", "slow-follow"))
	if slow != "slow-follow" {
		t.Fatalf("schedule --jobid: %q", slow)
	}
	if out, _, err := scrapydctl(t, "log", slow, "-f", "--interval", "200ms"); err != nil ||
		!strings.Contains(out, "'item_scraped_count': 10") || !strings.Contains(out, "Spider closed (finished)") {
		t.Errorf("log -f of the slow crawl: %v:\n%s", err, out)
	}
	waitState(slow, job.Finished)

	// The crawl web service of a running crawl, then stop it through it.
	live := strings.TrimSpace(ctl("schedule", "sample", "slow", "--priority", "5"))
	waitState(live, job.Running)
	if wsErr := waitWebService(t, live); wsErr != nil {
		// Not fatal: the job is cancelled instead, and the rest still runs.
		t.Errorf("the crawl's web service never answered: %v", wsErr)
		ctl("cancel", "sample", live, "--force")
	} else {
		if out := ctl("ws", "list-resources", live); out != "crawler\nenginestatus\nstats\n" {
			t.Errorf("ws list-resources: %q", out)
		}
		if out := ctl("ws", "list-running", "--job", live); !regexp.MustCompile(`^spider:[0-9a-f]+:slow\n$`).MatchString(out) {
			t.Errorf("ws list-running: %q", out)
		}
		if out := ctl("ws", "list-available", live); out != "catalog\nfailing\nparams\nslow\n" {
			t.Errorf("ws list-available: %q", out)
		}
		if out := ctl("ws", "get-global-stats", live); !strings.Contains(out, "start_time") {
			t.Errorf("ws get-global-stats: %q", out)
		}
		ctl("ws", "get-spider-stats", live)
		if out := ctl("ws", "engine-status", live); !strings.Contains(out, "time()-engine.start_time") {
			t.Errorf("ws engine-status: %q", out)
		}
		ctl("ws", "pause", live)
		ctl("ws", "unpause", live)
		ctl("ws", "stop", live)
	}
	waitState(live, job.Finished)

	// Cancel: a running crawl gracefully, then one by force.
	for _, force := range []bool{false, true} {
		id := strings.TrimSpace(ctl("schedule", "sample", "slow"))
		waitState(id, job.Running)
		args := []string{"cancel", "sample", id}
		if force {
			args = append(args, "--force")
		}
		if out := ctl(args...); out != "cancelled (it was running)\n" {
			t.Errorf("%v: %q", args, out)
		}
		waitState(id, job.Finished)
	}

	if out := ctl("jobs", "--state", "finished", "--project", "sample"); strings.Count(out, "\nfinished ") != 5 {
		t.Errorf("jobs --state finished:\n%s", out)
	}
	if out := ctl("jobs", "--json"); !strings.Contains(out, `"finished"`) || !strings.Contains(out, `"status"`) {
		t.Errorf("jobs --json: %s", out)
	}
	if out := ctl("daemonstatus"); !strings.Contains(out, "finished  5") {
		t.Errorf("daemonstatus:\n%s", out)
	}
	ctl("delversion", "sample", "r0-default")
	if out := ctl("versions", "sample"); out != "r1-main\n" {
		t.Errorf("versions after delversion: %q", out)
	}
	ctl("delproject", "sample")
	if out := ctl("projects"); out != "" {
		t.Errorf("projects after delproject: %q", out)
	}
}

// waitWebService waits until a running crawl's web service answers (its
// extension starts with the engine, a moment after the job counts as
// running) and returns the last error if it never does.
func waitWebService(t *testing.T, id string) error {
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if _, _, err = scrapydctl(t, "ws", "list-running", id); err == nil {
			return nil
		}
	}
	return err
}
