package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// describe is an event as "type job[/outcome]".
func describe(es []store.Event) []string {
	var out []string
	for _, e := range es {
		d := fmt.Sprintf("%s %s", e.Type, e.Job.ID)
		if e.Job.Outcome != "" {
			d += "/" + string(e.Job.Outcome)
		}
		out = append(out, d)
	}
	return out
}

func allEvents(t *testing.T, s Store) []store.Event {
	t.Helper()
	es, err := s.Events(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// events: every state change of a job writes its event with it, and only
// a change that happened does (issue 17 point 3).
func events(t *testing.T, s Store) {
	ctx := context.Background()
	var heard []int64
	s.OnEvent(func(last int64) { heard = append(heard, last) })
	a := enqueue(t, s, "a", "p", 0)
	enqueue(t, s, "b", "p", 0)
	if _, err := s.Enqueue(job.Spec{ID: "a", Project: "p", Spider: "s"}, t0); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("duplicate: %v", err)
	}
	j, _ := s.Claim(at(1), nil)
	if j.Seq != a.Seq {
		t.Fatalf("claimed %s", j.ID)
	}
	// The handle stored before the start is no event; the launched
	// crawl's is.
	if err := s.Launching(j.Seq, "planned-a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Started(j.Seq, "unit-a", 77); err != nil {
		t.Fatal(err)
	}
	code := 0
	if err := s.End(j.Seq, at(5), &code, job.OutcomeFinished, `{"item_scraped_count": 3}`, 0); err != nil {
		t.Fatal(err)
	}
	// A second report of the same end is no event.
	if err := s.End(j.Seq, at(9), nil, job.OutcomeLost, "", 0); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CancelPending("p", "b"); n != 1 || err != nil {
		t.Fatalf("cancel b = %d, %v", n, err)
	}
	enqueue(t, s, "c", "p", 0)
	c, _ := s.Claim(at(6), nil)
	// Claimed, then put back (a daemon died before the launch): no event.
	if err := s.Requeue(c.Seq); err != nil {
		t.Fatal(err)
	}
	c, _ = s.Claim(at(7), nil)
	// A crawl that could not start ends without having started.
	if err := s.End(c.Seq, at(8), nil, job.OutcomeFailed, "", 100); err != nil {
		t.Fatal(err)
	}

	es := allEvents(t, s)
	want := []string{"scheduled a", "scheduled b", "started a", "finished a/finished", "finished b/cancelled", "scheduled c", "finished c/failed"}
	if got := describe(es); !slices.Equal(got, want) {
		t.Fatalf("events = %q, want %q", got, want)
	}
	var ids []int64
	for i, e := range es {
		if i > 0 && e.ID <= es[i-1].ID {
			t.Fatalf("event ids not increasing: %d after %d", e.ID, es[i-1].ID)
		}
		ids = append(ids, e.ID)
	}
	if !slices.Equal(heard, ids) {
		t.Fatalf("OnEvent heard %v, want each event's id %v", heard, ids)
	}
	if last, err := s.LastEventID(ctx); err != nil || last != ids[len(ids)-1] {
		t.Fatalf("LastEventID = %d, %v; want %d", last, err, ids[len(ids)-1])
	}
	sched, started, fin := es[0], es[2], es[3]
	if sched.Job.State != job.Pending || !sched.Time.Equal(t0) || sched.Job.Seq != a.Seq || sched.Job.Spider != "s" {
		t.Fatalf("scheduled = %+v", sched)
	}
	if started.Job.State != job.Running || !started.Time.Equal(at(1)) || started.Job.PID != 77 {
		t.Fatalf("started = %+v", started)
	}
	f := fin.Job
	if f.State != job.Finished || !fin.Time.Equal(at(5)) || !f.Started.Equal(at(1)) || !f.Ended.Equal(at(5)) ||
		f.ExitCode == nil || *f.ExitCode != 0 || f.Stats != `{"item_scraped_count": 3}` {
		t.Fatalf("finished = %+v", fin)
	}
	// Events leave the daemon: spider arguments may carry credentials.
	for _, e := range es {
		if e.Job.Settings != nil || e.Job.Args != nil || e.Job.Handle != "" {
			t.Fatalf("event %d carries settings, arguments or the handle: %+v", e.ID, e.Job)
		}
	}
	if cancelled := es[4]; !cancelled.Job.Started.IsZero() || cancelled.Job.Ended.IsZero() {
		t.Fatalf("cancelled pending job's event = %+v", cancelled)
	}
	page, err := s.Events(ctx, ids[2], 2)
	if err != nil || !slices.Equal(describe(page), want[3:5]) {
		t.Fatalf("Events(after %d, 2) = %q, %v", ids[2], describe(page), err)
	}
	if rest, _ := s.Events(ctx, ids[len(ids)-1], 10); len(rest) != 0 {
		t.Fatalf("events after the last = %q", describe(rest))
	}
}

// eventCursors: a consumer's cursor is kept; a trim drops old events but
// never lowers the IDs to come.
func eventCursors(t *testing.T, s Store) {
	ctx := context.Background()
	if _, ok, err := s.Cursor(ctx, "https://a/x"); ok || err != nil {
		t.Fatalf("a new consumer has a cursor (%v)", err)
	}
	for _, id := range []string{"a", "b", "c"} {
		enqueue(t, s, id, "p", 0)
	}
	es := allEvents(t, s)
	if err := s.SetCursor("https://a/x", es[1].ID); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCursor("https://b/y", es[0].ID); err != nil {
		t.Fatal(err)
	}
	if id, ok, err := s.Cursor(ctx, "https://a/x"); !ok || err != nil || id != es[1].ID {
		t.Fatalf("cursor = %d, %v, %v; want %d", id, ok, err, es[1].ID)
	}
	if err := s.TrimEvents(es[2].ID); err != nil {
		t.Fatal(err)
	}
	if rest := allEvents(t, s); len(rest) != 0 {
		t.Fatalf("after trimming all: %q", describe(rest))
	}
	enqueue(t, s, "d", "p", 0)
	rest := allEvents(t, s)
	if len(rest) != 1 || rest[0].ID <= es[2].ID {
		t.Fatalf("after a trim, the next event = %+v; want one with an id above %d", rest, es[2].ID)
	}
	if last, _ := s.LastEventID(ctx); last != rest[0].ID {
		t.Fatalf("LastEventID = %d, want %d", last, rest[0].ID)
	}
}
