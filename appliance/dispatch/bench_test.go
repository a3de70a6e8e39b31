package dispatch_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
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
// 5-second poll (2.5 s on average).
func BenchmarkScheduleToCrawlStarted(b *testing.B) {
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
