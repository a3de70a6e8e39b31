package main

import (
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/client"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// projectAndMore returns the project (from -p or the first argument) and
// the one or more arguments after it.
func projectAndMore(cCtx *cli.Context) (string, []string, error) {
	args := cCtx.Args().Slice()
	project := cCtx.String("project")
	if project == "" {
		if len(args) < 2 {
			return "", nil, wrongArgs(cCtx)
		}
		return args[0], args[1:], nil
	}
	if len(args) < 1 {
		return "", nil, wrongArgs(cCtx)
	}
	if args[0] == project && len(args) > 1 {
		return "", nil, usagef("%s: the project is given twice, as -p %s and as %q (give one)", cCtx.Command.Name, project, args[0])
	}
	return project, args, nil
}

func isPattern(s string) bool { return strings.ContainsAny(s, "*?[") }

// expandSpiders turns spider names and globs into the project's spiders
// (listspiders.json), each once, in the order given; a glob that matches
// nothing is an error, as a mistyped name would be at the server.
func expandSpiders(cCtx *cli.Context, s *session, project, version string, names []string) ([]string, error) {
	var all []string
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		if !isPattern(n) {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
			continue
		}
		if all == nil {
			var err error
			if all, err = s.c.ListSpiders(cCtx.Context, project, version); err != nil {
				return nil, err
			}
			sort.Strings(all)
		}
		matched := false
		for _, sp := range all {
			ok, err := path.Match(n, sp)
			if err != nil {
				return nil, usagef("spider pattern %q: %v", n, err)
			}
			if ok {
				matched = true
				if !seen[sp] {
					seen[sp] = true
					out = append(out, sp)
				}
			}
		}
		if !matched {
			return nil, fmt.Errorf("no spider of project %s matches %q (spiders: %s)", project, n, strings.Join(all, ", "))
		}
	}
	return out, nil
}

// cancelMany cancels every pending and/or running job of a project (of
// one spider when given): cancel.json once per job.
func cancelMany(cCtx *cli.Context, s *session, project string) error {
	state := job.State(cCtx.String("state"))
	switch state {
	case "", job.Pending, job.Running:
	default:
		return usagef("--state %q: want pending or running", state)
	}
	jobs, err := s.c.ListJobs(cCtx.Context, project)
	if err != nil {
		return err
	}
	spider := cCtx.String("spider")
	var rows [][]string
	for _, list := range [][]client.Job{jobs.Pending, jobs.Running} {
		for _, j := range list {
			if state != "" && j.State != state || spider != "" && j.Spider != spider {
				continue
			}
			prev, err := s.c.Cancel(cCtx.Context, project, j.ID, signalOf(cCtx))
			if err != nil {
				return fmt.Errorf("cancel %s: %w", j.ID, err)
			}
			if prev != "" {
				rows = append(rows, []string{j.ID, j.Spider, string(prev)})
			}
		}
	}
	s.human(func(w io.Writer) {
		if len(rows) > 0 {
			table(w, append([][]string{{"JOB", "SPIDER", "WAS"}}, rows...))
		}
		fmt.Fprintf(w, "cancelled %d job(s)\n", len(rows))
	})
	return nil
}

func signalOf(cCtx *cli.Context) string {
	if cCtx.Bool("force") {
		return "KILL"
	}
	return cCtx.String("signal")
}

func rerunCommand() *cli.Command {
	return &cli.Command{
		Name:      "rerun",
		Usage:     "queue a job again: the same spider, arguments, settings and version; prints the new job id",
		ArgsUsage: "JOB",
		Flags:     withServer(projectFlag("the job's `PROJECT` (default: any)")),
		Action: serverAction(func(cCtx *cli.Context, s *session) error {
			if err := needArgs(cCtx, 1, 1); err != nil {
				return err
			}
			j, err := s.c.FindJob(cCtx.Context, cCtx.String("project"), cCtx.Args().First())
			if errors.Is(err, client.ErrJobNotFound) {
				return fmt.Errorf("%w (listjobs.json no longer lists it)", err)
			}
			if err != nil {
				return err
			}
			spec := job.Spec{Project: j.Project, Spider: j.Spider, Version: j.Version,
				Settings: sortedPairs(j.Settings), Args: sortedPairs(j.Args)}
			id, err := s.c.Schedule(cCtx.Context, spec)
			if err != nil {
				return err
			}
			s.human(func(w io.Writer) { fmt.Fprintln(w, id) })
			return nil
		}),
	}
}

// sortedPairs is a listjobs.json settings or args object as pairs. The
// entry is a JSON object (a repeated name kept its last value), so its
// order is lost; names are sorted for a stable command line.
func sortedPairs(m map[string]string) []job.Pair {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]job.Pair, len(names))
	for i, k := range names {
		out[i] = job.Pair{Name: k, Value: m[k]}
	}
	return out
}
