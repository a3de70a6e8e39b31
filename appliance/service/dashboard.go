package service

import (
	"context"
	"sort"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Dashboard is the state a person checks at a glance (issue 17 point 6).
type Dashboard struct {
	Slots, Running, Pending int
	// Failures are the failed and lost jobs among the latest finished,
	// newest first.
	Failures []job.Job
	// Spiders are each known spider's latest runs, newest first.
	Spiders []SpiderRuns
}

// SpiderRuns is one spider's recent history.
type SpiderRuns struct {
	Project, Spider string
	Runs            []job.Job
}

// How much of the history the dashboard reads: the latest finished jobs
// for the failures (and for spiders no deployed version lists), and runs
// per spider, each through the finished history's indexes.
const (
	dashboardRecent = 200
	dashboardFailed = 10
)

// Dashboard gathers the dashboard's data: the counts, failures among the
// latest finished jobs, and the last runs of every spider that the
// deployed projects' cached spider lists name or that ran lately. It never
// runs `scrapy list`.
func (s *Service) Dashboard(ctx context.Context, runs int) (Dashboard, error) {
	cfg := s.Config()
	d := Dashboard{Slots: cfg.Slots()}
	d.Pending, d.Running, _ = s.Store.Counts()
	finished := map[job.State]bool{job.Finished: true}
	_, _, recent, err := s.Store.Snapshot(ctx, store.Filter{}, store.Filter{Limit: dashboardRecent}, finished)
	if err != nil {
		return d, err
	}
	type key struct{ project, spider string }
	seen := map[key]bool{}
	for _, j := range recent {
		if (j.Outcome == job.OutcomeFailed || j.Outcome == job.OutcomeLost) && len(d.Failures) < dashboardFailed {
			d.Failures = append(d.Failures, j)
		}
		seen[key{j.Project, j.Spider}] = true
	}
	projects, err := s.Eggs.Projects()
	if err != nil {
		return d, err
	}
	for _, p := range projects {
		v, err := s.version(p, "")
		if err != nil {
			continue
		}
		names, _, err := s.Store.Spiders(ctx, p, v.Name)
		if err != nil {
			return d, err
		}
		for _, n := range names {
			seen[key{p, n}] = true
		}
	}
	keys := make([]key, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].project != keys[j].project {
			return keys[i].project < keys[j].project
		}
		return keys[i].spider < keys[j].spider
	})
	for _, k := range keys {
		_, _, last, err := s.Store.Snapshot(ctx, store.Filter{}, store.Filter{Project: k.project, Spider: k.spider, Limit: runs}, finished)
		if err != nil {
			return d, err
		}
		d.Spiders = append(d.Spiders, SpiderRuns{Project: k.project, Spider: k.spider, Runs: last})
	}
	return d, nil
}
