package dispatch_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/launchtest"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit/faultproxy"
)

// claimWatch is a node's view of the store that hands the test its
// claims' errors.
type claimWatch struct {
	pgstore.Local
	errs chan error
}

func (s claimWatch) Claim(now time.Time, caps store.Caps) (*job.Job, error) {
	j, err := s.Local.Claim(now, caps)
	if err != nil {
		select {
		case s.errs <- err:
		default:
		}
	}
	return j, err
}

// The real thing on PostgreSQL: job a's claim commits while the node's
// connection is black-holed, so its answer never comes (the claim fails in
// doubt once pgstore.CallBound has passed). After the heal, a goes back to
// the queue ahead of b and runs, once, in the node's only slot.
func TestLostClaimAnswerOnPostgres(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	proxy := faultproxy.Start(t, pgtest.Addr(t, url))
	ctx := context.Background()
	st, err := pgstore.Open(ctx, pgtest.Via(t, url, proxy.Addr), pgstore.Options{Node: "n1", ServerClock: true, Lease: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Register(ctx); err != nil {
		t.Fatal(err)
	}
	direct, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close(context.Background()) })
	// At the COMMIT of a's first claim (a deferred trigger runs there, after
	// the node sent it), the database waits a moment: the test cuts the node
	// off meanwhile, and the COMMIT's answer is held.
	if _, err := direct.Exec(ctx, `
CREATE TABLE indoubt_once ();
CREATE FUNCTION indoubt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id = 'a' AND NEW.state = 'running' AND NOT EXISTS (SELECT FROM indoubt_once) THEN
		INSERT INTO indoubt_once DEFAULT VALUES;
		PERFORM pg_sleep(6);
	END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER indoubt AFTER UPDATE ON jobs DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION indoubt();`); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := st.Enqueue(job.Spec{ID: id, Project: "p", Spider: "s"}, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	d := newDaemon(t, "")
	d.cfg.MaxProc = 1
	jobs := claimWatch{st.Local(), make(chan error, 1)}
	m := launchtest.NewMachine()
	disp := dispatch.New(dispatch.Options{
		Config: func() *config.Config { return d.cfg }, Store: jobs, Eggs: &egg.Store{Dir: d.cfg.EggsDir},
		Launcher: m.Launcher(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- disp.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	row := func(q string) string {
		var s string
		if err := direct.QueryRow(ctx, q).Scan(&s); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		return s
	}
	eventually(t, "a's COMMIT under way", func() bool {
		return row(`SELECT pid::text FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database()`) != ""
	})
	proxy.BlackHole()
	t.Cleanup(proxy.Heal)
	eventually(t, "a's claim committed", func() bool { return row(`SELECT state FROM jobs WHERE id = 'a'`) == "running" })
	select {
	case err := <-jobs.errs:
		if !errors.Is(err, store.ErrInDoubt) {
			t.Fatalf("the claim whose answer was held failed with %v; want store.ErrInDoubt", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the claim whose answer was held never failed")
	}
	if h := row(`SELECT coalesce(handle, '') || '|' || node || '|' || state FROM jobs WHERE id = 'a'`); h != "|n1|running" {
		t.Fatalf("after the lost answer a is %q; want running on n1 with no handle", h)
	}
	proxy.Heal()
	eventually(t, "a started", func() bool {
		disp.Wake() // as the node's listener does when it reconnects
		return m.IsRunning("a")
	})
	if m.IsRunning("b") {
		t.Fatal("b runs: a lost its place")
	}
	m.End("a", code(0))
	eventually(t, "b started", func() bool { return m.IsRunning("b") })
	if n := m.Starts("a"); n != 1 {
		t.Fatalf("a started %d times, want once", n)
	}
}
