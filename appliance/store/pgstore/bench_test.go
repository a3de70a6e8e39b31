package pgstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// BenchmarkScheduleToClaimOtherNode: a job enqueued on node 1 is claimed
// by node 2, woken by the schedule's NOTIFY (no poll): p50 and p99 from
// the start of the Enqueue to node 2's Claim returning it (issue 15's aim:
// p50 under 5 ms, p99 under 20 ms). The crawl's own start is not in it:
// dispatch's BenchmarkScheduleToCrawlStarted measures that.
func BenchmarkScheduleToClaimOtherNode(b *testing.B) {
	ns := nodes(b, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	claimed := make(chan struct{}, 1)
	ready := make(chan struct{}, 1)
	go ns[1].Listen(ctx, func() {
		select {
		case ready <- struct{}{}:
		default:
		}
		for {
			j, err := ns[1].Claim(time.Time{}, nil)
			if err != nil || j == nil {
				return
			}
			claimed <- struct{}{}
		}
	})
	<-ready
	i := 0
	testkit.Latencies(b, func() {
		i++
		if _, err := ns[0].Enqueue(job.Spec{ID: fmt.Sprint("j", i), Project: "p", Spider: "s"}, time.Time{}); err != nil {
			b.Fatal(err)
		}
		select {
		case <-claimed:
		case <-time.After(10 * time.Second):
			b.Fatal("node 2 did not claim the job")
		}
	})
}

// BenchmarkThreeNodes10000Jobs: 10,000 jobs go through the store of three
// nodes with two slots each, as their dispatchers drive it (claim, record
// the start, record the end: every write a daemon makes per job; the crawl
// itself is a no-op, so the database's share is what is measured), while
// three clients schedule them, one per node. No job may be claimed twice;
// jobs/s is the cluster's throughput. One op is the whole 10,000, on a
// fresh database.
func BenchmarkThreeNodes10000Jobs(b *testing.B) {
	const jobs, nodeCount, slots = 10000, 3, 2
	for range b.N {
		b.StopTimer()
		ns := nodes(b, nodeCount)
		b.StartTimer()
		t0 := time.Now()
		var (
			mu      sync.Mutex
			claimed = map[string]int{}
			wg      sync.WaitGroup
			left    atomic.Int64 // jobs not yet scheduled
		)
		left.Store(jobs)
		for n := range nodeCount {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := n; i < jobs; i += nodeCount {
					if _, err := ns[n].Enqueue(job.Spec{ID: fmt.Sprint("j", i), Project: "p", Spider: "s"}, time.Time{}); err != nil {
						b.Error(err)
						return
					}
					left.Add(-1)
				}
			}()
			for range slots {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						done := left.Load() == 0
						j, err := ns[n].Claim(time.Time{}, nil)
						if err != nil {
							b.Error(err)
							return
						}
						if j == nil {
							if done {
								return
							}
							time.Sleep(time.Millisecond)
							continue
						}
						mu.Lock()
						claimed[j.ID]++
						mu.Unlock()
						if err := ns[n].Started(j.Seq, "h-"+j.ID, 0); err != nil {
							b.Error(err)
							return
						}
						code := 0
						if err := ns[n].End(j.Seq, time.Time{}, &code, job.OutcomeFinished, "", jobs); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
		}
		wg.Wait()
		elapsed := time.Since(t0)
		b.StopTimer()
		for id, n := range claimed {
			if n != 1 {
				b.Fatalf("job %s claimed %d times", id, n)
			}
		}
		if p, r, f := ns[0].Counts(); len(claimed) != jobs || p != 0 || r != 0 || f != jobs {
			b.Fatalf("%d jobs claimed; %d pending, %d running, %d finished; want %d finished", len(claimed), p, r, f, jobs)
		}
		b.ReportMetric(jobs/elapsed.Seconds(), "jobs/s")
		b.StartTimer()
	}
}
