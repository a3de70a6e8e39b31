package dispatch_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/events"
	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/process"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapy"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// startTimes wraps a launcher and reports when each crawl process exists.
type startTimes struct {
	launch.Launcher
	started chan time.Time
}

func (s *startTimes) Start(ctx context.Context, c launch.Command) (launch.Handle, launch.Watch, error) {
	h, w, err := s.Launcher.Start(ctx, c)
	s.started <- time.Now()
	if err == nil {
		// Only the start is measured: stop the crawl at once.
		syscall.Kill(-h.PID, syscall.SIGKILL)
	}
	return h, w, err
}

type listAll struct{}

func (listAll) List(context.Context, scrapy.Project) ([]string, error) {
	return []string{"params"}, nil
}

// BenchmarkScheduleToCrawlStarted: from the schedule call to the crawl's
// process existing (fork and exec of the real interpreter done), through
// the real store, dispatcher and exec launcher. Scrapyd waits for its next
// 5-second poll (2.5 s on average). The job events are written with each
// change (the store always does); nobody reads them.
func BenchmarkScheduleToCrawlStarted(b *testing.B) { scheduleToStart(b, nil) }

// BenchmarkScheduleToCrawlStartedWebhook: the same with the event pipeline
// busy: a webhook receiver on 127.0.0.1 gets every event as it commits
// (issue 17: events must never slow dispatch).
func BenchmarkScheduleToCrawlStartedWebhook(b *testing.B) {
	scheduleToStart(b, func(ctx context.Context, st *store.Store, cfg *config.Config) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
		b.Cleanup(srv.Close)
		c := *cfg
		c.Webhooks = []config.Webhook{{Name: "bench", URL: srv.URL, Secret: "s"}}
		feed := events.NewFeed(st)
		st.OnEvent(feed.Notify)
		h := &events.Webhooks{Feed: feed, Cursors: st, Config: func() *config.Config { return &c }, Log: slog.New(slog.DiscardHandler)}
		go h.Run(ctx)
	})
}

// scheduleToStart measures; consume, if set, starts an event consumer.
func scheduleToStart(b *testing.B, consume func(context.Context, *store.Store, *config.Config)) {
	root := b.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/scrapyd"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/scrapyd/scrapyd.conf"), []byte("[scrapyd]\nmax_proc = 4\nfinished_to_keep = 10\n"), 0o644)
	cfg, err := config.Load(config.Options{Root: root, Env: []string{}, Cwd: root, Home: "-"})
	if err != nil {
		b.Fatal(err)
	}
	conf := func() *config.Config { return cfg }
	st, err := store.Open(cfg.DbsDir)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	eggs := &egg.Store{Dir: cfg.EggsDir}
	staged, _ := eggs.Stage("sample", bytes.NewReader(testkit.SampleEgg(b)))
	staged.Commit("1.0")
	launcher := &startTimes{Launcher: process.New(), started: make(chan time.Time, 1)}
	disp := dispatch.New(dispatch.Options{Config: conf, Store: st, Eggs: eggs, Launcher: launcher,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	svc := &service.Service{Config: conf, Store: st, Eggs: eggs, Dispatch: disp,
		Lister: func(*config.Config) service.Lister { return listAll{} }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if consume != nil {
		consume(ctx, st, cfg)
	}
	go disp.Run(ctx)

	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := svc.Schedule(ctx, service.ScheduleRequest{Project: "sample", Spider: "params"}); err != nil {
			b.Fatal(err)
		}
		lat[i] = (<-launcher.started).Sub(t0)
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
