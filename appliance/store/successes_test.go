package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// TestLastSuccesses: each spider's newest successful end, spiders without
// a success left out, read through the jobs_successes index (the daemon
// reads it at every start; a scan of the history would cost each wake of
// a sleeping daemon in proportion to the history).
func TestLastSuccesses(t *testing.T) {
	s := open(t, t.TempDir())
	base := time.Unix(1_800_000_000, 0)
	end := func(project, spider string, at time.Duration, outcome job.Outcome) {
		t.Helper()
		if _, err := s.Enqueue(job.Spec{ID: fmt.Sprint(project, spider, at, outcome), Project: project, Spider: spider}, base); err != nil {
			t.Fatal(err)
		}
		j, err := s.Claim(base, nil)
		if err != nil || j == nil {
			t.Fatalf("claim: %v %v", j, err)
		}
		if err := s.End(j.Seq, base.Add(at), nil, outcome, "", 100); err != nil {
			t.Fatal(err)
		}
	}
	end("a", "s1", 1*time.Second, job.OutcomeFinished)
	end("a", "s1", 3*time.Second, job.OutcomeFinished)
	end("a", "s1", 5*time.Second, job.OutcomeFailed) // newer, but not a success
	end("a", "s2", 2*time.Second, job.OutcomeCancelled)
	end("b", "s1", 4*time.Second, job.OutcomeFinished)
	got, err := s.LastSuccesses(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, g := range got {
		lines = append(lines, fmt.Sprintf("%s/%s %v", g.Project, g.Spider, g.Ended.Sub(base)))
	}
	if want := "a/s1 3s, b/s1 4s"; strings.Join(lines, ", ") != want {
		t.Errorf("LastSuccesses = %s, want %s", strings.Join(lines, ", "), want)
	}
	const success = `state = 'finished' AND outcome = 'finished'`
	for _, q := range []string{
		`SELECT project, spider FROM jobs WHERE ` + success + ` AND (project, spider) > ('a', 's1') ORDER BY project, spider LIMIT 1`,
		`SELECT MAX(ended) FROM jobs WHERE ` + success + ` AND project = 'a' AND spider = 's1'`,
	} {
		rows, err := s.db.Query(`EXPLAIN QUERY PLAN ` + q)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			rows.Scan(&id, &parent, &unused, &detail)
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		if !strings.Contains(p, "jobs_successes") || !strings.Contains(p, "SEARCH") {
			t.Errorf("%s\nplan %q: not a search of jobs_successes", q, p)
		}
	}
}
