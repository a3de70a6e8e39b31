// Package storetest is the contract of a job store: what the service and
// the dispatcher rely on, as tests that every implementation must pass
// (store.Store on SQLite, memstore.Store; a PostgreSQL store next).
package storetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Store is every method of a job store. The consumers declare the parts
// they use (service.Jobs, dispatch.Jobs); each is a subset of this one.
type Store interface {
	Counts() (pending, running, finished int)
	Enqueue(spec job.Spec, now time.Time) (job.Job, error)
	Claim(now time.Time, caps store.Caps) (*job.Job, error)
	Launching(seq int64, handle string) error
	Started(seq int64, handle string, pid int) error
	Requeue(seq int64) error
	End(seq int64, ended time.Time, exit *int, outcome job.Outcome, stats string, keep int) error
	SetStats(seq int64, stats string) error
	Trim(keep int) error
	CancelPending(project, id string) (int, error)
	MarkCancelled(seq int64) (before bool, err error)
	List(ctx context.Context, state job.State, f store.Filter) ([]job.Job, error)
	Snapshot(ctx context.Context, f, finished store.Filter, want map[job.State]bool) (pending, running, done []job.Job, err error)
	Find(ctx context.Context, project, id string) (*job.Job, error)
	IsRunning(ctx context.Context, id string) bool
	Spiders(ctx context.Context, project, version string) ([]string, bool, error)
	SetSpiders(project, version string, names []string) error
	ForgetSpiders(project, version string) error
	OnEvent(fn func(last int64))
	Events(ctx context.Context, after int64, limit int) ([]store.Event, error)
	LastEventID(ctx context.Context) (int64, error)
	Cursor(ctx context.Context, name string) (id int64, ok bool, err error)
	SetCursor(name string, id int64) error
	TrimEvents(id int64) error
	ActiveByProject(ctx context.Context) ([]store.ProjectCount, error)
	LastSuccesses(ctx context.Context) ([]store.SpiderSuccess, error)
	RunningCounts(ctx context.Context) (store.Running, error)
	SaveSchedule(sc job.Schedule) error
	Schedules(ctx context.Context, project string) ([]job.Schedule, error)
	DeleteSchedule(project, id string) error
	ScheduleRuns(ctx context.Context, id string, limit int) ([]job.Job, error)
	ActiveRuns(ctx context.Context, id string) (int, error)
}

// Run runs the contract; open returns a new, empty store.
func Run(t *testing.T, open func(t *testing.T) Store) {
	for _, c := range []struct {
		name string
		test func(*testing.T, Store)
	}{
		{"QueueIsGlobalByPriorityThenFirstScheduled", queueOrder},
		{"DuplicateIDsOnlyAmongActiveJobs", duplicates},
		{"ClaimStartedEnd", lifecycle},
		{"RequeueKeepsPlaceOnlyWithoutHandle", requeue},
		{"FinishedToKeep", finishedToKeep},
		{"HistoryOrderAndPaging", history},
		{"Snapshot", snapshot},
		{"CancelPendingAndFind", cancelAndFind},
		{"MarkCancelled", markCancelled},
		{"SpiderCache", spiderCache},
		{"EventsWithEachChange", events},
		{"EventCursorsAndTrim", eventCursors},
		{"ActiveByProject", activeByProject},
		{"LastSuccesses", lastSuccesses},
		{"ClaimSkipsCappedJobs", claimCaps},
		{"Schedules", schedules},
		{"ScheduleRuns", scheduleRuns},
	} {
		t.Run(c.name, func(t *testing.T) { c.test(t, open(t)) })
	}
}

var t0 = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func enqueue(t *testing.T, s Store, id, project string, prio float64) job.Job {
	t.Helper()
	j, err := s.Enqueue(job.Spec{ID: id, Project: project, Spider: "s", Priority: prio,
		Settings: []job.Pair{{Name: "A", Value: "1"}, {Name: "A", Value: "2"}}, Args: []job.Pair{{Name: "x", Value: "é"}}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// finish runs a job from the queue to the history, ending at end.
func finish(t *testing.T, s Store, spec job.Spec, end time.Time, keep int) {
	t.Helper()
	if _, err := s.Enqueue(spec, end.Add(-2*time.Second)); err != nil {
		t.Fatal(err)
	}
	j, err := s.Claim(end.Add(-time.Second), nil)
	if err != nil || j == nil || j.ID != spec.ID {
		t.Fatalf("claim = %v, %v; want %s", j, err, spec.ID)
	}
	if err := s.End(j.Seq, end, nil, job.OutcomeFinished, "", keep); err != nil {
		t.Fatal(err)
	}
}

func ids(jobs []job.Job) []string {
	out := []string{}
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

func counts(t *testing.T, s Store, p, r, f int) {
	t.Helper()
	if gp, gr, gf := s.Counts(); gp != p || gr != r || gf != f {
		t.Fatalf("counts = %d pending, %d running, %d finished; want %d %d %d", gp, gr, gf, p, r, f)
	}
}

func list(t *testing.T, s Store, state job.State, f store.Filter) []string {
	t.Helper()
	jobs, err := s.List(context.Background(), state, f)
	if err != nil {
		t.Fatal(err)
	}
	return ids(jobs)
}

func queueOrder(t *testing.T, s Store) {
	enqueue(t, s, "a1", "a", 0)
	enqueue(t, s, "b1", "b", 10) // a higher priority in another project wins (Scrapyd #187)
	enqueue(t, s, "a2", "a", 0)
	enqueue(t, s, "c1", "c", -1)
	enqueue(t, s, "b2", "b", 10)
	counts(t, s, 5, 0, 0)
	if got, want := list(t, s, job.Pending, store.Filter{}), []string{"b1", "b2", "a1", "a2", "c1"}; !slices.Equal(got, want) {
		t.Fatalf("pending = %v, want %v", got, want)
	}
	if got := list(t, s, job.Pending, store.Filter{Project: "a"}); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Fatalf("project a's pending = %v", got)
	}
	var claimed []string
	for {
		j, err := s.Claim(t0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if j == nil {
			break
		}
		if j.State != job.Running || !j.Started.Equal(t0) {
			t.Fatalf("claimed job = %+v, want running since t0", j)
		}
		claimed = append(claimed, j.ID)
	}
	if !slices.Equal(claimed, []string{"b1", "b2", "a1", "a2", "c1"}) {
		t.Fatalf("claim order = %v", claimed)
	}
	counts(t, s, 0, 5, 0)
}

func duplicates(t *testing.T, s Store) {
	enqueue(t, s, "same", "p", 0)
	for _, project := range []string{"p", "other"} {
		if _, err := s.Enqueue(job.Spec{ID: "same", Project: project, Spider: "s"}, t0); !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("a second pending job with the same id (project %s): err = %v, want ErrDuplicate", project, err)
		}
	}
	j, _ := s.Claim(t0, nil)
	if _, err := s.Enqueue(job.Spec{ID: "same", Project: "p", Spider: "s"}, t0); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("same id as a running job: err = %v, want ErrDuplicate", err)
	}
	code := 0
	if err := s.End(j.Seq, at(1), &code, job.OutcomeFinished, "", 100); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(job.Spec{ID: "same", Project: "p", Spider: "s"}, t0); err != nil {
		t.Fatalf("reusing a finished job's id (ScrapydWeb does) must work: %v", err)
	}
	counts(t, s, 1, 0, 1)
}

func lifecycle(t *testing.T, s Store) {
	ctx := context.Background()
	queued := enqueue(t, s, "j", "p", 0)
	if queued.State != job.Pending || queued.Seq == 0 || !queued.Scheduled.Equal(t0) {
		t.Fatalf("enqueued = %+v", queued)
	}
	j, err := s.Claim(at(1), nil)
	if err != nil || j.Seq != queued.Seq {
		t.Fatalf("claim = %+v, %v", j, err)
	}
	if !s.IsRunning(ctx, "j") || s.IsRunning(ctx, "other") {
		t.Fatal("IsRunning wrong")
	}
	// A handle known before the start is stored first (a systemd unit's
	// name, pid unknown), then replaced by the launcher's.
	if err := s.Launching(j.Seq, "planned-j"); err != nil {
		t.Fatal(err)
	}
	if running, _ := s.List(ctx, job.Running, store.Filter{}); len(running) != 1 || running[0].Handle != "planned-j" || running[0].PID != 0 {
		t.Fatalf("running with a planned handle = %+v", running)
	}
	if err := s.Started(j.Seq, "unit-j", 1234); err != nil {
		t.Fatal(err)
	}
	running, _ := s.List(ctx, job.Running, store.Filter{})
	if len(running) != 1 || running[0].Handle != "unit-j" || running[0].PID != 1234 {
		t.Fatalf("running = %+v", running)
	}
	code := 3
	if err := s.End(j.Seq, at(2), &code, job.OutcomeFailed, `{"item_scraped_count": 3}`, 100); err != nil {
		t.Fatal(err)
	}
	// A second report of the same end changes nothing.
	if err := s.End(j.Seq, at(9), nil, job.OutcomeLost, "", 100); err != nil {
		t.Fatal(err)
	}
	counts(t, s, 0, 0, 1)
	if s.IsRunning(ctx, "j") {
		t.Fatal("an ended job is running")
	}
	f, err := s.Find(ctx, "p", "j")
	if err != nil {
		t.Fatal(err)
	}
	if f.State != job.Finished || f.Outcome != job.OutcomeFailed || f.ExitCode == nil || *f.ExitCode != 3 || f.PID != 1234 ||
		f.Handle != "unit-j" || f.Stats != `{"item_scraped_count": 3}` || !f.Scheduled.Equal(t0) || !f.Started.Equal(at(1)) || !f.Ended.Equal(at(2)) ||
		!slices.Equal(f.Settings, []job.Pair{{Name: "A", Value: "1"}, {Name: "A", Value: "2"}}) || !slices.Equal(f.Args, []job.Pair{{Name: "x", Value: "é"}}) {
		t.Fatalf("finished record = %+v", f)
	}
	// The log counts added after the end replace the stats.
	if err := s.SetStats(j.Seq, `{"item_scraped_count": 3, "scrapyd/log_count/error": 1}`); err != nil {
		t.Fatal(err)
	}
	if f, _ := s.Find(ctx, "p", "j"); f == nil || f.Stats != `{"item_scraped_count": 3, "scrapyd/log_count/error": 1}` {
		t.Fatalf("stats after SetStats = %+v", f)
	}
}

func requeue(t *testing.T, s Store) {
	for _, id := range []string{"j1", "j2", "j3", "j4"} {
		enqueue(t, s, id, "p", 0)
	}
	first, _ := s.Claim(t0, nil) // j1: claimed, never started (a crash)
	second, _ := s.Claim(t0, nil)
	s.Started(second.Seq, "h2", 2)
	if err := s.Requeue(second.Seq); err != nil {
		t.Fatal(err)
	}
	if err := s.Requeue(first.Seq); err != nil {
		t.Fatal(err)
	}
	counts(t, s, 3, 1, 0)
	if got := list(t, s, job.Pending, store.Filter{}); !slices.Equal(got, []string{"j1", "j3", "j4"}) {
		t.Fatalf("pending = %v: the requeued job keeps its place, the one with a handle stays running", got)
	}
	if got := list(t, s, job.Running, store.Filter{}); !slices.Equal(got, []string{"j2"}) {
		t.Fatalf("running = %v", got)
	}
	again, _ := s.Claim(at(5), nil)
	if again.ID != "j1" || !again.Started.Equal(at(5)) {
		t.Fatalf("claim after requeue = %+v", again)
	}
}

func finishedToKeep(t *testing.T, s Store) {
	for i, id := range []string{"a", "b", "c", "d", "e"} {
		finish(t, s, job.Spec{ID: id, Project: "p", Spider: "s"}, at(i), 3)
	}
	if got := list(t, s, job.Finished, store.Filter{}); !slices.Equal(got, []string{"e", "d", "c"}) {
		t.Fatalf("finished = %v, want the 3 newest, newest first", got)
	}
	counts(t, s, 0, 0, 3)
	if err := s.Trim(1); err != nil {
		t.Fatal(err)
	}
	if got := list(t, s, job.Finished, store.Filter{}); !slices.Equal(got, []string{"e"}) {
		t.Fatalf("after Trim(1): %v", got)
	}
	if err := s.Trim(0); err != nil {
		t.Fatal(err)
	}
	counts(t, s, 0, 0, 0) // finished_to_keep = 0 keeps none (Scrapyd's SqliteJobStorage)
}

func history(t *testing.T, s Store) {
	// Ended out of order, two at the same instant (the later scheduled
	// first), in two projects and two spiders.
	for _, f := range []struct {
		id, project, spider string
		end                 int
	}{{"h1", "p", "s1", 5}, {"h2", "q", "s2", 1}, {"h3", "p", "s2", 5}, {"h4", "q", "s1", 3}, {"h5", "p", "s1", 9}} {
		finish(t, s, job.Spec{ID: f.id, Project: f.project, Spider: f.spider}, at(f.end), 100)
	}
	for _, c := range []struct {
		f    store.Filter
		want []string
	}{
		{store.Filter{}, []string{"h5", "h3", "h1", "h4", "h2"}},
		{store.Filter{Limit: 2}, []string{"h5", "h3"}},
		{store.Filter{Limit: 2, Offset: 2}, []string{"h1", "h4"}},
		{store.Filter{Offset: 4}, []string{"h2"}},
		{store.Filter{Offset: 5}, []string{}},
		{store.Filter{Project: "p"}, []string{"h5", "h3", "h1"}},
		{store.Filter{Spider: "s1"}, []string{"h5", "h1", "h4"}},
		{store.Filter{Project: "p", Spider: "s1", Offset: 1}, []string{"h1"}},
		{store.Filter{Project: "none"}, []string{}},
	} {
		if got := list(t, s, job.Finished, c.f); !slices.Equal(got, c.want) {
			t.Errorf("finished %+v = %v, want %v", c.f, got, c.want)
		}
	}
}

func snapshot(t *testing.T, s Store) {
	ctx := context.Background()
	all := map[job.State]bool{job.Pending: true, job.Running: true, job.Finished: true}
	p, r, f, err := s.Snapshot(ctx, store.Filter{}, store.Filter{}, all)
	if err != nil || len(p)+len(r)+len(f) != 0 {
		t.Fatalf("empty store's snapshot = %v %v %v, %v", p, r, f, err)
	}
	for i, id := range []string{"f1", "f2", "f3"} {
		finish(t, s, job.Spec{ID: id, Project: "p", Spider: "s"}, at(i), 100)
	}
	enqueue(t, s, "r1", "p", 0)
	s.Claim(at(10), nil)
	enqueue(t, s, "p1", "p", 0)
	enqueue(t, s, "o1", "other", 0)
	p, r, f, err = s.Snapshot(ctx, store.Filter{Project: "p"}, store.Filter{Project: "p", Limit: 2}, all)
	if err != nil || !slices.Equal(ids(p), []string{"p1"}) || !slices.Equal(ids(r), []string{"r1"}) || !slices.Equal(ids(f), []string{"f3", "f2"}) {
		t.Fatalf("snapshot = %v %v %v, %v", ids(p), ids(r), ids(f), err)
	}
	p, r, f, err = s.Snapshot(ctx, store.Filter{}, store.Filter{Offset: 1}, map[job.State]bool{job.Finished: true})
	if err != nil || len(p) != 0 || len(r) != 0 || !slices.Equal(ids(f), []string{"f2", "f1"}) {
		t.Fatalf("finished-only snapshot = %v %v %v, %v", ids(p), ids(r), ids(f), err)
	}
	if _, _, none, _ := s.Snapshot(ctx, store.Filter{}, store.Filter{Project: "other"}, all); len(none) != 0 {
		t.Fatalf("another project's finished jobs: %v", ids(none))
	}
}

func cancelAndFind(t *testing.T, s Store) {
	ctx := context.Background()
	// status.json's search order: finished (newest first), then running,
	// then pending.
	finish(t, s, job.Spec{ID: "x", Project: "p", Spider: "s"}, at(1), 100)
	finish(t, s, job.Spec{ID: "x", Project: "p", Spider: "s"}, at(3), 100)
	enqueue(t, s, "x", "p", 0)
	if j, err := s.Find(ctx, "", "x"); err != nil || j.State != job.Finished || !j.Ended.Equal(at(3)) {
		t.Fatalf("Find = %+v, %v; want the newest finished", j, err)
	}
	if _, err := s.Find(ctx, "other", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Find in another project: %v, want ErrNotFound", err)
	}
	if n, err := s.CancelPending("other", "x"); n != 0 || err != nil {
		t.Fatalf("cancel must match the project: %d, %v", n, err)
	}
	if n, err := s.CancelPending("p", "x"); n != 1 || err != nil {
		t.Fatalf("CancelPending = %d, %v", n, err)
	}
	counts(t, s, 0, 0, 2)
	enqueue(t, s, "y", "p", 0)
	if j, err := s.Find(ctx, "p", "y"); err != nil || j.State != job.Pending {
		t.Fatalf("Find pending = %+v, %v", j, err)
	}
	s.CancelPending("p", "y")
	if _, err := s.Find(ctx, "", "y"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a job cancelled while pending leaves no trace (Scrapyd): %v", err)
	}
}

func markCancelled(t *testing.T, s Store) {
	enqueue(t, s, "c", "p", 0)
	j, _ := s.Claim(t0, nil)
	for i, want := range []bool{false, true} {
		if before, err := s.MarkCancelled(j.Seq); err != nil || before != want {
			t.Fatalf("cancel %d: before = %v, %v; want %v", i+1, before, err, want)
		}
	}
	if r, _ := s.List(context.Background(), job.Running, store.Filter{}); len(r) != 1 || !r[0].Cancelled {
		t.Fatalf("running = %+v, want cancelled", r)
	}
	if _, err := s.MarkCancelled(j.Seq + 1000); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("MarkCancelled of no job: %v, want ErrNotFound", err)
	}
}

func spiderCache(t *testing.T, s Store) {
	ctx := context.Background()
	if _, ok, err := s.Spiders(ctx, "p", "1.0"); ok || err != nil {
		t.Fatalf("empty cache: %v %v", ok, err)
	}
	s.SetSpiders("p", "1.0", []string{"a", "b"})
	s.SetSpiders("p", "2.0", []string{"c"})
	s.SetSpiders("p", "2.0", []string{"c", "d"})
	s.SetSpiders("q", "1.0", []string{})
	if names, ok, _ := s.Spiders(ctx, "p", "2.0"); !ok || !slices.Equal(names, []string{"c", "d"}) {
		t.Fatalf("p 2.0 = %v %v, want the last list set", names, ok)
	}
	if names, ok, _ := s.Spiders(ctx, "q", "1.0"); !ok || len(names) != 0 {
		t.Fatalf("an empty list is cached too: %v %v", names, ok)
	}
	s.ForgetSpiders("p", "1.0")
	if _, ok, _ := s.Spiders(ctx, "p", "1.0"); ok {
		t.Fatal("ForgetSpiders(version) kept it")
	}
	s.ForgetSpiders("p", "")
	if _, ok, _ := s.Spiders(ctx, "p", "2.0"); ok {
		t.Fatal("ForgetSpiders(project) kept a version")
	}
	if _, ok, _ := s.Spiders(ctx, "q", "1.0"); !ok {
		t.Fatal("ForgetSpiders(p) dropped another project's list")
	}
}

// activeByProject: /metrics's jobs per project and state, pending and
// running, with no entry for a state a project has no job in and none for
// the history.
func activeByProject(t *testing.T, s Store) {
	ctx := context.Background()
	finish(t, s, job.Spec{ID: "f1", Project: "a", Spider: "s"}, at(10), 100)
	finish(t, s, job.Spec{ID: "f2", Project: "a", Spider: "t"}, at(11), 100)
	finish(t, s, job.Spec{ID: "f3", Project: "b", Spider: "s"}, at(12), 100)
	enqueue(t, s, "r1", "b", 9)
	if _, err := s.Claim(at(13), nil); err != nil {
		t.Fatal(err)
	}
	enqueue(t, s, "p1", "a", 0)
	enqueue(t, s, "p2", "a", 0)
	got, err := s.ActiveByProject(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(x, y store.ProjectCount) int {
		return strings.Compare(x.Project+" "+string(x.State), y.Project+" "+string(y.State))
	})
	want := []store.ProjectCount{{Project: "a", State: job.Pending, Jobs: 2}, {Project: "b", State: job.Running, Jobs: 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("ActiveByProject = %v; want %v", got, want)
	}
}

// lastSuccesses: per spider, the newest end among its successful crawls;
// failures and other projects' spiders of the same name do not count.
func lastSuccesses(t *testing.T, s Store) {
	ctx := context.Background()
	finish(t, s, job.Spec{ID: "1", Project: "a", Spider: "s"}, at(10), 100)
	finish(t, s, job.Spec{ID: "2", Project: "a", Spider: "s"}, at(20), 100)
	finish(t, s, job.Spec{ID: "3", Project: "b", Spider: "s"}, at(15), 100)
	// A failure after the last success, and a spider that never succeeded.
	for _, spec := range []job.Spec{{ID: "4", Project: "a", Spider: "s"}, {ID: "5", Project: "a", Spider: "never"}} {
		if _, err := s.Enqueue(spec, at(30)); err != nil {
			t.Fatal(err)
		}
		j, err := s.Claim(at(31), nil)
		if err != nil || j == nil {
			t.Fatalf("claim = %v, %v", j, err)
		}
		if err := s.End(j.Seq, at(40), nil, job.OutcomeFailed, "", 100); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.LastSuccesses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(x, y store.SpiderSuccess) int { return strings.Compare(x.Project+x.Spider, y.Project+y.Spider) })
	if len(got) != 2 || got[0] != (store.SpiderSuccess{Project: "a", Spider: "s", Ended: got[0].Ended}) || !got[0].Ended.Equal(at(20)) ||
		got[1].Project != "b" || got[1].Spider != "s" || !got[1].Ended.Equal(at(15)) {
		t.Fatalf("LastSuccesses = %v; want a/s at %v, b/s at %v", got, at(20), at(15))
	}
}
