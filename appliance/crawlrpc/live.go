package crawlrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"time"
)

// live is the last poll of every running crawl's stats, which
// listjobs.json and the job page read without waiting on a crawl.
type live struct {
	mu    sync.RWMutex
	stats map[string]liveStats // job id → its last polled stats
}

// liveStats are one poll of a running crawl: the raw stats (the job page)
// and their summary (listjobs.json), summarised once per poll, not per request.
type liveStats struct {
	raw map[string]any
	sum Summary
}

// Poll refreshes the live stats of the running crawls every interval until
// ctx ends. running lists the jobs whose crawls run now (the daemon's job
// store knows); a crawl that does not answer has no live stats until it does.
func (s *Service) Poll(ctx context.Context, every time.Duration, running func(context.Context) ([]string, error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ids, err := running(ctx); err == nil {
			s.refresh(ctx, ids)
		}
	}
}

// refresh asks every crawl in ids for its stats at once and replaces the
// whole cache, so an ended crawl's entry goes with the next poll.
func (s *Service) refresh(ctx context.Context, ids []string) {
	fresh := make(map[string]liveStats, len(ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw, err := s.LiveStats(ctx, id)
			if err != nil {
				return
			}
			// Numbers stay json.Number: through float64 memusage/max
			// (70578176) would show as 7.0578176e+07 on the job page.
			var m map[string]any
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			if d.Decode(&m) != nil {
				return
			}
			sum, err := Summarize(raw)
			if err != nil {
				return
			}
			mu.Lock()
			fresh[id] = liveStats{raw: m, sum: sum}
			mu.Unlock()
		}()
	}
	wg.Wait()
	s.live.mu.Lock()
	s.live.stats = fresh
	s.live.mu.Unlock()
}

// Live returns the last polled stats of a running crawl (nil if none).
// The map is shared: read only.
func (s *Service) Live(jobID string) map[string]any {
	s.live.mu.RLock()
	defer s.live.mu.RUnlock()
	return s.live.stats[jobID].raw
}

// LiveSummary is the few live numbers listjobs.json adds to a running
// entry; false when the crawl has not answered a poll.
func (s *Service) LiveSummary(jobID string) (Summary, bool) {
	s.live.mu.RLock()
	defer s.live.mu.RUnlock()
	st, ok := s.live.stats[jobID]
	return st.sum, ok
}

// forget drops an ended crawl's live stats at once, not at the next poll:
// its final stats take over.
func (s *Service) forget(jobID string) {
	s.live.mu.Lock()
	delete(s.live.stats, jobID)
	s.live.mu.Unlock()
}
