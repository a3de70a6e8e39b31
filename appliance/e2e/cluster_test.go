package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// clusterRun is one job as the database recorded it.
type clusterRun struct {
	id, node       string
	started, ended time.Time
}

// clusterRuns reads the finished jobs and how many started events each id
// has from the cluster's database: which node ran a job, and when the
// database says its claim and end happened, are not all in listjobs.json.
func clusterRuns(t *testing.T, db string) (runs []clusterRun, starts map[string]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT id, node, started, ended FROM jobs WHERE state = 'finished'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r clusterRun
		if err := rows.Scan(&r.id, &r.node, &r.started, &r.ended); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows, err = conn.Query(ctx, `SELECT id, count(*) FROM events WHERE type = 'started' GROUP BY id`)
	if err != nil {
		t.Fatal(err)
	}
	starts = map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		starts[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return runs, starts
}

// jsonBody decodes a JSON answer (in goroutines, where t.Fatal cannot be
// called).
func jsonBody(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// crawlRecord makes the file the stand-in interpreter's crawls append
// their command lines to (FAKE_CRAWL_RECORD), writable by the crawl user.
func crawlRecord(t testing.TB) string {
	t.Helper()
	path := filepath.Join(testkit.TraversableTempDir(t), "crawls")
	if err := os.WriteFile(path, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return path
}

// crawlsPerJob counts the crawls of each job id in a FAKE_CRAWL_RECORD
// file (Scrapyd passes the id as -a _job=ID).
func crawlsPerJob(t testing.TB, path string) map[string]int {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		for _, f := range strings.Fields(line) {
			if id, ok := strings.CutPrefix(f, "_job="); ok {
				out[id]++
			}
		}
	}
	return out
}

// mostAtOnce is the most runs that overlapped in time.
func mostAtOnce(runs []clusterRun) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, r := range runs {
		edges = append(edges, edge{r.started, 1}, edge{r.ended, -1})
	}
	// An end and a start at the same instant do not overlap.
	sort.Slice(edges, func(i, j int) bool {
		if !edges[i].at.Equal(edges[j].at) {
			return edges[i].at.Before(edges[j].at)
		}
		return edges[i].delta < edges[j].delta
	})
	most, now := 0, 0
	for _, e := range edges {
		now += e.delta
		most = max(most, now)
	}
	return most
}

// overtaken says, for each job of queue (in queue order), how many jobs
// ahead of it in the queue started after it.
func overtaken(queue []string, started map[string]time.Time) map[string]int {
	out := map[string]int{}
	for i, id := range queue {
		for _, ahead := range queue[:i] {
			if started[ahead].After(started[id]) {
				out[id]++
			}
		}
	}
	return out
}

// TestCluster300Jobs: three daemons on one database, two slots each. Six
// crawls hold every slot while 300 jobs of mixed priorities are scheduled
// concurrently on random nodes; then the slots are freed. Every job starts
// exactly once, in queue order, and no node ever runs more than its slots;
// listjobs.json and status.json answer the same on every node.
//
// In queue order, given that nodes claim at once: a node claims one job at
// a time, and its claim skips only the rows other claims in flight hold,
// so a job may start before at most one job per other node that is ahead
// of it in the queue (priority first, then first scheduled), never more.
// The start times compared are the database's, taken as each claim takes
// its row.
func TestCluster300Jobs(t *testing.T) {
	t.Parallel()
	const nodes, slots, jobs = 3, 2, 300
	db := pgtest.DB(t)
	gate, record := filepath.Join(testkit.TraversableTempDir(t), "gate"), crawlRecord(t)
	cluster := testkit.StartCluster(t, nodes, db, testkit.Options{
		Conf: fmt.Sprintf("python = %s\nmax_proc = %d\npoll_interval = 60\nfinished_to_keep = 1000\njobs_to_keep = 0\nlogs_dir =\nitems_dir =", fakePython(t), slots),
		Env:  []string{"FAKE_CRAWL_SECONDS=0.02", "FAKE_CRAWL_GATE=" + gate, "FAKE_CRAWL_RECORD=" + record},
	})
	// Eggs are the cluster's: one node's upload serves every node.
	if r := cluster[1].Upload(t, "load", "1", testkit.SampleEgg(t)); r["status"] != "ok" {
		t.Fatalf("upload: %v", r)
	}
	var holders []string
	for range nodes * slots {
		holders = append(holders, schedule(t, cluster[0], url.Values{"project": {"load"}, "spider": {"params"}, "priority": {"100"}}))
	}
	testkit.Eventually(t, waitCrawl, "every slot to be held", func() bool {
		return cluster[2].Get(t, "daemonstatus.json", nil)["running"] == float64(nodes*slots)
	})

	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		scheduled []string
		priority  = map[string]int{}
	)
	client := &http.Client{Timeout: 30 * time.Second}
	for c := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(int64(c)))
			for i := c; i < jobs; i += 10 {
				n := cluster[rnd.Intn(nodes)]
				p := rnd.Intn(4) - 1
				form := url.Values{"project": {"load"}, "spider": {"params"}, "priority": {fmt.Sprint(p)}}
				resp, err := client.PostForm(n.URL+"/schedule.json", form)
				if err != nil {
					t.Error(err)
					return
				}
				var r map[string]any
				err = jsonBody(resp, &r)
				if err != nil || r["status"] != "ok" {
					t.Errorf("schedule on %s: %v %v", n.URL, r, err)
					return
				}
				mu.Lock()
				scheduled = append(scheduled, r["jobid"].(string))
				priority[r["jobid"].(string)] = p
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// The queue as every node shows it, before anything of it runs: by
	// priority (its entries do not show it), then in schedule order.
	pending := cluster[0].Get(t, "listjobs.json", url.Values{"state": {"pending"}})
	for _, n := range cluster[1:] {
		if got, want := shape(t, n.Get(t, "listjobs.json", url.Values{"state": {"pending"}})), shape(t, pending); got != want {
			t.Fatalf("the pending list differs between nodes:\n%s\n%s", got, want)
		}
	}
	var queue []string
	for _, e := range pending["pending"].([]any) {
		id := e.(map[string]any)["id"].(string)
		if len(queue) > 0 && priority[id] > priority[queue[len(queue)-1]] {
			t.Fatalf("pending list not in priority order: %s (priority %d) after %s", id, priority[id], queue[len(queue)-1])
		}
		queue = append(queue, id)
	}
	if len(queue) != jobs {
		t.Fatalf("%d jobs pending, want %d", len(queue), jobs)
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 2*time.Minute, "every job to finish", func() bool {
		return cluster[1].Get(t, "daemonstatus.json", nil)["finished"] == float64(jobs+nodes*slots)
	})

	runs, starts := clusterRuns(t, db)
	all := append(append([]string{}, holders...), scheduled...)
	for _, id := range all {
		if starts[id] != 1 {
			t.Errorf("job %s started %d times", id, starts[id])
		}
	}
	if len(starts) != len(all) {
		t.Errorf("%d jobs started, %d scheduled", len(starts), len(all))
	}
	crawls := crawlsPerJob(t, record)
	for _, id := range all {
		if crawls[id] != 1 {
			t.Errorf("job %s had %d crawls", id, crawls[id])
		}
	}
	if len(crawls) != len(all) {
		t.Errorf("crawls of %d jobs, %d scheduled", len(crawls), len(all))
	}
	started := map[string]time.Time{}
	byNode := map[string][]clusterRun{}
	for _, r := range runs {
		if _, dup := started[r.id]; dup {
			t.Errorf("job %s finished twice", r.id)
		}
		started[r.id] = r.started
		byNode[r.node] = append(byNode[r.node], r)
	}
	for node, rs := range byNode {
		if most := mostAtOnce(rs); most > slots {
			t.Errorf("node %q ran %d crawls at once, max_proc = %d", node, most, slots)
		}
		t.Logf("node %s ran %d jobs", node, len(rs))
	}
	worst := 0
	for id, n := range overtaken(queue, started) {
		worst = max(worst, n)
		if n > nodes-1 {
			t.Errorf("job %s started before %d jobs ahead of it in the queue (at most %d claims are in flight at once)", id, n, nodes-1)
		}
	}
	t.Logf("a job started before at most %d jobs ahead of it", worst)

	// Every node answers the same for the whole cluster.
	list := shape(t, cluster[0].Get(t, "listjobs.json", nil))
	for _, n := range cluster[1:] {
		if got := shape(t, n.Get(t, "listjobs.json", nil)); got != list {
			t.Errorf("listjobs.json differs between nodes:\n%s\n%s", got, list)
		}
	}
	fin := cluster[0].Get(t, "listjobs.json", nil)["finished"].([]any)
	if len(fin) != len(all) {
		t.Fatalf("%d finished jobs listed, want %d", len(fin), len(all))
	}
	for _, e := range fin {
		if m := e.(map[string]any); m["outcome"] != "finished" {
			t.Errorf("job ended %v", m)
		}
	}
	for _, id := range all[:20] {
		q := url.Values{"job": {id}}
		want := shape(t, cluster[0].Get(t, "status.json", q))
		if !strings.Contains(want, `"currstate":"finished"`) {
			t.Errorf("status.json of %s: %s", id, want)
		}
		for _, n := range cluster[1:] {
			if got := shape(t, n.Get(t, "status.json", q)); got != want {
				t.Errorf("status.json of %s differs between nodes:\n%s\n%s", id, got, want)
			}
		}
	}
}

// withoutNodeNames drops the node_name keys of listjobs.json's entries,
// which a cluster's answer has and a single node's has not.
func withoutNodeNames(l map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range l {
		out[k] = v
		list, ok := v.([]any)
		if !ok {
			continue
		}
		entries := make([]any, len(list))
		for i, e := range list {
			m := map[string]any{}
			for ek, ev := range e.(map[string]any) {
				if ek != "node_name" {
					m[ek] = ev
				}
			}
			entries[i] = m
		}
		out[k] = entries
	}
	return out
}

// clusterImport runs `scrapyd cluster import` on a node's root, with its
// environment (its port: the import refuses while a daemon answers).
func clusterImport(t *testing.T, d *testkit.Daemon) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(testkit.Binaries(t), "scrapyd"), "--root", d.Root, "cluster", "import")
	cmd.Env = d.Env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestClusterImport: a single node with a finished job, a running crawl,
// two pending jobs and a recurring schedule is stopped, imported into a
// database with `scrapyd cluster import`, and started on it: it lists the
// same jobs, adopts its crawl and records its end, then runs the pending
// jobs in their order. An import while the daemon runs, and a second one,
// are refused.
func TestClusterImport(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	db := pgtest.DB(t)
	conf := "max_proc = 1\npoll_interval = 60\n"
	d := testkit.StartDaemon(t, testkit.Options{Conf: conf})
	d.Upload(t, "sample", "1.0", testkit.SampleEgg(t))
	done := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {"done"}})
	waitState(t, d, done, "finished")
	// About 30 s of pages: it runs through the import, and ends by itself.
	long := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"long"}, "pages": {"150"}})
	pid := int(waitState(t, d, long, "running")["pid"].(float64))
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	for _, p := range []struct{ id, prio string }{{"p1", "0"}, {"p2", "5"}} {
		schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {p.id}, "priority": {p.prio}})
	}
	sched := addSchedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "every": {"1h"}})
	before := shape(t, d.Get(t, "listjobs.json", nil))

	clusterConf := testkit.NodeConf(conf, db, "node1")
	if err := os.WriteFile(d.Path("etc", "scrapyd", "conf.d", "50-test.conf"), []byte("[scrapyd]\n"+clusterConf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := clusterImport(t, d); err == nil || !strings.Contains(out, "stop it first") {
		t.Fatalf("import while the daemon runs: %v\n%s", err, out)
	}
	d.Stop()
	out, err := clusterImport(t, d)
	if err != nil || !strings.Contains(out, "2 pending, 1 running, 1 finished jobs") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if out, err := clusterImport(t, d); err == nil || !strings.Contains(out, "already imported") {
		t.Fatalf("second import: %v\n%s", err, out)
	}

	n := testkit.StartDaemon(t, testkit.Options{Root: d.Root, Conf: clusterConf})
	if after := shape(t, withoutNodeNames(n.Get(t, "listjobs.json", nil))); after != before {
		t.Fatalf("listjobs.json after the import:\n%s\nbefore:\n%s", after, before)
	}
	if r := jobIn(t, n, "running", long); r == nil || int(r["pid"].(float64)) != pid {
		t.Fatalf("the running crawl was not adopted: %v\n%s", r, n.Logs())
	}
	if s, _ := n.Get(t, "listschedules.json", url.Values{"project": {"sample"}})["schedules"].([]any); len(s) != 1 || s[0].(map[string]any)["id"] != sched {
		t.Fatalf("schedules after the import: %v", s)
	}
	// The egg is the cluster's: a node that never saw an upload lists it.
	n2 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf(conf, db, "node2")})
	if v := n2.Get(t, "listversions.json", url.Values{"project": {"sample"}}); fmt.Sprint(v["versions"]) != "[1.0]" {
		t.Fatalf("listversions.json on another node after the import: %v", v)
	}
	// The imported history's logs are shipped once the node runs on the
	// database: the other node serves them and links them.
	want, err := os.ReadFile(d.Path("var", "log", "scrapyd", "sample", "params", "done.log"))
	if err != nil || len(want) == 0 {
		t.Fatalf("the finished job's log: %v", err)
	}
	testkit.Eventually(t, waitCrawl, "node 2 to serve the imported job's log", func() bool {
		resp, err := n2.Client.Get(n2.URL + "/logs/sample/params/done.log")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && bytes.Equal(body, want)
	})
	if e := jobIn(t, n2, "finished", "done"); e == nil || e["log_url"] != "/logs/sample/params/done.log" {
		t.Fatalf("node 2 lists the imported job as %v", e)
	}
	testkit.Eventually(t, 2*time.Minute, "the adopted crawl to end", func() bool { return jobIn(t, n, "finished", long) != nil })
	if fin := jobIn(t, n, "finished", long); fin["outcome"] != "finished" {
		t.Fatalf("the adopted crawl ended %v\n%s", fin, n.Logs())
	}
	p1, p2 := waitState(t, n, "p1", "finished"), waitState(t, n, "p2", "finished")
	if p2["start_time"].(string) > p1["start_time"].(string) {
		t.Fatalf("p1 (priority 0) started at %v, before p2 (priority 5) at %v", p1["start_time"], p2["start_time"])
	}
}
