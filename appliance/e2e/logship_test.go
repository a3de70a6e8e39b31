package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// fetchLog GETs a /logs/ path from d with an optional Range header.
func fetchLog(t *testing.T, d *testkit.Daemon, path, rng string) (int, http.Header, string) {
	t.Helper()
	h := http.Header{}
	if rng != "" {
		h.Set("Range", rng)
	}
	return fetch(t, http.MethodGet, d.URL+path, h, "")
}

// TestClusterLogFromAnyNode (issue 15 point 5): a crawl runs on node 2;
// node 1, which has no file of it, serves its log from the database. While
// it runs, following it through node 1 (Range from the last offset, as
// scrapydctl log -f and Gerapy do; the job page's live stream; scrapydctl
// log -f itself) shows its lines as they come, also across a kill -9 and
// restart of node 2's daemon, which adopts the crawl and ships on from the
// shipped size; once it has ended, the log read from node 1, whole or by
// range, is byte for byte node 2's file, with the headers node 2 serves it
// with.
func TestClusterLogFromAnyNode(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	db := pgtest.DB(t)
	egg := testkit.SampleEgg(t)
	// Node 2 alone at first, so that the crawl runs there.
	n2 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf("max_proc = 1\n", db, "node2")})
	n2.Upload(t, "sample", "1.0", egg)
	id := schedule(t, n2, url.Values{"project": {"sample"}, "spider": {"slow"}, "pages": {"60"}})
	pid := int(waitState(t, n2, id, "running")["pid"].(float64))
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	n1 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf("max_proc = 1\n", db, "node1")})
	n1.Upload(t, "sample", "1.0", egg)
	path := "/logs/sample/slow/" + id + ".log"
	local := n2.Path("var", "log", "scrapyd", "sample", "slow", id+".log")
	if _, err := os.Stat(n1.Path("var", "log", "scrapyd", "sample", "slow", id+".log")); err == nil {
		t.Fatal("node 1 has a file of node 2's crawl")
	}

	// scrapydctl log -f and the job page's live log, through node 1, from
	// now until the crawl's end.
	ctl := exec.Command(filepath.Join(testkit.Binaries(t), "scrapydctl"), "log", id, "-f", "--interval", "200ms", "--url", n1.URL)
	var ctlOut strings.Builder
	ctl.Stdout, ctl.Stderr = &ctlOut, &ctlOut
	if err := ctl.Start(); err != nil {
		t.Fatal(err)
	}
	ctlDone := make(chan error, 1)
	go func() { ctlDone <- ctl.Wait() }()
	t.Cleanup(func() { ctl.Process.Kill() })
	type streamed struct {
		lines []string
		end   bool
		err   error
	}
	stream := make(chan streamed, 1)
	go func() {
		var s streamed
		defer func() { stream <- s }()
		resp, err := n1.Client.Get(n1.URL + "/jobs/sample/" + id + "/log?from=0")
		if err != nil {
			s.err = err
			return
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "":
				s.lines = append(s.lines, strings.TrimPrefix(line, "data: "))
			case line == "":
				if event == "end" {
					s.end = true
					return
				}
				event = ""
			}
		}
		s.err = sc.Err()
	}()

	// Following by Range through node 1 while the crawl runs: the log
	// grows there as it grows on node 2.
	var followed string
	seenWhileRunning, restarted := 0, false
	testkit.Eventually(t, waitCrawl, "the crawl's end, its log followed through node 1", func() bool {
		running := jobIn(t, n1, "running", id) != nil
		status, _, body := fetchLog(t, n1, path, fmt.Sprintf("bytes=%d-", len(followed)))
		switch status {
		case http.StatusPartialContent, http.StatusOK:
			if status == http.StatusOK && len(followed) > 0 {
				t.Fatalf("a ranged request answered whole: %d", status)
			}
			followed += body
		case http.StatusRequestedRangeNotSatisfiable, http.StatusNotFound:
		default:
			t.Fatalf("GET %s from node 1: %d %s", path, status, body)
		}
		if running {
			seenWhileRunning = strings.Count(followed, "slow page")
		}
		if running && !restarted && seenWhileRunning >= 5 {
			// Node 2's daemon dies mid-crawl and starts again: it
			// adopts the crawl and ships on from what was shipped.
			restarted = true
			n2.Kill()
			n2 = testkit.StartDaemon(t, testkit.Options{Root: n2.Root, Conf: testkit.NodeConf("max_proc = 1\n", db, "node2")})
		}
		time.Sleep(200 * time.Millisecond)
		return !running && jobIn(t, n1, "finished", id) != nil
	})
	t.Logf("%d of the crawl's page lines came through node 1 while it ran", seenWhileRunning)
	if !restarted {
		t.Error("the crawl ended before node 2's daemon was restarted")
	}
	if seenWhileRunning == 0 {
		t.Errorf("no line of the crawl came through node 1 while it ran:\n%s", followed)
	}
	want, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	// The rest, after the end was seen: the last bytes were shipped before it.
	if status, _, body := fetchLog(t, n1, path, fmt.Sprintf("bytes=%d-", len(followed))); status == http.StatusPartialContent {
		followed += body
	}
	if followed != string(want) {
		t.Errorf("the log followed through node 1 (%d bytes) is not node 2's file (%d bytes)", len(followed), len(want))
	}
	if !strings.Contains(string(want), "Spider closed (finished)") {
		t.Errorf("node 2's log has no end:\n%s", want)
	}

	// Whole, and by ranges, from both nodes: the same bytes and headers.
	size := len(want)
	for _, c := range []struct {
		rng        string
		status     int
		start, end int // want[start:end]
	}{
		{"", 200, 0, size},
		{"bytes=0-", 206, 0, size},
		{"bytes=100-1099", 206, 100, 1100},
		{fmt.Sprintf("bytes=%d-", size-10), 206, size - 10, size},
		{"bytes=-300", 206, size - 300, size},
		{fmt.Sprintf("bytes=%d-", size), 416, 0, 0},
	} {
		s1, h1, b1 := fetchLog(t, n1, path, c.rng)
		s2, h2, b2 := fetchLog(t, n2, path, c.rng)
		if s1 != c.status || s2 != c.status {
			t.Errorf("Range %q: node 1 %d, node 2 %d, want %d", c.rng, s1, s2, c.status)
			continue
		}
		if c.status != 416 && (b1 != string(want[c.start:c.end]) || b1 != b2) {
			t.Errorf("Range %q: node 1 sent %d bytes, node 2 %d, want bytes %d-%d of the file", c.rng, len(b1), len(b2), c.start, c.end)
		}
		for _, h := range []string{"Content-Type", "Content-Range", "Content-Length", "Accept-Ranges", "X-Content-Type-Options", "Content-Security-Policy"} {
			if h1.Get(h) != h2.Get(h) {
				t.Errorf("Range %q: %s from node 1 %q, from node 2 %q", c.rng, h, h1.Get(h), h2.Get(h))
			}
		}
		if h1.Get("Last-Modified") == "" {
			t.Errorf("Range %q: no Last-Modified from node 1", c.rng)
		}
	}
	// Neither node has a log of a job that never was: Scrapyd's 404.
	for _, d := range []*testkit.Daemon{n1, n2} {
		if status, _, body := fetchLog(t, d, "/logs/sample/slow/nosuchjob.log", ""); status != 404 || !strings.Contains(body, "No Such Resource") {
			t.Errorf("a log no node has: %d %s", status, body)
		}
	}
	// listjobs.json on node 1 links the log.
	if fin := jobIn(t, n1, "finished", id); fin["log_url"] != path || fin["outcome"] != "finished" {
		t.Errorf("node 1 lists the crawl with log_url %v, outcome %v; want %s, finished (adopted by the restarted node 2)", fin["log_url"], fin["outcome"], path)
	}

	// The job page's live log and scrapydctl log -f through node 1 ended
	// with the crawl, with its whole log.
	select {
	case s := <-stream:
		wantLines := strings.Split(strings.TrimSuffix(strings.ReplaceAll(string(want), "\r", ""), "\n"), "\n")
		if s.err != nil || !s.end || strings.Join(s.lines, "\n") != strings.Join(wantLines, "\n") {
			t.Errorf("the job page's live log through node 1: %d lines (end %v, %v), want node 2's %d", len(s.lines), s.end, s.err, len(wantLines))
		}
	case <-time.After(waitCrawl):
		t.Error("the job page's live log through node 1 did not end with the crawl")
	}
	select {
	case err := <-ctlDone:
		if err != nil || ctlOut.String() != string(want) {
			t.Errorf("scrapydctl log -f through node 1: %v, %d bytes, want node 2's %d:\n%s", err, len(ctlOut.String()), len(want), ctlOut.String())
		}
	case <-time.After(waitCrawl):
		t.Error("scrapydctl log -f through node 1 did not end with the crawl")
	}
	page, err := n1.Client.Get(n1.URL + "/jobs/sample/" + id)
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if !strings.Contains(string(html), "Spider closed (finished)") {
		t.Errorf("node 1's job page shows no end of the log:\n%s", html)
	}
}

// TestClusterLogCapped: with log_ship_limit on the crawl's node, another
// node serves the log's first bytes, up to a line's end within the limit,
// and then a line saying the whole log is on that node; the crawl's node
// serves it whole.
func TestClusterLogCapped(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	db := pgtest.DB(t)
	egg := testkit.SampleEgg(t)
	n2 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf("max_proc = 1\nlog_ship_limit = 2K\n", db, "node2")})
	n2.Upload(t, "sample", "1.0", egg)
	id := schedule(t, n2, url.Values{"project": {"sample"}, "spider": {"slow"}, "pages": {"3"}})
	if fin := waitState(t, n2, id, "finished"); fin["outcome"] != "finished" {
		t.Fatalf("crawl ended %v\n%s", fin, n2.Logs())
	}
	n1 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf("max_proc = 1\n", db, "node1")})
	path := "/logs/sample/slow/" + id + ".log"
	want, err := os.ReadFile(n2.Path("var", "log", "scrapyd", "sample", "slow", id+".log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(want) <= 2<<10 {
		t.Fatalf("the crawl's log has %d bytes: too short to be capped at 2K", len(want))
	}
	if status, _, body := fetchLog(t, n2, path, ""); status != 200 || body != string(want) {
		t.Errorf("node 2 serves %d, %d bytes; want its whole file", status, len(body))
	}
	status, _, body := fetchLog(t, n1, path, "")
	shipped, marker, _ := strings.Cut(body, "[scrapyd] log_ship_limit: ")
	kept := shipped
	if !strings.HasPrefix(string(want), kept) {
		// Cut in the middle of a line: the marker is put on a line of
		// its own.
		kept = strings.TrimSuffix(shipped, "\n")
	}
	if status != 200 || kept == "" || len(kept) > 2<<10 || !strings.HasPrefix(string(want), kept) {
		t.Fatalf("node 1 serves %d, %q: want the file's first bytes, up to 2K", status, body)
	}
	if want := fmt.Sprintf("the database keeps the first %d bytes of this log; the whole log is on node node2\n", len(kept)); marker != want {
		t.Errorf("node 1's last line %q, want %q", marker, want)
	}
}
