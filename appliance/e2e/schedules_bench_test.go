package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// cpuTime is a process's user+system CPU time so far (/proc/PID/stat,
// in clock ticks of 10 ms).
func cpuTime(b testing.TB, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// idleCost measures a daemon's CPU share over window and its RSS after.
func idleCost(b testing.TB, d *testkit.Daemon, window time.Duration) (cpuPercent, rss float64) {
	time.Sleep(2 * time.Second) // past start-up
	c0, t0 := cpuTime(b, d.PID()), time.Now()
	time.Sleep(window)
	c1, t1 := cpuTime(b, d.PID()), time.Now()
	return 100 * float64(c1-c0) / float64(t1.Sub(t0)), rssMiB(b, d.PID())
}

// BenchmarkSchedules10k: what 10,000 idle recurring schedules cost the
// daemon (CPU share over 10 s idle, resident memory against the same
// daemon without them), and how late runs start after their due time
// (due_time → start_time, both recorded by the daemon) for four schedules
// every 2 s beside them (overlap skip, with slots to spare: a run is made
// only when its last one ended, so its lateness is the scheduler's and the
// dispatcher's, not a queue behind crawls slowed by a loaded machine). It
// measures once, whatever b.N is.
func BenchmarkSchedules10k(b *testing.B) {
	testkit.RequireScrapy(b)
	root := testkit.TraversableTempDir(b)
	conf := "max_proc = 8"
	d := testkit.StartDaemon(b, testkit.Options{Root: root, Conf: conf})
	uploadSample(b, d, "sample")
	d.Get(b, "listspiders.json", url.Values{"project": {"sample"}})
	cpu0, rss0 := idleCost(b, d, 10*time.Second)
	d.Stop()

	st, err := store.Open(filepath.Join(root, "var", "lib", "scrapyd", "dbs"))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for i := range 10000 {
		// Daily, at minutes spread over the day: none due in the window.
		sc := job.Schedule{ID: fmt.Sprintf("idle%05d", i), Project: "sample", Spider: "params", Overlap: job.OverlapSkip,
			Args: []job.Pair{{Name: "n", Value: fmt.Sprint(i)}}, Created: now}
		if i%2 == 0 {
			sc.Cron = fmt.Sprintf("%d %d * * *", i%60, (now.Hour()+12+i%6)%24)
		} else {
			sc.Every = 24*time.Hour + time.Duration(i)*time.Second
			sc.NextRun = now.Add(sc.Every)
		}
		if sc.Cron != "" {
			sc.NextRun = now.Add(12 * time.Hour)
		}
		if err := st.SaveSchedule(sc); err != nil {
			b.Fatal(err)
		}
	}
	st.Close()
	d = testkit.StartDaemon(b, testkit.Options{Root: root, Conf: conf, Port: d.Port})
	cpu1, rss1 := idleCost(b, d, 10*time.Second)
	if l := d.Get(b, "listschedules.json", nil); len(l["schedules"].([]any)) != 10000 {
		b.Fatalf("listschedules has %d schedules, want 10000", len(l["schedules"].([]any)))
	}

	var ids []string
	for range 4 {
		ids = append(ids, addSchedule(b, d, url.Values{"project": {"sample"}, "spider": {"params"}, "every": {"2s"}}))
	}
	var late []time.Duration
	testkit.Eventually(b, 3*time.Minute, "30 started runs", func() bool {
		late = late[:0]
		for _, id := range ids {
			for _, r := range scheduleRuns(b, d, "sample", id) {
				if !r.start.IsZero() {
					late = append(late, r.start.Sub(r.due))
				}
			}
		}
		return len(late) >= 30
	})
	for _, id := range ids {
		d.Post(b, "delschedule.json", url.Values{"project": {"sample"}, "schedule": {id}})
	}
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	p := func(q float64) float64 { return float64(late[int(q*float64(len(late)-1))].Microseconds()) / 1000 }
	b.ReportMetric(cpu0, "idle_cpu_%_0")
	b.ReportMetric(cpu1, "idle_cpu_%_10k")
	b.ReportMetric(rss0, "rss_MiB_0")
	b.ReportMetric(rss1, "rss_MiB_10k")
	b.ReportMetric(rss1-rss0, "rss_delta_MiB")
	b.ReportMetric(p(0.5), "due_p50_ms")
	b.ReportMetric(p(0.99), "due_p99_ms")
	b.ReportMetric(float64(late[len(late)-1].Microseconds())/1000, "due_max_ms")
	b.ReportMetric(float64(len(late)), "runs")
}
