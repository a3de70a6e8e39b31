// Package pgtest gives tests a fresh PostgreSQL database each, in the one
// throwaway cluster packaging/run-tests.sh starts for the whole run
// (packaging/pg-cluster.sh) and names in SCRAPYD_TEST_POSTGRES.
package pgtest

import (
	"context"
	"fmt"
	"net"
	neturl "net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env names the cluster's URL.
const Env = "SCRAPYD_TEST_POSTGRES"

var n atomic.Int64

// DB creates an empty database and returns its URL; it is dropped when the
// test ends. Without SCRAPYD_TEST_POSTGRES the test is skipped, or fails
// under CI=true, where a skip would hide a broken test machine.
func DB(t testing.TB) string {
	t.Helper()
	base := os.Getenv(Env)
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true needs %s (packaging/run-tests.sh starts a cluster when root)", Env)
		}
		t.Skipf("no PostgreSQL: set %s (packaging/pg-cluster.sh start prints one)", Env)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", Env, err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("t%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, n.Add(1))
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	})
	return withDatabase(base, name)
}

// withDatabase replaces the database in a postgres:// URL's path.
func withDatabase(url, name string) string {
	rest, query, _ := strings.Cut(url, "?")
	if i := strings.Index(rest, "://"); i >= 0 {
		if j := strings.Index(rest[i+3:], "/"); j >= 0 {
			rest = rest[:i+3+j]
		}
	}
	if query != "" {
		query = "?" + query
	}
	return rest + "/" + name + query
}

// Via is url (a test database's) with its connection made over TCP to
// addr, a fault proxy in front of the server, instead of through the
// server's socket directory; Addr is where such a proxy forwards to.
func Via(t testing.TB, url, addr string) string {
	t.Helper()
	u := parse(t, url)
	q := u.Query()
	q.Del("host")
	u.Host, u.RawQuery = addr, q.Encode()
	return u.String()
}

// Addr is the TCP address of the server a test database's url names.
func Addr(t testing.TB, url string) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", parse(t, url).Port())
}

func parse(t testing.TB, url string) *neturl.URL {
	t.Helper()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
