package crawlrpc

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"testing"
)

// fakeCrawl answers every request on the job's socket with result, as the
// extension does for stats.get_stats.
func fakeCrawl(t *testing.T, s *Service, job, result string) {
	t.Helper()
	if err := os.MkdirAll(s.SocketDir(job), 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", s.socketPath(job))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(conn).ReadString('\n')
			conn.Write([]byte(`{"result": ` + result + "}\n"))
			conn.Close()
		}
	}()
}

// TestLiveStats: a poll keeps each answering crawl's stats and summary;
// a crawl that does not answer, or has ended, has none.
func TestLiveStats(t *testing.T) {
	s, _ := newService(t, DefaultConfig(), nil)
	fakeCrawl(t, s, "run-a", `{"item_scraped_count": 22, "downloader/request_count": 30, "response_received_count": 29, "memusage/max": 70578176}`)
	s.refresh(context.Background(), []string{"run-a", "run-silent"})

	if sum, ok := s.LiveSummary("run-a"); !ok || sum != (Summary{ItemsScraped: 22, Requests: 30, Responses: 29}) {
		t.Errorf("summary %+v %v", sum, ok)
	}
	if raw := s.Live("run-a"); raw["memusage/max"] != json.Number("70578176") {
		t.Errorf("raw stats %v", raw)
	}
	if _, ok := s.LiveSummary("run-silent"); ok || s.Live("run-silent") != nil {
		t.Error("a crawl that did not answer has live stats")
	}
	// A crawl no longer running is gone with the next poll.
	s.refresh(context.Background(), nil)
	if _, ok := s.LiveSummary("run-a"); ok {
		t.Error("a crawl no longer running keeps its live stats")
	}
	// An ended crawl's are gone at once (its final stats take over).
	s.refresh(context.Background(), []string{"run-a"})
	if _, ok := s.LiveSummary("run-a"); !ok {
		t.Fatal("no live stats")
	}
	s.Cleanup("run-a")
	if _, ok := s.LiveSummary("run-a"); ok {
		t.Error("an ended crawl keeps its live stats")
	}
}
