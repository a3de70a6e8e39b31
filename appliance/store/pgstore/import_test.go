package pgstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
)

func ids(jobs []job.Job) string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return strings.Join(out, ",")
}

// TestImport: a single node's SQLite store moves into a cluster's
// database: its pending jobs queue behind the cluster's in their own
// order, its running job is the importing node's (and only its), its
// history is kept with its times and counted; a second import of the same
// node, or one whose active job id the cluster has, changes nothing.
func TestImport(t *testing.T) {
	ctx := context.Background()
	lite, err := store.Open(filepath.Join(t.TempDir(), "dbs"))
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	enqueue := func(i int, spec job.Spec) {
		if _, err := lite.Enqueue(spec, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	enqueue(0, job.Spec{ID: "done", Project: "p", Spider: "s"})
	enqueue(1, job.Spec{ID: "run", Project: "p", Spider: "s"})
	for range 2 {
		if _, err := lite.Claim(t0.Add(time.Minute), nil); err != nil {
			t.Fatal(err)
		}
	}
	enqueue(2, job.Spec{ID: "a", Project: "p", Spider: "s"})
	enqueue(3, job.Spec{ID: "b", Project: "p", Spider: "s", Priority: 5, Args: []job.Pair{{Name: "k", Value: "v"}}})
	enqueue(4, job.Spec{ID: "c", Project: "p", Spider: "s"})
	all, _ := lite.List(ctx, job.Running, store.Filter{})
	code := 0
	if err := lite.End(all[0].Seq, t0.Add(2*time.Minute), &code, job.OutcomeFinished, `{"item_scraped_count": 3}`, 100); err != nil {
		t.Fatal(err)
	}
	if err := lite.Started(all[1].Seq, "pid:1234", 1234); err != nil {
		t.Fatal(err)
	}
	lite.SetSpiders("p", "1", []string{"s", "t"})
	var im pgstore.Import
	for _, st := range []job.State{job.Pending, job.Running, job.Finished} {
		l, _ := lite.List(ctx, st, store.Filter{})
		im.Jobs = append(im.Jobs, l...)
	}
	if im.Spiders, err = lite.SpiderLists(ctx); err != nil {
		t.Fatal(err)
	}

	im.Logs = []string{"done"}
	im.Eggs = []egg.Upload{{Record: egg.Record{Project: "p", Version: "1", SHA256: "aa"}, Data: []byte("egg 1")}}

	ns := nodes(t, 3)
	// The cluster's own job, queued before the import.
	if _, err := ns[1].Enqueue(job.Spec{ID: "theirs", Project: "q", Spider: "s"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := ns[0].Import(ctx, im); err != nil {
		t.Fatal(err)
	}
	pending, _ := ns[1].List(ctx, job.Pending, store.Filter{})
	if got := ids(pending); got != "b,theirs,a,c" {
		t.Errorf("pending after the import: %s, want b,theirs,a,c", got)
	}
	if b := pending[0]; !slices.Equal(b.Args, []job.Pair{{Name: "k", Value: "v"}}) || !b.Scheduled.Equal(t0.Add(3*time.Second)) {
		t.Errorf("imported pending job: %+v", b)
	}
	if mine, _ := ns[0].Local().List(ctx, job.Running, store.Filter{}); ids(mine) != "run" || mine[0].Handle != "pid:1234" || mine[0].PID != 1234 {
		t.Errorf("the importing node's running jobs: %+v", mine)
	}
	if other, _ := ns[1].Local().List(ctx, job.Running, store.Filter{}); len(other) != 0 {
		t.Errorf("another node adopts the imported crawl: %+v", other)
	}
	done, _ := ns[1].Find(ctx, "p", "done")
	if done == nil || done.State != job.Finished || !done.Ended.Equal(t0.Add(2*time.Minute)) || done.Outcome != job.OutcomeFinished ||
		done.ExitCode == nil || *done.ExitCode != 0 || done.Stats != `{"item_scraped_count": 3}` {
		t.Errorf("imported history: %+v", done)
	}
	if names, ok, _ := ns[1].Spiders(ctx, "p", "1"); !ok || !slices.Equal(names, []string{"s", "t"}) {
		t.Errorf("spider cache: %v %v", names, ok)
	}
	p, r, f := ns[1].Counts()
	if p != 4 || r != 1 || f != 1 {
		t.Errorf("counts %d %d %d, want 4 1 1", p, r, f)
	}

	// The history's log is this node's to ship, though it ended long ago.
	if ship, err := ns[0].LogsToShip(ctx); err != nil || len(ship) != 2 || ship[0].ID+ship[1].ID != "rundone" {
		t.Errorf("logs to ship after the import: %+v %v", ship, err)
	}
	if recs, _ := ns[1].EggRecords(ctx, "p"); len(recs) != 1 || recs[0].Version != "1" || recs[0].SHA256 != "aa" {
		t.Errorf("eggs after the import: %+v", recs)
	}
	if err := ns[0].Import(ctx, im); !errors.Is(err, pgstore.ErrImported) {
		t.Errorf("second import: %v", err)
	}
	// Another node whose store has an id the cluster runs: refused whole.
	if err := ns[1].Import(ctx, im); err == nil || !strings.Contains(err.Error(), "already pending or running") {
		t.Errorf("import of a running id: %v", err)
	}
	// Another egg of a version the cluster has: refused.
	other := pgstore.Import{Eggs: []egg.Upload{{Record: egg.Record{Project: "p", Version: "1", SHA256: "bb"}, Data: []byte("egg 2")}}}
	if err := ns[2].Import(ctx, other); err == nil || !strings.Contains(err.Error(), "as another egg") {
		t.Errorf("import of another egg 1: %v", err)
	}
	// A node the cluster knows cannot import.
	if err := ns[2].Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ns[2].Import(ctx, pgstore.Import{}); err == nil || !strings.Contains(err.Error(), "already a node of the cluster") {
		t.Errorf("import by a registered node: %v", err)
	}
	if p2, r2, f2 := ns[1].Counts(); p2 != p || r2 != r || f2 != f {
		t.Errorf("a refused import changed the counts: %d %d %d", p2, r2, f2)
	}
	// The importing node's daemon registers and takes its crawl over.
	if err := ns[0].Register(ctx); err != nil {
		t.Fatal(err)
	}
	if mine, _ := ns[0].Local().List(ctx, job.Running, store.Filter{}); ids(mine) != "run" {
		t.Errorf("running jobs after the node registered: %+v", mine)
	}
}
