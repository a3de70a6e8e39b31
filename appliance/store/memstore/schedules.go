package memstore

import (
	"cmp"
	"context"
	"slices"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// running counts running jobs by project and spider; s.mu held.
func (s *Store) running() store.Running {
	out := store.Running{}
	for _, j := range s.jobs {
		if j.State == job.Running {
			out[[2]string{j.Project, j.Spider}]++
		}
	}
	return out
}

// RunningCounts counts the running jobs of each project and spider.
func (s *Store) RunningCounts(ctx context.Context) (store.Running, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running(), nil
}

// SaveSchedule adds a schedule or replaces the one with its id.
func (s *Store) SaveSchedule(sc job.Schedule) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc.Settings, sc.Args = slices.Clone(sc.Settings), slices.Clone(sc.Args)
	s.scheds[sc.ID] = sc
	return nil
}

// Schedules lists a project's schedules ("" for all), oldest first.
func (s *Store) Schedules(ctx context.Context, project string) ([]job.Schedule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []job.Schedule
	for _, sc := range s.scheds {
		if project == "" || sc.Project == project {
			sc.Settings, sc.Args = slices.Clone(sc.Settings), slices.Clone(sc.Args)
			out = append(out, sc)
		}
	}
	slices.SortFunc(out, func(a, b job.Schedule) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// DeleteSchedule removes a project's schedule; store.ErrNoSchedule when
// it has none with this id.
func (s *Store) DeleteSchedule(project, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sc, ok := s.scheds[id]; !ok || sc.Project != project {
		return store.ErrNoSchedule
	}
	delete(s.scheds, id)
	return nil
}

// ScheduleRuns returns a schedule's runs, newest first, at most limit (0: all).
func (s *Store) ScheduleRuns(ctx context.Context, id string, limit int) ([]job.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var runs []*job.Job
	for _, j := range s.jobs {
		if j.Schedule == id {
			runs = append(runs, j)
		}
	}
	slices.SortFunc(runs, func(a, b *job.Job) int { return cmp.Compare(b.Seq, a.Seq) })
	if limit > 0 && len(runs) > limit {
		runs = runs[:limit]
	}
	out := make([]job.Job, len(runs))
	for i, j := range runs {
		out[i] = copyOf(j)
	}
	return out, nil
}

// ActiveRuns counts a schedule's pending and running jobs.
func (s *Store) ActiveRuns(ctx context.Context, id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, j := range s.jobs {
		if j.Schedule == id && j.State != job.Finished {
			n++
		}
	}
	return n, nil
}
