package store

import (
	"context"
	"errors"
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

func TestQueueIsGlobalByPriorityThenFirstScheduled(t *testing.T) {
	s := open(t, t.TempDir())
	enqueue(t, s, "a1", "a", 0)
	enqueue(t, s, "b1", "b", 10) // a higher priority in another project wins (Scrapyd #187)
	enqueue(t, s, "a2", "a", 0)
	enqueue(t, s, "c1", "c", -1)
	enqueue(t, s, "b2", "b", 10)
	pending, _ := s.List(context.Background(), job.Pending, Filter{})
	if got, want := ids(pending), []string{"b1", "b2", "a1", "a2", "c1"}; !slices.Equal(got, want) {
		t.Fatalf("pending = %v, want %v", got, want)
	}
	var claimed []string
	for {
		j, err := s.Claim(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if j == nil {
			break
		}
		claimed = append(claimed, j.ID)
	}
	if !slices.Equal(claimed, []string{"b1", "b2", "a1", "a2", "c1"}) {
		t.Fatalf("claim order = %v", claimed)
	}
	if p, r, f := s.Counts(); p != 0 || r != 5 || f != 0 {
		t.Fatalf("counts = %d %d %d", p, r, f)
	}
}

func TestDuplicateIDsOnlyAmongActiveJobs(t *testing.T) {
	s := open(t, t.TempDir())
	j := enqueue(t, s, "same", "p", 0)
	if _, err := s.Enqueue(job.Spec{ID: "same", Project: "p", Spider: "s"}, time.Now()); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second pending job with the same id: err = %v", err)
	}
	c, _ := s.Claim(time.Now())
	s.Started(c.Seq, "h", 1)
	code := 0
	if err := s.End(j.Seq, time.Now(), &code, job.OutcomeFinished, "", 100); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(job.Spec{ID: "same", Project: "p", Spider: "s"}, time.Now()); err != nil {
		t.Fatalf("reusing a finished job's id (ScrapydWeb does) must work: %v", err)
	}
}

func TestStateSurvivesReopenAndRequeueKeepsOrder(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	for _, id := range []string{"j1", "j2", "j3", "j4"} {
		enqueue(t, s, id, "p", 0)
	}
	first, _ := s.Claim(time.Now()) // j1: claimed, never started (a crash)
	second, _ := s.Claim(time.Now())
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

func TestFinishedToKeep(t *testing.T) {
	s := open(t, t.TempDir())
	for i := 0; i < 5; i++ {
		j := enqueue(t, s, string(rune('a'+i)), "p", 0)
		s.Claim(time.Now())
		s.End(j.Seq, time.Now(), nil, job.OutcomeFinished, "", 3)
	}
	fin, _ := s.List(context.Background(), job.Finished, Filter{})
	if got := ids(fin); !slices.Equal(got, []string{"e", "d", "c"}) {
		t.Fatalf("finished = %v, want the 3 newest, newest first", got)
	}
	if err := s.Trim(0); err != nil {
		t.Fatal(err)
	}
	if _, _, f := s.Counts(); f != 0 {
		t.Fatalf("finished_to_keep = 0 keeps none; have %d", f)
	}
}

// TestSnapshot: each state as of one moment; the history paged and
// filtered.
func TestSnapshot(t *testing.T) {
	s := open(t, t.TempDir())
	for _, id := range []string{"f1", "f2", "f3"} {
		j := enqueue(t, s, id, "p", 0)
		s.Claim(time.Now())
		s.End(j.Seq, time.Now(), nil, job.OutcomeFinished, "", 100)
	}
	enqueue(t, s, "p1", "p", 0)
	all := map[job.State]bool{job.Pending: true, job.Running: true, job.Finished: true}
	ctx := context.Background()
	pending, running, done, err := s.Snapshot(ctx, Filter{}, Filter{Limit: 2}, all)
	if err != nil || !slices.Equal(ids(pending), []string{"p1"}) || len(running) != 0 || !slices.Equal(ids(done), []string{"f3", "f2"}) {
		t.Fatalf("snapshot = %v %v %v, %v", ids(pending), ids(running), ids(done), err)
	}
	_, _, again, err := s.Snapshot(ctx, Filter{}, Filter{Offset: 1}, map[job.State]bool{job.Finished: true})
	if err != nil || !slices.Equal(ids(again), []string{"f2", "f1"}) {
		t.Fatalf("finished-only snapshot = %v, %v", ids(again), err)
	}
	if _, _, none, _ := s.Snapshot(ctx, Filter{}, Filter{Project: "other"}, all); len(none) != 0 {
		t.Fatalf("another project's finished jobs: %v", none)
	}
}

func TestCancelPendingAndStatusOrder(t *testing.T) {
	s := open(t, t.TempDir())
	enqueue(t, s, "x", "p", 0)
	if n, _ := s.CancelPending("other", "x"); n != 0 {
		t.Fatal("cancel must match the project")
	}
	if n, _ := s.CancelPending("p", "x"); n != 1 {
		t.Fatal("pending job not removed")
	}
	if _, err := s.Find(context.Background(), "", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a job cancelled while pending leaves no trace (Scrapyd): %v", err)
	}
}

func TestSpiderCache(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	s.SetSpiders("p", "1.0", []string{"a", "b"})
	s.SetSpiders("p", "2.0", []string{"c"})
	s.Close()
	s = open(t, dir)
	if names, ok, _ := s.Spiders(context.Background(), "p", "1.0"); !ok || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("cache lost across restart: %v %v", names, ok)
	}
	s.ForgetSpiders("p", "1.0")
	if _, ok, _ := s.Spiders(context.Background(), "p", "1.0"); ok {
		t.Fatal("ForgetSpiders(version) kept it")
	}
	s.ForgetSpiders("p", "")
	if _, ok, _ := s.Spiders(context.Background(), "p", "2.0"); ok {
		t.Fatal("ForgetSpiders(project) kept a version")
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
