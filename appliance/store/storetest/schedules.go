package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// claimCaps: a job held back by a cap does not block the jobs behind it,
// which start in priority order; a project's max_proc and a spider's
// spider_max_proc both count running jobs only.
func claimCaps(t *testing.T, s Store) {
	add := func(id, project, spider string, prio float64) {
		t.Helper()
		if _, err := s.Enqueue(job.Spec{ID: id, Project: project, Spider: spider, Priority: prio}, t0); err != nil {
			t.Fatal(err)
		}
	}
	add("a1", "p", "a", 9)
	add("a2", "p", "a", 8)
	add("b1", "p", "b", 7)
	add("b2", "p", "b", 6)
	add("q1", "q", "x", 1)
	caps := store.Caps{"p": {MaxProc: 2, SpiderMaxProc: 1}}
	var got []string
	for {
		j, err := s.Claim(t0, caps)
		if err != nil {
			t.Fatal(err)
		}
		if j == nil {
			break
		}
		got = append(got, j.ID)
	}
	// a1 runs, so a2 waits (spider_max_proc); b1 runs, so p is full
	// (max_proc) and b2 waits; q1 is not capped.
	if want := []string{"a1", "b1", "q1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("claimed %v, want %v", got, want)
	}
	r, err := s.RunningCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.Running{{"p", "a"}: 1, {"p", "b"}: 1, {"q", "x"}: 1}); !reflect.DeepEqual(r, want) {
		t.Fatalf("running counts %v, want %v", r, want)
	}
	if w := caps.Waiting(r, "p", "a"); w != "max_proc" {
		t.Fatalf("a2 waits for %q, want max_proc", w)
	}
	// Without caps the next in priority order comes.
	j, err := s.Claim(t0, nil)
	if err != nil || j == nil || j.ID != "a2" {
		t.Fatalf("uncapped claim: %v %v, want a2", j, err)
	}
}

func schedules(t *testing.T, s Store) {
	ctx := context.Background()
	a := job.Schedule{ID: "s1", Project: "p", Spider: "a", Version: "v1", Priority: 2,
		Settings: []job.Pair{{Name: "A", Value: "1"}}, Args: []job.Pair{{Name: "x", Value: "é"}},
		Cron: "*/5 * * * *", Timezone: "Europe/Paris", Overlap: job.OverlapQueue, Jitter: 3 * time.Second,
		Retries: 2, RetryDelay: time.Second, Created: t0, NextRun: at(300)}
	b := job.Schedule{ID: "s2", Project: "q", Spider: "b", Every: 30 * time.Minute, Overlap: job.OverlapSkip, Created: at(1), NextRun: at(1800)}
	for _, sc := range []job.Schedule{a, b} {
		if err := s.SaveSchedule(sc); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Schedules(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || !same(all[0], a) || !same(all[1], b) {
		t.Fatalf("schedules %+v, want %+v and %+v", all, a, b)
	}
	// An update keeps the id and replaces the rest.
	a.Paused, a.LastRun, a.LastJob, a.NextRun, a.Queued, a.RetryAt, a.RetryAttempt = "project deleted", at(300), "j1", time.Time{}, true, at(301), 1
	if err := s.SaveSchedule(a); err != nil {
		t.Fatal(err)
	}
	got, err := s.Schedules(ctx, "p")
	if err != nil || len(got) != 1 || !same(got[0], a) {
		t.Fatalf("schedules of p %+v (%v), want %+v", got, err, a)
	}
	if err := s.DeleteSchedule("q", "s1"); !errors.Is(err, store.ErrNoSchedule) {
		t.Fatalf("deleting another project's schedule: %v, want ErrNoSchedule", err)
	}
	if err := s.DeleteSchedule("p", "s1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Schedules(ctx, ""); len(got) != 1 || got[0].ID != "s2" {
		t.Fatalf("after delete: %+v", got)
	}
}

// same compares schedules with times by instant.
func same(a, b job.Schedule) bool {
	for _, p := range [][2]*time.Time{{&a.Created, &b.Created}, {&a.NextRun, &b.NextRun}, {&a.LastRun, &b.LastRun}, {&a.RetryAt, &b.RetryAt}} {
		if !p[0].Equal(*p[1]) {
			return false
		}
		*p[0], *p[1] = time.Time{}, time.Time{}
	}
	return reflect.DeepEqual(a, b)
}

// scheduleRuns: a run keeps its schedule, due time and attempt, and the
// schedule's runs are found newest first, the active ones counted.
func scheduleRuns(t *testing.T, s Store) {
	ctx := context.Background()
	for i, id := range []string{"r1", "r2", "r3"} {
		if _, err := s.Enqueue(job.Spec{ID: id, Project: "p", Spider: "a", Schedule: "s1", Due: at(i), Attempt: i}, at(i)); err != nil {
			t.Fatal(err)
		}
	}
	enqueue(t, s, "other", "p", 0)
	j, _ := s.Claim(at(5), nil)
	if err := s.End(j.Seq, at(6), nil, job.OutcomeFailed, "", 10); err != nil {
		t.Fatal(err)
	}
	runs, err := s.ScheduleRuns(ctx, "s1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(runs); !reflect.DeepEqual(got, []string{"r3", "r2"}) {
		t.Fatalf("runs %v, want [r3 r2]", got)
	}
	if r := runs[0]; r.Schedule != "s1" || !r.Due.Equal(at(2)) || r.Attempt != 2 {
		t.Fatalf("run %+v lost its schedule, due time or attempt", r)
	}
	if n, err := s.ActiveRuns(ctx, "s1"); err != nil || n != 2 {
		t.Fatalf("active runs %d (%v), want 2", n, err)
	}
	f, err := s.Find(ctx, "p", "r1")
	if err != nil || f.Outcome != job.OutcomeFailed || f.Schedule != "s1" {
		t.Fatalf("finished run %+v (%v)", f, err)
	}
}
