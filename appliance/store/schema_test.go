package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

func userVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// copyUnversioned puts the database the release before schema versions
// wrote (testdata/README.md) in a new directory, as a user's would be.
func copyUnversioned(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "unversioned.db"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestUpgradeUnversioned: a database written by the release before schema
// versions is upgraded in place, and its jobs and spider cache read back as
// that release wrote them (issue 14 point 6).
func TestUpgradeUnversioned(t *testing.T) {
	dir := copyUnversioned(t)
	path := filepath.Join(dir, FileName)
	if v := userVersion(t, path); v != 0 {
		t.Fatalf("test data has user_version %d, want 0", v)
	}
	s := open(t, dir)
	if v := userVersion(t, path); v != len(migrations) {
		t.Fatalf("user_version after open = %d, want %d", v, len(migrations))
	}
	if p, r, f := s.Counts(); p != 4 || r != 2 || f != 40 {
		t.Fatalf("counts = %d %d %d, want 4 pending, 2 running, 40 finished", p, r, f)
	}
	ctx := context.Background()
	pending, running, finished, err := s.Snapshot(ctx, Filter{}, Filter{Project: "beta", Limit: 3}, map[job.State]bool{job.Pending: true, job.Running: true, job.Finished: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(pending); !slices.Equal(got, []string{"pen1", "pen3", "pen0", "pen2"}) {
		t.Errorf("pending = %v", got)
	}
	if p := pending[0]; !slices.Equal(p.Settings, []job.Pair{{Name: "A", Value: "1"}, {Name: "A", Value: "2"}}) || p.Args[0].Value != "é\"<" || p.Priority != 1 {
		t.Errorf("pending job read back as %+v", p)
	}
	if got := ids(running); !slices.Equal(got, []string{"run0", "run1"}) || running[0].Handle != `{"pid":4242}` || running[0].PID != 4242 || !running[0].Cancelled || running[1].Handle != "" {
		t.Errorf("running = %+v", running)
	}
	if got := ids(finished); !slices.Equal(got, []string{"fin37", "fin34", "fin31"}) {
		t.Errorf("beta's newest finished = %v", got)
	}
	f := finished[0]
	if f.Outcome != job.OutcomeFailed || f.ExitCode == nil || *f.ExitCode != 1 || f.Ended.UTC() != time.Date(2024, 5, 6, 7, 14, 15, 250_000_000, time.UTC) || f.Stats != "" || f.Args[0].Value != "37" {
		t.Errorf("finished job read back as %+v", f)
	}
	if names, ok, err := s.Spiders(ctx, "alpha", "1.0"); err != nil || !ok || !slices.Equal(names, []string{"s1", "s2"}) {
		t.Errorf("spider cache = %v %v %v", names, ok, err)
	}
	// Opening again finds the current version: nothing to do.
	s.Close()
	open(t, dir)
}

// TestNewerSchemaRefused: a database from a newer release is refused with
// both versions named, and left as it was.
func TestNewerSchemaRefused(t *testing.T) {
	dir := t.TempDir()
	open(t, dir).Close()
	path := filepath.Join(dir, FileName)
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(dir)
	if !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("Open = %v, want ErrNewerSchema", err)
	}
	for _, want := range []string{path, "schema version 99", fmt.Sprintf("up to version %d", len(migrations))} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if v := userVersion(t, path); v != 99 {
		t.Errorf("user_version = %d after a refusal, want 99 untouched", v)
	}
}

// TestFileMode: the database and its WAL files are the daemon user's only,
// for a new database and for one an older release left 0644 (issue 13
// point 10: jobs' settings and arguments can hold credentials).
func TestFileMode(t *testing.T) {
	for name, dir := range map[string]string{"new": t.TempDir(), "old": copyUnversioned(t)} {
		s := open(t, dir)
		if _, err := s.Enqueue(job.Spec{ID: "x", Project: "p", Spider: "s"}, time.Now()); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{FileName, FileName + "-wal", FileName + "-shm"} {
			info, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if m := info.Mode().Perm(); m != 0o600 {
				t.Errorf("%s database: %s has mode %o, want 600", name, f, m)
			}
		}
	}
}
