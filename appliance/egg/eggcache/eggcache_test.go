package eggcache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/egg/eggcache"
	"github.com/scrapyd-debian/scrapyd/appliance/egg/eggtest"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
)

// builtEnvs says every environment is built: the contract's versions name
// an environment no node has to build.
type builtEnvs struct{}

func (builtEnvs) Has(string) bool { return true }
func (builtEnvs) Build(context.Context, string, string, string) error {
	return errors.New("nothing to build")
}

func open(t *testing.T) *pgstore.Store {
	t.Helper()
	st, err := pgstore.Open(context.Background(), pgtest.DB(t), pgstore.Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestContract(t *testing.T) {
	eggtest.Run(t, func(t *testing.T) eggtest.Store {
		return &eggcache.Store{DB: open(t), Dir: t.TempDir(), Envs: builtEnvs{}}
	})
}

// upload stores data as project's version through s, with its spiders.
func upload(t *testing.T, s *eggcache.Store, project, version, data string, d egg.Details, env string) {
	t.Helper()
	st, err := s.Stage(project, strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	st.UseDetails(d)
	if env != "" {
		st.UseEnv(env)
	}
	if err := st.Commit(version); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// Two nodes on one database: what one stored the other lists the same,
// and fetches into its own eggs_dir when it needs the file, at the path a
// single node would use; the spider list came in the upload's transaction.
func TestAnotherNodeFetches(t *testing.T) {
	db := open(t)
	one := &eggcache.Store{DB: db, Dir: t.TempDir()}
	two := &eggcache.Store{DB: db, Dir: t.TempDir()}
	upload(t, one, "p", "r9", "egg r9", egg.Details{Spiders: []string{"a", "b"}}, "")
	upload(t, one, "p", "r10", "egg r10", egg.Details{Spiders: []string{"c"}}, "")
	v1, _ := one.Versions("p")
	v2, _ := two.Versions("p")
	if len(v1) != 2 || len(v2) != 2 || v1[0].Name != "r9" || v2[1].Name != "r10" || !v1[1].Uploaded.Equal(v2[1].Uploaded) {
		t.Fatalf("versions on node 1 %+v, on node 2 %+v", v1, v2)
	}
	if _, err := os.Stat(v2[1].Path); !os.IsNotExist(err) {
		t.Fatalf("node 2 holds a copy before anything needed it: %v", err)
	}
	v, err := two.Find("p", "")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(two.Dir, "p", "r10.egg"); v.Path != want || read(t, v.Path) != "egg r10" {
		t.Fatalf("node 2's copy: %s holds %q, want %s", v.Path, read(t, v.Path), want)
	}
	if fi, _ := os.Stat(v.Path); fi.Mode().Perm() != 0o644 {
		t.Fatalf("a copy must be readable by crawls: mode %v", fi.Mode().Perm())
	}
	names, ok, err := db.Spiders(context.Background(), "p", "r9")
	if err != nil || !ok || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("spiders of r9 = %q, %v, %v", names, ok, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(two.Dir, ".staging")); len(ents) != 0 {
		t.Fatalf("a fetch left %d files in staging", len(ents))
	}
}

// A copy that does not hold the stored hash, changed on disk or left by
// an older upload of the same name, is fetched again.
func TestStaleOrTamperedCopyIsFetchedAgain(t *testing.T) {
	db := open(t)
	one := &eggcache.Store{DB: db, Dir: t.TempDir()}
	two := &eggcache.Store{DB: db, Dir: t.TempDir()}
	upload(t, one, "p", "1.0", "first", egg.Details{}, "")
	v, err := two.Find("p", "1.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(v.Path, []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err = two.Find("p", "1.0"); err != nil || read(t, v.Path) != "first" {
		t.Fatalf("after tampering: %v, the copy holds %q", err, read(t, v.Path))
	}
	upload(t, one, "p", "1_0", "second", egg.Details{}, "") // same file name: replaces 1.0
	if v, err = two.Find("p", "1.0"); err != nil || v.Name != "1_0" || read(t, v.Path) != "second" {
		t.Fatalf("after a replacing upload: %+v, %v, the copy holds %q", v, err, read(t, v.Path))
	}
	if names, ok, _ := db.Spiders(context.Background(), "p", "1.0"); ok {
		t.Fatalf("the replaced version's spider list stayed: %q", names)
	}
}

// A delete on one node removes the copies on every node that hears of it,
// and nothing this package did not write.
func TestDeletePurgesEveryNode(t *testing.T) {
	db := open(t)
	one := &eggcache.Store{DB: db, Dir: t.TempDir()}
	two := &eggcache.Store{DB: db, Dir: t.TempDir()}
	upload(t, one, "p", "1", "p 1", egg.Details{}, "")
	upload(t, one, "p", "2", "p 2", egg.Details{}, "")
	upload(t, one, "q", "1", "q 1", egg.Details{}, "")
	own := filepath.Join(one.Dir, "p", "old.egg") // an egg from before the cluster
	os.WriteFile(own, []byte("mine"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	heard := make(chan struct{}, 100)
	go db.ListenEggs(ctx, func() {
		one.Reconcile(ctx)
		heard <- struct{}{}
	})
	<-heard // listening
	copy1 := filepath.Join(one.Dir, "p", "1.egg")
	if read(t, copy1) != "p 1" {
		t.Fatal("the uploading node keeps its upload as its copy")
	}
	if err := two.Delete("p", "1"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, heard, copy1)
	if read(t, own) != "mine" || read(t, filepath.Join(one.Dir, "p", "2.egg")) != "p 2" {
		t.Fatal("a delete removed more than its version")
	}
	if err := two.DeleteProject("q"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, heard, filepath.Join(one.Dir, "q"))
	if err := two.Delete("p", "1"); !errors.Is(err, egg.ErrNotFound) {
		t.Fatalf("deleting a deleted version: %v", err)
	}
	if err := two.DeleteProject("q"); !errors.Is(err, egg.ErrNotFound) {
		t.Fatalf("deleting a deleted project: %v", err)
	}
	if ps, _ := one.Projects(); !slices.Equal(ps, []string{"p"}) {
		t.Fatalf("projects = %q", ps)
	}
}

// waitGone waits for announcements until path is gone.
func waitGone(t *testing.T, heard <-chan struct{}, path string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			return
		}
		select {
		case <-heard:
		case <-deadline:
			t.Fatalf("%s is still there after the announcement", path)
		}
	}
}

// An upload aborted (refused by its check) leaves nothing anywhere; one
// the database refuses is an error and leaves no version.
func TestRefusedUploadChangesNothing(t *testing.T) {
	db := open(t)
	one := &eggcache.Store{DB: db, Dir: t.TempDir()}
	st, err := one.Stage("p", strings.NewReader("bad"))
	if err != nil {
		t.Fatal(err)
	}
	st.Abort()
	if ps, _ := one.Projects(); len(ps) != 0 {
		t.Fatalf("projects after an aborted upload: %q", ps)
	}
	st, _ = one.Stage("p", strings.NewReader("egg"))
	db.Close()
	if err := st.Commit("1"); err == nil {
		t.Fatal("a commit to a closed database succeeded")
	}
	st.Abort()
	if ents, _ := os.ReadDir(one.Dir); len(ents) != 1 || ents[0].Name() != ".staging" {
		t.Fatalf("eggs_dir after refused uploads: %v", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(one.Dir, ".staging")); len(ents) != 0 {
		t.Fatalf("staging after refused uploads: %v", ents)
	}
}

// envs records the builds asked of a node.
type envs struct {
	mu     sync.Mutex
	built  map[string]bool
	builds []string // "id requirements wheels-bytes"
	fail   error
}

func (e *envs) Has(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.built[id]
}

func (e *envs) Build(_ context.Context, id, reqs, wheels string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	data := "-"
	if wheels != "" {
		raw, err := os.ReadFile(wheels)
		if err != nil {
			return err
		}
		data = string(raw)
	}
	e.builds = append(e.builds, id+" "+reqs+" "+data)
	if e.fail != nil {
		return e.fail
	}
	if e.built == nil {
		e.built = map[string]bool{}
	}
	e.built[id] = true
	return nil
}

// A version with an environment gets it built on the node that fetched
// it, from the upload's requirements and wheels, once; a node that cannot
// build it says so instead of finding the version.
func TestEnvironmentBuiltWhereFetched(t *testing.T) {
	db := open(t)
	one := &eggcache.Store{DB: db, Dir: t.TempDir(), Envs: &envs{built: map[string]bool{"e1": true}}}
	wheels := filepath.Join(t.TempDir(), "wheels.zip")
	os.WriteFile(wheels, []byte("wheelhouse"), 0o644)
	upload(t, one, "p", "1", "p 1", egg.Details{Requirements: "lxml\n", Wheels: wheels}, "e1")
	e := &envs{}
	two := &eggcache.Store{DB: db, Dir: t.TempDir(), Envs: e}
	for range 2 {
		v, err := two.Find("p", "1")
		if err != nil || v.Env != "e1" {
			t.Fatalf("Find = %+v, %v", v, err)
		}
	}
	if !slices.Equal(e.builds, []string{"e1 lxml\n wheelhouse"}) {
		t.Fatalf("builds on node 2 = %q", e.builds)
	}
	three := &eggcache.Store{DB: db, Dir: t.TempDir(), Envs: &envs{fail: errors.New("pip install failed: no lxml")}}
	if _, err := three.Find("p", "1"); err == nil || !strings.Contains(err.Error(), "could not be built on this node: pip install failed: no lxml") {
		t.Fatalf("a failed build: %v", err)
	}
	four := &eggcache.Store{DB: db, Dir: t.TempDir()}
	if _, err := four.Find("p", "1"); err == nil || !strings.Contains(err.Error(), "needs its Python environment e1") {
		t.Fatalf("a node without environments: %v", err)
	}
}

// counting counts the eggs a node reads from the database.
type counting struct {
	eggcache.DB
	mu    sync.Mutex
	reads int
}

func (c *counting) EggData(ctx context.Context, project, version string) ([]byte, string, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.DB.EggData(ctx, project, version)
}

// Crawls of one version starting at once on a node that has no copy yet
// fetch it once, and each finds the whole egg at its path.
func TestConcurrentFindsFetchOnce(t *testing.T) {
	db := open(t)
	one := &eggcache.Store{DB: db, Dir: t.TempDir()}
	data := strings.Repeat("egg bytes ", 100000)
	upload(t, one, "p", "1", data, egg.Details{}, "")
	c := &counting{DB: db}
	two := &eggcache.Store{DB: c, Dir: t.TempDir()}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := two.Find("p", "1")
			if err == nil {
				if got, rerr := os.ReadFile(v.Path); rerr != nil || string(got) != data {
					err = errors.New("a crawl found a partial or missing copy")
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if c.reads != 1 {
		t.Fatalf("the egg was read from the database %d times", c.reads)
	}
}

// A node that was away when a version was deleted (stopped, or its
// listening connection broken) removes its copy when it listens again:
// the listener's first call, at each (re)connect, reconciles.
func TestCopiesOfVersionsDeletedWhileAwayGoOnListening(t *testing.T) {
	db := open(t)
	one := &eggcache.Store{DB: db, Dir: t.TempDir()}
	two := &eggcache.Store{DB: db, Dir: t.TempDir()}
	upload(t, one, "p", "1", "p 1", egg.Details{}, "")
	upload(t, one, "p", "2", "p 2", egg.Details{}, "")
	if err := two.Delete("p", "1"); err != nil {
		t.Fatal(err)
	}
	copy1 := filepath.Join(one.Dir, "p", "1.egg")
	if read(t, copy1) != "p 1" {
		t.Fatal("node 1 heard the delete without listening")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	heard := make(chan struct{}, 100)
	go db.ListenEggs(ctx, func() {
		one.Reconcile(ctx)
		heard <- struct{}{}
	})
	<-heard
	if _, err := os.Stat(copy1); !os.IsNotExist(err) {
		t.Fatalf("the copy of the version deleted meanwhile: %v", err)
	}
	if read(t, filepath.Join(one.Dir, "p", "2.egg")) != "p 2" {
		t.Fatal("the copy of a kept version went")
	}
}

// An egg a single node had in place, with the bytes the cluster stores for
// it (its eggs imported), is used as it is and, once used, removed by a
// delete with egg.Store's side files; one the cluster does not know stays.
func TestEggFoundInPlaceIsAdopted(t *testing.T) {
	db := open(t)
	one := &eggcache.Store{DB: db, Dir: t.TempDir()}
	two := &eggcache.Store{DB: db, Dir: t.TempDir()}
	os.MkdirAll(filepath.Join(one.Dir, "p"), 0o755)
	for name, data := range map[string]string{"3.egg": "p 3", ".3.version": "3", "4.egg": "p 4"} {
		os.WriteFile(filepath.Join(one.Dir, "p", name), []byte(data), 0o644)
	}
	upload(t, two, "p", "3", "p 3", egg.Details{}, "")
	v, err := one.Find("p", "3")
	if err != nil || v.Path != filepath.Join(one.Dir, "p", "3.egg") || read(t, v.Path) != "p 3" {
		t.Fatalf("Find = %+v, %v", v, err)
	}
	if err := two.Delete("p", "3"); err != nil {
		t.Fatal(err)
	}
	if err := one.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(one.Dir, "p"))
	if len(ents) != 1 || ents[0].Name() != "4.egg" {
		t.Fatalf("after the delete node 1's eggs_dir/p holds %v, want only the egg the cluster does not know", ents)
	}
}

// stale answers the first EggRecords of every project as it was before
// any upload: a reconcile that read the database just before an upload
// committed.
type stale struct {
	eggcache.DB
	first sync.Once
}

func (s *stale) EggRecords(ctx context.Context, project string) ([]egg.Record, error) {
	if project == "" {
		var before bool
		s.first.Do(func() { before = true })
		if before {
			return nil, nil
		}
	}
	return s.DB.EggRecords(ctx, project)
}

// A reconcile that read the database before an upload committed (the one
// a node runs when its listener connects, racing the first upload after
// its start) keeps the upload's copy: it asks again under the egg's lock
// before it removes anything.
func TestReconcileKeepsAnUploadItMissed(t *testing.T) {
	db := open(t)
	one := &eggcache.Store{DB: db, Dir: t.TempDir()}
	upload(t, one, "p", "1.0", "egg bytes", egg.Details{Spiders: []string{"s"}}, "")
	copy := filepath.Join(one.Dir, "p", "1_0.egg")
	late := &eggcache.Store{DB: &stale{DB: db}, Dir: one.Dir}
	if err := late.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := read(t, copy); got != "egg bytes" {
		t.Fatalf("the upload's copy after a late reconcile: %q", got)
	}
	// A version the database does not hold still goes.
	if err := db.DeleteEgg(t.Context(), "p", "1.0"); err != nil {
		t.Fatal(err)
	}
	if err := late.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(copy); !os.IsNotExist(err) {
		t.Fatalf("the deleted version's copy: %v", err)
	}
}
