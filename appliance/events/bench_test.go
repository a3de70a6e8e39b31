package events

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// BenchmarkWebhookDelivery: events delivered per second to a receiver on
// 127.0.0.1 that checks nothing, from the SQLite store: each delivery is
// a signed POST and its cursor's commit. b.N events are written first.
func BenchmarkWebhookDelivery(b *testing.B) {
	st, err := store.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	f := NewFeed(st)
	st.OnEvent(f.Notify)
	var got atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if got.Add(1) == target {
			close(done)
		}
	}))
	defer srv.Close()
	cfg := &config.Config{NodeName: "bench", LogsDir: "/l", Webhooks: []config.Webhook{{Name: "b", URL: srv.URL, Secret: "s"}}}
	// The receiver's cursor exists before the events, so it gets them all.
	if err := st.SetCursor(srv.URL, 0); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		if _, err := st.Enqueue(job.Spec{ID: job.NewID(), Project: "p", Spider: "s"}, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	h := &Webhooks{Feed: f, Cursors: st, Config: func() *config.Config { return cfg }, Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	t0 := time.Now()
	go h.Run(ctx)
	<-done
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "events/s")
}
