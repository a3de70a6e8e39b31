package e2e

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestDatabaseFromNewerReleaseRefused: after a downgrade the daemon does
// not start on a database a newer release wrote; it says which versions
// and leaves the database as it was (issue 14 point 6).
func TestDatabaseFromNewerReleaseRefused(t *testing.T) {
	t.Parallel()
	// A root daemon's crawl user must reach its root (TestPrivateDataDirectory).
	root := testkit.TraversableTempDir(t)
	dbs := filepath.Join(root, "var", "lib", "scrapyd", "dbs")
	if err := os.MkdirAll(dbs, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dbs)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	path := filepath.Join(dbs, store.FileName)
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	out := failingStartIn(t, root, "")
	for _, want := range []string{path + " has schema version 99", "this release knows up to version", "newer release"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
	var v int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil || v != 99 {
		t.Errorf("user_version = %d, %v after the refusal; want 99 untouched", v, err)
	}
}

// TestDatabaseFilesPrivate: the daemon's database and its WAL files are
// readable by its user only, in a --root layout too (issue 13 point 10:
// jobs' settings and arguments can hold credentials).
func TestDatabaseFilesPrivate(t *testing.T) {
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{})
	for _, name := range []string{store.FileName, store.FileName + "-wal", store.FileName + "-shm"} {
		info, err := os.Stat(d.Path("var", "lib", "scrapyd", "dbs", name))
		if err != nil {
			t.Fatal(err)
		}
		if m := info.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %o, want 600", name, m)
		}
	}
}
