package service_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
	"github.com/scrapyd-debian/scrapyd/appliance/store/memstore"
)

// awayStore is a shared database gone away under Enqueue: refused before
// anything reached it, or after the commit was sent (the job may be in
// the queue: this one is).
type awayStore struct {
	*memstore.Store
	inDoubt bool
}

func (a awayStore) Enqueue(spec job.Spec, now time.Time) (job.Job, error) {
	if !a.inDoubt {
		return job.Job{}, fmt.Errorf("enqueue %s: %w: connection refused", spec.ID, store.ErrUnavailable)
	}
	j, _ := a.Store.Enqueue(spec, now)
	return j, fmt.Errorf("enqueue %s: %w: %w: unexpected EOF", spec.ID, store.ErrUnavailable, store.ErrInDoubt)
}

// TestScheduleDatabaseAway: schedule.json says "nothing was scheduled"
// only when nothing reached the database; when it went away as the job
// was committed, the answer says the job may be queued, and under which
// id, instead of a refusal the queue would contradict.
func TestScheduleDatabaseAway(t *testing.T) {
	for _, c := range []struct {
		inDoubt bool
		want    string
	}{
		{false, "nothing was scheduled: enqueue j1: the job database is unavailable: connection refused"},
		{true, "job 'j1' may or may not have been scheduled (listjobs.json says which once the database is back)"},
	} {
		s, jobs := newService(t, &lister{names: []string{"a"}})
		if _, err := addVersion(t, s, "p", "1.0"); err != nil {
			t.Fatal(err)
		}
		s.Store = awayStore{jobs, c.inDoubt}
		_, err := s.Schedule(context.Background(), service.ScheduleRequest{Project: "p", Spider: "a", JobID: "j1"})
		var se *service.Error
		if !errors.As(err, &se) || !strings.HasPrefix(se.Message, c.want) {
			t.Errorf("in doubt %v: %v, want a message starting %q", c.inDoubt, err, c.want)
		}
		if c.inDoubt && !strings.Contains(se.Message, "the job database is unavailable") {
			t.Errorf("in doubt: %q does not say the database is unavailable", se.Message)
		}
	}
}
