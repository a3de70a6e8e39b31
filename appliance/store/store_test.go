package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

func open(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func enqueue(t testing.TB, s *Store, id, project string, prio float64) job.Job {
	t.Helper()
	j, err := s.Enqueue(job.Spec{ID: id, Project: project, Spider: "s", Priority: prio,
		Settings: []job.Pair{{Name: "A", Value: "1"}}, Args: []job.Pair{{Name: "x", Value: "y"}}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func ids(jobs []job.Job) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

func TestStateSurvivesReopenAndRequeueKeepsOrder(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	for _, id := range []string{"j1", "j2", "j3", "j4"} {
		enqueue(t, s, id, "p", 0)
	}
	first, _ := s.Claim(time.Now(), nil) // j1: claimed, never started (a crash)
	second, _ := s.Claim(time.Now(), nil)
	s.Started(second.Seq, "pid:1:2", 1234)
	code := 1
	s.End(second.Seq, time.Now(), &code, job.OutcomeFailed, `{"item_scraped_count": 3}`, 100)
	s.Close()

	s = open(t, dir)
	if p, r, f := s.Counts(); p != 2 || r != 1 || f != 1 {
		t.Fatalf("counts after reopen = %d %d %d", p, r, f)
	}
	running, _ := s.List(context.Background(), job.Running, Filter{})
	if len(running) != 1 || running[0].ID != first.ID || running[0].Handle != "" {
		t.Fatalf("running after reopen = %+v", running)
	}
	if err := s.Requeue(first.Seq); err != nil {
		t.Fatal(err)
	}
	pending, _ := s.List(context.Background(), job.Pending, Filter{})
	if got := ids(pending); !slices.Equal(got, []string{"j1", "j3", "j4"}) {
		t.Fatalf("requeued job lost its place: %v", got)
	}
	fin, err := s.Find(context.Background(), "", "j2")
	if err != nil || fin.Outcome != job.OutcomeFailed || *fin.ExitCode != 1 || fin.PID != 1234 || fin.Stats == "" ||
		len(fin.Settings) != 1 || fin.Args[0] != (job.Pair{Name: "x", Value: "y"}) {
		t.Fatalf("finished record = %+v, %v", fin, err)
	}
}

// TestSpiderCacheSurvivesReopen: the cache is in the database, so a
// restarted daemon does not run `scrapy list` again.
func TestSpiderCacheSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	s.SetSpiders("p", "1.0", []string{"a", "b"})
	s.SetSpiders("p", "2.0", []string{"c"})
	s.Close()
	s = open(t, dir)
	if names, ok, _ := s.Spiders(context.Background(), "p", "1.0"); !ok || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("cache lost across restart: %v %v", names, ok)
	}
}

func BenchmarkEnqueue(b *testing.B) {
	s := open(b, b.TempDir())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Enqueue(job.Spec{ID: job.NewID(), Project: "p", Spider: "s"}, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// Events and delivery cursors are in the database: a restart (or kill -9)
// neither loses an event nor forgets how far each webhook got.
func TestEventsAndCursorsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	a := enqueue(t, s, "a", "p", 0)
	enqueue(t, s, "b", "p", 0)
	if err := s.SetCursor("https://hook/x", 1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	es, err := s.Events(context.Background(), 0, 10)
	if err != nil || len(es) != 2 || es[0].Job.Seq != a.Seq || es[1].Job.ID != "b" {
		t.Fatalf("events after reopen = %+v, %v", es, err)
	}
	if id, ok, _ := s.Cursor(context.Background(), "https://hook/x"); !ok || id != 1 {
		t.Fatalf("cursor after reopen = %d, %v", id, ok)
	}
}
