package api

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// serve runs the harness's app on a real loopback socket, as clients meet it.
func (h *harness) serve(b testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go h.app.Listener(ln)
	b.Cleanup(func() { h.app.Shutdown() })
	return "http://" + ln.Addr().String()
}

func mustOK(b *testing.B, resp *http.Response, err error) {
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"status": "ok"`) {
		b.Fatalf("%s", body)
	}
}

// BenchmarkScheduleJSON: one schedule.json request over HTTP, into the
// SQLite queue (the dispatcher is not running, so jobs stay pending).
func BenchmarkScheduleJSON(b *testing.B) {
	h := newHarness(b, "")
	base := h.serve(b)
	resp, err := postEgg(base)
	mustOK(b, resp, err)
	form := url.Values{"project": {"sample"}, "spider": {"params"}, "arg": {"v"}, "setting": {"A=1"}}.Encode()
	testkit.Latencies(b, func() {
		resp, err := http.Post(base+"/schedule.json", "application/x-www-form-urlencoded", strings.NewReader(form))
		mustOK(b, resp, err)
	})
}

// BenchmarkListJobs1000Finished: listjobs.json with 1,000 finished jobs.
func BenchmarkListJobs1000Finished(b *testing.B) {
	h := newHarness(b, "finished_to_keep = 1000\n")
	base := h.serve(b)
	resp, err := postEgg(base)
	mustOK(b, resp, err)
	for i := 0; i < 1000; i++ {
		j, err := h.st.Enqueue(job.Spec{ID: job.NewID(), Project: "sample", Spider: "params"}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		h.st.Claim(time.Now(), nil)
		code := 0
		h.st.End(j.Seq, time.Now(), &code, job.OutcomeFinished, "", 1000)
	}
	testkit.Latencies(b, func() {
		resp, err := http.Get(base + "/listjobs.json")
		mustOK(b, resp, err)
	})
}

func postEgg(base string) (*http.Response, error) {
	body, ct := multipartEgg()
	return http.Post(base+"/addversion.json", ct, body)
}
