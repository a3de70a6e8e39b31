package recur

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/store/memstore"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func newScheduler(t *testing.T, st *memstore.Store, c *clock) *Scheduler {
	t.Helper()
	s := New(Options{Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: c.now,
		Zone: func() *time.Location { return time.UTC }})
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func pending(t *testing.T, st *memstore.Store) []job.Job {
	t.Helper()
	l, err := st.List(context.Background(), job.Pending, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// finishAll runs and ends the jobs pending now with outcome o.
func finishAll(t *testing.T, s *Scheduler, st *memstore.Store, c *clock, o job.Outcome) {
	t.Helper()
	for range pending(t, st) {
		j, err := st.Claim(c.t, nil)
		if err != nil {
			t.Fatal(err)
		}
		if j == nil {
			return
		}
		st.End(j.Seq, c.t, nil, o, "", 100)
		j.Outcome = o
		s.Ended(context.Background(), *j)
	}
}

func TestEveryRunsAtItsTimesAndCoalescesMissedOnes(t *testing.T) {
	st, c := memstore.New(), &clock{t0}
	s := newScheduler(t, st, c)
	sc, err := s.Put(job.Schedule{ID: "s", Project: "p", Spider: "a", Every: 10 * time.Second, Overlap: job.OverlapAllow})
	if err != nil {
		t.Fatal(err)
	}
	if !sc.NextRun.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("next run %v, want t0+10s", sc.NextRun)
	}
	c.t = t0.Add(10 * time.Second)
	s.fireDue(context.Background())
	runs := pending(t, st)
	if len(runs) != 1 || runs[0].Schedule != "s" || !runs[0].Due.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("runs %+v, want one of schedule s due at t0+10s", runs)
	}
	// Stopped across three due times: one run when it starts again.
	c.t = t0.Add(45 * time.Second)
	s = newScheduler(t, st, c)
	s.fireDue(context.Background())
	if n := len(pending(t, st)); n != 2 {
		t.Fatalf("%d runs after the restart, want 2 (one catch-up)", n)
	}
	got, _ := s.Get("p", "s")
	if want := t0.Add(50 * time.Second); !got.NextRun.Equal(want) {
		t.Fatalf("next run %v, want %v (the period's phase kept)", got.NextRun, want)
	}
}

func TestOverlapSkipAndQueue(t *testing.T) {
	for _, o := range []job.Overlap{job.OverlapSkip, job.OverlapQueue} {
		t.Run(string(o), func(t *testing.T) {
			st, c := memstore.New(), &clock{t0}
			s := newScheduler(t, st, c)
			if _, err := s.Put(job.Schedule{ID: "s", Project: "p", Spider: "a", Every: time.Minute, Overlap: o}); err != nil {
				t.Fatal(err)
			}
			c.t = t0.Add(time.Minute)
			s.fireDue(context.Background())
			c.t = t0.Add(2 * time.Minute) // the first run is still pending
			s.fireDue(context.Background())
			if n := len(pending(t, st)); n != 1 {
				t.Fatalf("%d runs while one is active, want 1", n)
			}
			finishAll(t, s, st, c, job.OutcomeFinished)
			want := map[job.Overlap]int{job.OverlapSkip: 0, job.OverlapQueue: 1}[o]
			if n := len(pending(t, st)); n != want {
				t.Fatalf("%d runs after the first ended, want %d", n, want)
			}
		})
	}
}

func TestRetriesWithBackoff(t *testing.T) {
	st, c := memstore.New(), &clock{t0}
	s := newScheduler(t, st, c)
	if _, err := s.Put(job.Schedule{ID: "s", Project: "p", Spider: "a", Every: time.Hour, Retries: 2, RetryDelay: time.Second}); err != nil {
		t.Fatal(err)
	}
	c.t = t0.Add(time.Hour)
	s.fireDue(context.Background())
	var attempts []int
	for i := 0; i < 5; i++ {
		for _, j := range pending(t, st) {
			attempts = append(attempts, j.Attempt)
		}
		finishAll(t, s, st, c, job.OutcomeFailed)
		c.t = c.t.Add(10 * time.Second)
		s.fireDue(context.Background())
	}
	if !slices.Equal(attempts, []int{0, 1, 2}) {
		t.Fatalf("attempts %v, want [0 1 2]: the first run and two retries", attempts)
	}
}

func TestBackoffDoubles(t *testing.T) {
	sc := job.Schedule{RetryDelay: 3 * time.Second}
	for i, want := range []time.Duration{3 * time.Second, 6 * time.Second, 12 * time.Second} {
		if got := backoff(sc, i+1); got != want {
			t.Errorf("backoff of retry %d = %v, want %v", i+1, got, want)
		}
	}
}

func TestTimingErrors(t *testing.T) {
	for _, c := range []struct {
		sc   job.Schedule
		want string
	}{
		{job.Schedule{Cron: "* * *"}, "has 3 fields, expected 5"},
		{job.Schedule{Cron: "61 * * * *"}, "cron \"61 * * * *\""},
		{job.Schedule{Cron: "@sometimes"}, "cron \"@sometimes\""},
		{job.Schedule{Cron: "0 3 * * *", Timezone: "Mars/Olympus"}, "unknown timezone"},
		{job.Schedule{Cron: "0 3 * * *", Every: time.Hour}, "not both"},
		{job.Schedule{}, "give cron"},
		{job.Schedule{Every: time.Millisecond}, "shorter than"},
	} {
		if _, err := ParseTiming(c.sc, time.UTC); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one with %q", c.sc, err, c.want)
		}
	}
}

func TestCronInItsTimezone(t *testing.T) {
	tm, err := ParseTiming(job.Schedule{Cron: "30 2 * * *", Timezone: "Europe/Paris"}, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	// 02:30 in Paris in March (before DST) is 01:30 UTC.
	if got, want := tm.After(t0, time.Time{}), time.Date(2026, 3, 2, 1, 30, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("next %v, want %v", got, want)
	}
	daily, err := ParseTiming(job.Schedule{Cron: "@daily"}, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if got := daily.After(t0, time.Time{}); !got.Equal(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("@daily next %v", got)
	}
}

func TestPauseAndPauseWhere(t *testing.T) {
	st, c := memstore.New(), &clock{t0}
	s := newScheduler(t, st, c)
	s.Put(job.Schedule{ID: "a", Project: "p", Spider: "a", Every: time.Minute, Version: "v1"})
	s.Put(job.Schedule{ID: "b", Project: "p", Spider: "a", Every: time.Minute})
	s.PauseWhere("p", "v1", "version v1 was deleted")
	c.t = t0.Add(time.Minute)
	s.fireDue(context.Background())
	runs := pending(t, st)
	if len(runs) != 1 || runs[0].Schedule != "b" {
		t.Fatalf("runs %+v, want only b's", runs)
	}
	a, _ := s.Get("p", "a")
	if a.Paused != "version v1 was deleted" || !a.NextRun.IsZero() {
		t.Fatalf("a %+v, want paused with the reason", a)
	}
	if _, err := s.Resume("p", "a"); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Get("p", "a"); a.Paused != "" || !a.NextRun.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("resumed %+v", a)
	}
	if err := s.Delete("q", "a"); err != ErrNotFound {
		t.Fatalf("delete from another project: %v", err)
	}
	// Another project cannot take over a schedule by its id.
	_, err := s.Put(job.Schedule{ID: "a", Project: "q", Spider: "a", Every: time.Minute})
	var other *OtherProjectError
	if !errors.As(err, &other) || err.Error() != `schedule "a" belongs to project "p"` {
		t.Fatalf("put of p's schedule in q: %v", err)
	}
	if a, _ := s.Get("p", "a"); a.Project != "p" || a.Version != "v1" {
		t.Fatalf("after the refused put: %+v", a)
	}
}

func TestJitterDelaysWithinItsBound(t *testing.T) {
	st, c := memstore.New(), &clock{t0}
	s := newScheduler(t, st, c)
	if _, err := s.Put(job.Schedule{ID: "s", Project: "p", Spider: "a", Every: 10 * time.Second, Jitter: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	at := s.byID["s"].at
	s.mu.Unlock()
	if at.Before(t0.Add(10*time.Second)) || at.After(t0.Add(15*time.Second)) {
		t.Fatalf("armed for %v, want within [t0+10s, t0+15s]", at)
	}
	c.t = t0.Add(15 * time.Second)
	s.fireDue(context.Background())
	runs := pending(t, st)
	if len(runs) != 1 || !runs[0].Due.Equal(at) {
		t.Fatalf("runs %+v, want one due at %v", runs, at)
	}
	// The period keeps its phase: the jitter does not accumulate.
	if got, _ := s.Get("p", "s"); !got.NextRun.Equal(t0.Add(20 * time.Second)) {
		t.Fatalf("next run %v, want t0+20s", got.NextRun)
	}
}

// TestLoadAgainTakesTheLeadOver: in a cluster two nodes' schedulers share
// the store and one leads. The other, loaded before the leader made a
// run, loads again when it takes the lead: it makes no second run for
// the due time already made, makes the next, and forgets a schedule
// deleted meanwhile.
func TestLoadAgainTakesTheLeadOver(t *testing.T) {
	st, c := memstore.New(), &clock{t0}
	lead := newScheduler(t, st, c)
	for _, id := range []string{"s", "gone"} {
		if _, err := lead.Put(job.Schedule{ID: id, Project: "p", Spider: "a", Every: 10 * time.Second, Overlap: job.OverlapAllow}); err != nil {
			t.Fatal(err)
		}
	}
	next := newScheduler(t, st, c)
	c.t = t0.Add(10 * time.Second)
	lead.fireDue(context.Background())
	if n := len(pending(t, st)); n != 2 {
		t.Fatalf("%d runs, want 2", n)
	}
	if err := lead.Delete("p", "gone"); err != nil {
		t.Fatal(err)
	}
	// The lead is gone; the other node takes over.
	if err := next.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	next.fireDue(context.Background())
	if n := len(pending(t, st)); n != 2 {
		t.Fatalf("%d runs after the takeover at the same time, want still 2", n)
	}
	if l := next.List(""); len(l) != 1 || l[0].ID != "s" {
		t.Fatalf("schedules after the takeover %+v, want s alone", l)
	}
	c.t = t0.Add(20 * time.Second)
	next.fireDue(context.Background())
	runs := pending(t, st)
	if len(runs) != 3 || !runs[2].Due.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("runs %+v, want a third, due at t0+20s", runs)
	}
}

// runMadeStore refuses every run, as pgstore refuses one for a due time
// that has a run.
type runMadeStore struct{ *memstore.Store }

func (runMadeStore) Enqueue(job.Spec, time.Time) (job.Job, error) { return job.Job{}, job.ErrRunMade }

// TestRunMadeAlready: a run the store says was made already is not made
// again and is no error; the schedule moves on to its next due time.
func TestRunMadeAlready(t *testing.T) {
	c := &clock{t0}
	var logs strings.Builder
	s := New(Options{Store: runMadeStore{memstore.New()}, Log: slog.New(slog.NewTextHandler(&logs, nil)), Now: c.now})
	if _, err := s.Put(job.Schedule{ID: "s", Project: "p", Spider: "a", Every: 10 * time.Second, Overlap: job.OverlapAllow}); err != nil {
		t.Fatal(err)
	}
	c.t = t0.Add(10 * time.Second)
	s.fireDue(context.Background())
	got, _ := s.Get("p", "s")
	if !got.NextRun.Equal(t0.Add(20*time.Second)) || got.LastJob != "" {
		t.Errorf("schedule after a run made already: next %v, last job %q; want t0+20s and none", got.NextRun, got.LastJob)
	}
	if !strings.Contains(logs.String(), "made already") || strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// TestRefreshTakesAnotherNodesChanges: the lead reads a project's
// schedules again when another node changed them: an added one runs, a
// deleted one no longer does, and another project's are left as they are.
func TestRefreshTakesAnotherNodesChanges(t *testing.T) {
	st, c := memstore.New(), &clock{t0}
	lead, other := newScheduler(t, st, c), newScheduler(t, st, c)
	every := func(id, project string) job.Schedule {
		return job.Schedule{ID: id, Project: project, Spider: "a", Every: 10 * time.Second, Overlap: job.OverlapAllow}
	}
	for _, sc := range []job.Schedule{every("gone", "p"), every("q1", "q")} {
		if _, err := lead.Put(sc); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Put(every("new", "p")); err != nil {
		t.Fatal(err)
	}
	if err := other.Delete("p", "gone"); err != nil {
		t.Fatal(err)
	}
	if err := lead.Refresh(context.Background(), "p"); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, sc := range lead.List("") {
		ids = append(ids, sc.ID)
	}
	if strings.Join(ids, " ") != "new q1" {
		t.Fatalf("the lead's schedules after the refresh: %v, want new q1", ids)
	}
	c.t = t0.Add(10 * time.Second)
	lead.fireDue(context.Background())
	var made []string
	for _, j := range pending(t, st) {
		made = append(made, j.Schedule)
	}
	slices.Sort(made)
	if strings.Join(made, " ") != "new q1" {
		t.Fatalf("runs made %v, want new and q1", made)
	}
}
