package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// BenchmarkClaimBehind10000Capped: one claim when 10,000 pending jobs of
// a spider at its spider_max_proc come first in the queue and a runnable
// job waits behind them: the capped ones are skipped in the query, on the
// queue index. Each iteration claims the runnable job and puts it back.
func BenchmarkClaimBehind10000Capped(b *testing.B) {
	s, err := store.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	add := func(id, spider string, prio float64) {
		if _, err := s.Enqueue(job.Spec{ID: id, Project: "p", Spider: spider, Priority: prio}, now); err != nil {
			b.Fatal(err)
		}
	}
	add("running", "capped", 10)
	if j, err := s.Claim(now, nil); err != nil || j == nil {
		b.Fatal(err)
	}
	for i := range 10000 {
		add(fmt.Sprintf("c%05d", i), "capped", 5)
	}
	add("free", "other", 0)
	caps := store.Caps{"p": {SpiderMaxProc: 1}}
	b.ResetTimer()
	for range b.N {
		j, err := s.Claim(now, caps)
		if err != nil || j == nil || j.ID != "free" {
			b.Fatalf("claimed %v (%v), want the job behind the capped ones", j, err)
		}
		if err := s.Requeue(j.Seq); err != nil {
			b.Fatal(err)
		}
	}
}
