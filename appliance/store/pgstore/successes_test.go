package pgstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
)

// TestLastSuccessesUsesIndex: the last-success query, read at every
// start, reads jobs through the index jobs_successes only, never the
// table (its plan, with sequential scans priced out, as a long history
// would price them), and answers each spider's newest success.
func TestLastSuccessesUsesIndex(t *testing.T) {
	url := pgtest.DB(t)
	s := opened(t, url, "n1", pgstore.Options{})
	ctx := context.Background()
	for i, c := range []struct {
		project, spider string
		outcome         job.Outcome
	}{{"p", "a", job.OutcomeFinished}, {"p", "a", job.OutcomeFinished}, {"p", "a", job.OutcomeFailed}, {"p", "b", job.OutcomeFailed},
		{"p", "c", job.OutcomeFinished}, {"q", "a", job.OutcomeFinished}, {"q", "a", job.OutcomeCancelled}} {
		if _, err := s.Enqueue(job.Spec{ID: fmt.Sprint("j", i), Project: c.project, Spider: c.spider}, time.Time{}); err != nil {
			t.Fatal(err)
		}
		j, err := s.Claim(time.Time{}, nil)
		if err != nil || j == nil {
			t.Fatalf("claim = %v, %v", j, err)
		}
		if err := s.End(j.Seq, time.Time{}, nil, c.outcome, "", 100); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.LastSuccesses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// What the answer must be, the plain way.
	rows, err := conn.Query(ctx, `SELECT project || '/' || spider || ' ' || max(ended)::text FROM jobs
		WHERE state = 'finished' AND outcome = 'finished' GROUP BY project, spider ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	want, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range got {
		var at string
		if err := conn.QueryRow(ctx, `SELECT $1::timestamptz::text`, l.Ended).Scan(&at); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l.Project+"/"+l.Spider+" "+at)
	}
	slices.Sort(lines)
	if len(want) != 3 || strings.Join(lines, ", ") != strings.Join(want, ", ") {
		t.Errorf("LastSuccesses = %s, want %s (p/a, p/c and q/a)", strings.Join(lines, ", "), strings.Join(want, ", "))
	}
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	rows, err = conn.Query(ctx, `EXPLAIN `+pgstore.LastSuccessesQuery)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range plan {
		if strings.Contains(line, " on jobs") && !strings.Contains(line, "Index Only Scan using jobs_successes ") &&
			!strings.Contains(line, "Index Only Scan Backward using jobs_successes ") {
			t.Errorf("the last-success query reads jobs otherwise than from the index jobs_successes alone:\n%s", strings.Join(plan, "\n"))
			break
		}
	}
}
