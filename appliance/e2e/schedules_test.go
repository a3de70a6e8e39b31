package e2e

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// run is one job as listjobs.json shows it, with its recorded times.
type run struct {
	id, spider, state, schedule, outcome string
	node                                 string // cluster mode: the node that runs or ran it
	due, start, end                      time.Time
	attempt                              int
}

// pyTimeLayouts are listjobs.json's time formats (Python's str() of a
// naive local datetime, with or without microseconds).
var pyTimeLayouts = []string{"2006-01-02 15:04:05.000000", "2006-01-02 15:04:05"}

func parsePyTime(t testing.TB, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	if s == "" {
		return time.Time{}
	}
	for _, l := range pyTimeLayouts {
		if tm, err := time.ParseInLocation(l, s, time.Local); err == nil {
			return tm
		}
	}
	t.Fatalf("not a listjobs time: %q", s)
	return time.Time{}
}

// runs lists every job of a project, in every state, keyed by section.
func runs(t testing.TB, d *testkit.Daemon, project string) []run {
	t.Helper()
	l := d.Get(t, "listjobs.json", url.Values{"project": {project}})
	var out []run
	for _, state := range []string{"pending", "running", "finished"} {
		list, _ := l[state].([]any)
		for _, e := range list {
			m := e.(map[string]any)
			r := run{id: m["id"].(string), spider: m["spider"].(string), state: state,
				due: parsePyTime(t, m["due_time"]), start: parsePyTime(t, m["start_time"]), end: parsePyTime(t, m["end_time"])}
			r.schedule, _ = m["schedule"].(string)
			r.outcome, _ = m["outcome"].(string)
			r.node, _ = m["node_name"].(string)
			if a, ok := m["attempt"].(float64); ok {
				r.attempt = int(a)
			}
			out = append(out, r)
		}
	}
	return out
}

// scheduleRuns are a schedule's runs, first due first.
func scheduleRuns(t testing.TB, d *testkit.Daemon, project, id string) []run {
	t.Helper()
	var out []run
	for _, r := range runs(t, d, project) {
		if r.schedule == id {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].due.Equal(out[j].due) {
			return out[i].due.Before(out[j].due)
		}
		return out[i].attempt < out[j].attempt
	})
	return out
}

func addSchedule(t testing.TB, d *testkit.Daemon, form url.Values) string {
	t.Helper()
	r := d.Post(t, "addschedule.json", form)
	if r["status"] != "ok" {
		t.Fatalf("addschedule %v: %v", form, r)
	}
	if r["next_run"] == nil || r["node_name"] == nil {
		t.Fatalf("addschedule answer %v lacks next_run or node_name", r)
	}
	return r["schedule"].(string)
}

func uploadSample(t testing.TB, d *testkit.Daemon, projects ...string) {
	t.Helper()
	egg := testkit.SampleEgg(t)
	for _, p := range projects {
		if r := d.Upload(t, p, "r1", egg); r["status"] != "ok" {
			t.Fatalf("upload %s: %v", p, r)
		}
	}
}

// TestScheduleEveryOnTime: an `every = 2s` schedule makes runs whose
// claim (start_time) follows their due time within a second, as the daemon
// recorded both, with the schedule's id in their entries; listschedules
// shows the last run.
func TestScheduleEveryOnTime(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 4"})
	uploadSample(t, d, "sample")
	// overlap skip (the default): a run is made only when the last one
	// ended, so a slot is always free for it and its start measures the
	// scheduler and the dispatcher, not a queue behind slow crawls on a
	// loaded machine.
	id := addSchedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "every": {"2s"},
		"category": {"books"}})
	var rs []run
	testkit.Eventually(t, 90*time.Second, "four started runs", func() bool {
		rs = nil
		for _, r := range scheduleRuns(t, d, "sample", id) {
			if !r.start.IsZero() {
				rs = append(rs, r)
			}
		}
		return len(rs) >= 4
	})
	if r := d.Post(t, "pauseschedule.json", url.Values{"project": {"sample"}, "schedule": {id}}); r["status"] != "ok" || r["paused"] != true {
		t.Fatalf("pause: %v", r)
	}
	for i, r := range rs {
		if late := r.start.Sub(r.due); late < 0 || late > time.Second {
			t.Errorf("run %s due %s started %s: %s late, want within 1s", r.id, r.due.Format(time.StampMicro), r.start.Format(time.StampMicro), late)
		}
		if i > 0 {
			if gap := r.due.Sub(rs[i-1].due); gap%(2*time.Second) != 0 || gap == 0 {
				t.Errorf("due times %s and %s are not whole periods apart", rs[i-1].due, r.due)
			}
		}
	}
	list := d.Get(t, "listschedules.json", url.Values{"project": {"sample"}})
	scheds, _ := list["schedules"].([]any)
	if len(scheds) != 1 {
		t.Fatalf("listschedules: %v", list)
	}
	s := scheds[0].(map[string]any)
	if s["id"] != id || s["every"] != "2s" || s["paused"] != true || s["paused_reason"] != "paused by a user" || s["last_job"] == nil ||
		s["next_run"] != nil || s["overlap"] != "skip" || s["args"].(map[string]any)["category"] != "books" {
		t.Fatalf("listschedules entry %v", s)
	}
	if got := testkit.JSONKeys(t, mustGetRaw(t, d, "listschedules.json")); strings.Join(got, " ") != "schedules status node_name" {
		t.Fatalf("listschedules keys %v", got)
	}
}

func mustGetRaw(t testing.TB, d *testkit.Daemon, endpoint string) string {
	t.Helper()
	resp, err := d.Client.Get(d.URL + "/" + endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestScheduleOverlapSkip: with a crawl longer than the period, no second
// run is made while one is pending or running (overlap skip, the default);
// with overlap queue, the one run due meanwhile is made as the active one
// ends, not at the next period.
func TestScheduleOverlapSkip(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 4"})
	uploadSample(t, d, "sample")
	ids := map[string]string{}
	for _, overlap := range []string{"skip", "queue"} {
		ids[overlap] = addSchedule(t, d, url.Values{"project": {"sample"}, "spider": {"slow"}, "every": {"2s"}, "pages": {"20"}, "overlap": {overlap}})
	}
	runsOf := map[string][]run{}
	testkit.Eventually(t, 3*time.Minute, "two finished runs of each", func() bool {
		done := true
		for overlap, id := range ids {
			runsOf[overlap] = scheduleRuns(t, d, "sample", id)
			n := 0
			for _, r := range runsOf[overlap] {
				if r.state == "finished" {
					n++
				}
			}
			done = done && n >= 2
		}
		return done
	})
	for overlap, id := range ids {
		d.Post(t, "delschedule.json", url.Values{"project": {"sample"}, "schedule": {id}})
		rs := runsOf[overlap]
		for i := 1; i < len(rs); i++ {
			prev := rs[i-1]
			if prev.end.IsZero() || rs[i].due.Before(prev.end) {
				t.Errorf("%s: run %s was due at %s while run %s (started %s, ended %s) was active", overlap, rs[i].id, rs[i].due, prev.id, prev.start, prev.end)
			}
			if overlap == "queue" && !prev.end.IsZero() && rs[i].due.Sub(prev.end) > time.Second {
				t.Errorf("queue: run %s was made %s after run %s ended, want at its end", rs[i].id, rs[i].due.Sub(prev.end), prev.id)
			}
		}
		if first := rs[0]; first.end.Sub(first.start) < 4*time.Second {
			t.Fatalf("%s: the crawl took %s, not longer than two periods: the test shows nothing", overlap, first.end.Sub(first.start))
		}
	}
}

// TestScheduleCatchUpOnce: a daemon stopped across three due times makes
// exactly one run for them when it starts again.
func TestScheduleCatchUpOnce(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 2"})
	uploadSample(t, d, "sample")
	id := addSchedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "every": {"4s"}})
	testkit.Eventually(t, 60*time.Second, "a first run", func() bool { return len(scheduleRuns(t, d, "sample", id)) >= 1 })
	d.Stop()
	stopped := time.Now()
	time.Sleep(13 * time.Second) // three due times pass
	restarted := time.Now()
	d2 := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 2", Root: d.Root, Port: d.Port})
	var rs []run
	testkit.Eventually(t, 30*time.Second, "the catch-up run", func() bool {
		rs = scheduleRuns(t, d2, "sample", id)
		return len(rs) > 0 && rs[len(rs)-1].due.After(stopped)
	})
	missed := 0
	for _, r := range rs {
		if r.due.After(stopped) && r.due.Before(restarted) {
			missed++
		}
	}
	if missed != 1 {
		t.Fatalf("%d runs for the due times missed while stopped, want exactly 1: %+v", missed, rs)
	}
}

// TestScheduleRetries: a failing spider with retries = 2 runs three times
// in all for one due time: the run and two retries.
func TestScheduleRetries(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{Conf: "max_proc = 2"})
	uploadSample(t, d, "sample")
	id := addSchedule(t, d, url.Values{"project": {"sample"}, "spider": {"failing"}, "every": {"1h"},
		"retries": {"2"}, "retry_delay": {"1s"}})
	// The first run is an hour away: the test moves it by updating the
	// schedule to a short period, then back once it ran.
	addSchedule(t, d, url.Values{"schedule": {id}, "project": {"sample"}, "spider": {"failing"}, "every": {"3s"},
		"retries": {"2"}, "retry_delay": {"1s"}})
	testkit.Eventually(t, 60*time.Second, "a first run", func() bool { return len(scheduleRuns(t, d, "sample", id)) >= 1 })
	addSchedule(t, d, url.Values{"schedule": {id}, "project": {"sample"}, "spider": {"failing"}, "every": {"1h"},
		"retries": {"2"}, "retry_delay": {"1s"}})
	var rs []run
	testkit.Eventually(t, 120*time.Second, "three failed runs", func() bool {
		rs = scheduleRuns(t, d, "sample", id)
		n := 0
		for _, r := range rs {
			if r.outcome == "failed" {
				n++
			}
		}
		return n >= 3
	})
	time.Sleep(5 * time.Second) // a fourth would come within the doubled delay (4s)
	rs = scheduleRuns(t, d, "sample", id)
	var attempts []string
	for _, r := range rs {
		attempts = append(attempts, fmt.Sprintf("%d:%s", r.attempt, r.outcome))
	}
	if got := strings.Join(attempts, " "); got != "0:failed 1:failed 2:failed" {
		t.Fatalf("runs %s, want the run and two retries, all failed", got)
	}
}

// interval is when a job held a slot, as the daemon recorded it.
func overlaps(a, b run) bool { return a.start.Before(b.end) && b.start.Before(a.end) }

// TestSlotCaps: spider_max_proc = 1 never lets two crawls of a spider run
// at once while another spider's run beside them; a project's max_proc
// holds it back while another project fills the other slots; a reload
// changes the caps live.
func TestSlotCaps(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	conf := "max_proc = 4\n[project:sample]\nspider_max_proc = 1\n[project:capped]\nmax_proc = 1\n"
	d := testkit.StartDaemon(t, testkit.Options{Conf: conf})
	uploadSample(t, d, "sample", "capped", "free")
	for i := 0; i < 5; i++ {
		schedule(t, d, url.Values{"project": {"sample"}, "spider": {"slow"}, "pages": {"5"}})
	}
	for i := 0; i < 2; i++ {
		schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}})
	}
	sawWaiting := false
	testkit.Eventually(t, 3*time.Minute, "seven finished jobs of sample", func() bool {
		l := d.Get(t, "listjobs.json", url.Values{"project": {"sample"}})
		for _, e := range l["pending"].([]any) {
			m := e.(map[string]any)
			if m["spider"] == "slow" && m["waiting"] == "spider_max_proc" {
				sawWaiting = true
			}
		}
		return len(l["finished"].([]any)) == 7
	})
	if !sawWaiting {
		t.Errorf("no pending slow job said it waits for spider_max_proc")
	}
	var slow, params []run
	for _, r := range runs(t, d, "sample") {
		if r.spider == "slow" {
			slow = append(slow, r)
		} else {
			params = append(params, r)
		}
	}
	for i := range slow {
		for j := i + 1; j < len(slow); j++ {
			if overlaps(slow[i], slow[j]) {
				t.Errorf("two slow crawls ran at once: %+v and %+v", slow[i], slow[j])
			}
		}
	}
	beside := false
	for _, p := range params {
		for _, s := range slow {
			beside = beside || overlaps(p, s)
		}
	}
	if !beside {
		t.Errorf("no params crawl ran beside a slow one: %+v %+v", slow, params)
	}

	// max_proc of a project: capped runs one at a time while free's fill
	// the other slots.
	for i := 0; i < 3; i++ {
		schedule(t, d, url.Values{"project": {"capped"}, "spider": {"slow"}, "pages": {"10"}})
		schedule(t, d, url.Values{"project": {"free"}, "spider": {"slow"}, "pages": {"10"}})
	}
	testkit.Eventually(t, 3*time.Minute, "six finished jobs", func() bool {
		return len(finishedOf(t, d, "capped"))+len(finishedOf(t, d, "free")) == 6
	})
	capped, free := finishedOf(t, d, "capped"), finishedOf(t, d, "free")
	for i := range capped {
		for j := i + 1; j < len(capped); j++ {
			if overlaps(capped[i], capped[j]) {
				t.Errorf("two crawls of capped ran at once: %+v %+v", capped[i], capped[j])
			}
		}
	}
	if !overlaps(free[0], free[1]) && !overlaps(free[1], free[2]) && !overlaps(free[0], free[2]) {
		t.Errorf("free's crawls never ran together beside capped's: %+v", free)
	}

	// Live: capped's max_proc goes to 2.
	conf = "max_proc = 4\n[project:sample]\nspider_max_proc = 1\n[project:capped]\nmax_proc = 2\n"
	if err := os.WriteFile(d.Path("etc", "scrapyd", "conf.d", "50-test.conf"), []byte("[scrapyd]\n"+conf), 0o644); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(d.PID(), syscall.SIGHUP)
	testkit.Eventually(t, 30*time.Second, "the reload", func() bool { return strings.Contains(d.Logs(), "[project:*]") })
	for i := 0; i < 2; i++ {
		schedule(t, d, url.Values{"project": {"capped"}, "spider": {"slow"}, "pages": {"10"}})
	}
	testkit.Eventually(t, 3*time.Minute, "two more finished jobs of capped", func() bool { return len(finishedOf(t, d, "capped")) == 5 })
	capped = finishedOf(t, d, "capped")
	sort.Slice(capped, func(i, j int) bool { return capped[i].start.Before(capped[j].start) })
	if !overlaps(capped[3], capped[4]) {
		t.Errorf("after the reload, capped's two crawls did not run together: %+v %+v", capped[3], capped[4])
	}
}

func finishedOf(t testing.TB, d *testkit.Daemon, project string) []run {
	t.Helper()
	var out []run
	for _, r := range runs(t, d, project) {
		if r.state == "finished" {
			out = append(out, r)
		}
	}
	return out
}

// TestScheduleInputAndDeletion: a bad cron gets a Scrapyd-style error and
// stores nothing; delversion of the version a schedule is pinned to, and
// delproject, pause what they break, saying why.
func TestScheduleInputAndDeletion(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{})
	egg := testkit.SampleEgg(t)
	for _, v := range []string{"r1", "r2"} {
		if r := d.Upload(t, "sample", v, egg); r["status"] != "ok" {
			t.Fatal(r)
		}
	}
	for _, c := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"cron": {"0 3 * *"}}, `invalid schedule: cron "0 3 * *" has 4 fields, expected 5 (minute hour day-of-month month day-of-week) or a descriptor such as @daily`},
		{url.Values{"cron": {"0 25 * * *"}}, `invalid schedule: cron "0 25 * * *": end of range (25) above maximum (23): 25`},
		{url.Values{"cron": {"@daily"}, "timezone": {"Mars/Olympus"}}, `invalid schedule: unknown timezone "Mars/Olympus" (an IANA name such as Europe/Paris or UTC)`},
		{url.Values{"every": {"soon"}}, `every is invalid: "soon" is not a duration such as 30s, 15m or 2h`},
		{url.Values{"every": {"1h"}, "overlap": {"never"}}, `overlap is invalid: "never" is not allow, skip or queue`},
		{url.Values{}, `invalid schedule: give cron (five fields, or @daily and the like) or every (a duration such as 30m)`},
	} {
		c.form.Set("project", "sample")
		c.form.Set("spider", "params")
		r := d.Post(t, "addschedule.json", c.form)
		if r["status"] != "error" || r["message"] != c.want {
			t.Errorf("%v: %v, want the error %q", c.form, r, c.want)
		}
	}
	if l := d.Get(t, "listschedules.json", nil); len(l["schedules"].([]any)) != 0 {
		t.Fatalf("bad input stored a schedule: %v", l)
	}
	pinned := addSchedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "every": {"1h"}, "_version": {"r1"}})
	latest := addSchedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "cron": {"@daily"}, "timezone": {"UTC"}})
	// A schedule's id is its project's: another project cannot take it over.
	if r := d.Upload(t, "other", "r1", egg); r["status"] != "ok" {
		t.Fatal(r)
	}
	want := `schedule is invalid: schedule "` + pinned + `" belongs to project "sample"`
	if r := d.Post(t, "addschedule.json", url.Values{"project": {"other"}, "spider": {"params"}, "every": {"1h"}, "schedule": {pinned}}); r["status"] != "error" || r["message"] != want {
		t.Errorf("addschedule of sample's schedule in other: %v, want the error %q", r, want)
	}
	paused := func() map[string]any {
		out := map[string]any{}
		for _, e := range d.Get(t, "listschedules.json", url.Values{"project": {"sample"}})["schedules"].([]any) {
			m := e.(map[string]any)
			out[m["id"].(string)] = m["paused_reason"]
		}
		return out
	}
	d.Post(t, "delversion.json", url.Values{"project": {"sample"}, "version": {"r1"}})
	if p := paused(); p[pinned] != "version 'r1' of project 'sample' was deleted" || p[latest] != nil {
		t.Fatalf("after delversion r1: %v", p)
	}
	d.Post(t, "delproject.json", url.Values{"project": {"sample"}})
	if p := paused(); p[pinned] != "version 'r1' of project 'sample' was deleted" || p[latest] != "project 'sample' was deleted" {
		t.Fatalf("after delproject: %v", p)
	}
}
