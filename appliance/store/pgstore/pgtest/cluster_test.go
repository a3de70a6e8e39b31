package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestCluster: a private cluster keeps its data and its address across a
// clean and a crashed restart, refuses connections while down, and is
// gone when its test ends.
func TestCluster(t *testing.T) {
	var dir string
	t.Run("life", func(t *testing.T) {
		s := Cluster(t)
		dir = s.dir
		for _, url := range []string{s.URL, s.URLAt(s.Addr)} {
			if got := query(t, url, `SELECT 1`); got != 1 {
				t.Fatalf("%s answered %d", url, got)
			}
		}
		// A crash loses no acknowledged commit, as in production.
		if got := query(t, s.URL, `SELECT (current_setting('synchronous_commit') = 'on')::int`); got != 1 {
			t.Fatal("synchronous_commit is off: a crash would lose acknowledged commits")
		}
		run(t, s.URL, `CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)`)
		for _, mode := range []Mode{Fast, Immediate} {
			s.Down(t, mode)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if conn, err := pgx.Connect(ctx, s.URLAt(s.Addr)); err == nil {
				conn.Close(ctx)
				t.Fatalf("connected while down (%s)", mode)
			}
			cancel()
			s.Up(t)
			if got := query(t, s.URLAt(s.Addr), `SELECT n FROM kept`); got != 7 {
				t.Fatalf("after a %s restart kept = %d", mode, got)
			}
		}
		s.Restart(t, Immediate)
		if got := query(t, s.URL, `SELECT n FROM kept`); got != 7 {
			t.Fatalf("after Restart kept = %d", got)
		}
	})
	if dir == "" {
		return // skipped
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the cluster's directory outlived its test: %v", err)
	}
}

func query(t *testing.T, url, q string) int {
	t.Helper()
	var n int
	if err := connect(t, url).QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func run(t *testing.T, url, q string) {
	t.Helper()
	if _, err := connect(t, url).Exec(context.Background(), q); err != nil {
		t.Fatal(err)
	}
}

// connect opens a connection closed when the test ends.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
