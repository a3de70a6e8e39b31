package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/scrapyd-debian/scrapyd/appliance/client"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/urfave/cli/v2"
)

func scheduleCommand() *cli.Command {
	return &cli.Command{
		Name:      "schedule",
		Usage:     "queue a crawl of each spider (or glob such as '*' or 'news_*'); prints the job ids",
		ArgsUsage: projectArg + " SPIDER...",
		Flags: withServer(
			projectFlag("the `PROJECT` (instead of the first argument)"),
			&cli.StringSliceFlag{Name: "arg", Aliases: []string{"a"}, Usage: "spider argument `NAME=VALUE` (repeatable)"},
			&cli.StringSliceFlag{Name: "setting", Aliases: []string{"s"}, Usage: "Scrapy setting `NAME=VALUE` (repeatable)"},
			&cli.Float64Flag{Name: "priority", Usage: "higher runs first"},
			&cli.StringFlag{Name: "version", Usage: "project `VERSION` (default: the latest at start)"},
			&cli.StringFlag{Name: "jobid", Usage: "job `ID` (default: one chosen by the server)"},
		),
		Action: serverAction(func(cCtx *cli.Context, s *session) error {
			project, spiders, err := projectAndMore(cCtx)
			if err != nil {
				return err
			}
			args, err := pairs("-a", cCtx.StringSlice("arg"))
			if err != nil {
				return err
			}
			settings, err := pairs("-s", cCtx.StringSlice("setting"))
			if err != nil {
				return err
			}
			names, err := expandSpiders(cCtx, s, project, cCtx.String("version"), spiders)
			if err != nil {
				return err
			}
			if len(names) > 1 && cCtx.String("jobid") != "" {
				return usagef("--jobid names one job: give one spider")
			}
			var rows [][]string
			for _, spider := range names {
				id, err := s.c.Schedule(cCtx.Context, job.Spec{
					ID:       cCtx.String("jobid"),
					Project:  project,
					Spider:   spider,
					Version:  cCtx.String("version"),
					Settings: settings,
					Args:     args,
					Priority: cCtx.Float64("priority"),
				})
				if err != nil && len(names) > 1 {
					return fmt.Errorf("%s: %w", spider, err)
				} else if err != nil {
					return err
				}
				rows = append(rows, []string{spider, id})
			}
			s.human(func(w io.Writer) {
				if len(spiders) == 1 && !isPattern(spiders[0]) {
					fmt.Fprintln(w, rows[0][1])
					return
				}
				table(w, append([][]string{{"SPIDER", "JOB"}}, rows...))
			})
			return nil
		}),
	}
}

// pairs parses NAME=VALUE options, split on the first "=" as Scrapyd does.
func pairs(flag string, values []string) ([]job.Pair, error) {
	var out []job.Pair
	for _, v := range values {
		name, value, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return nil, usagef("%s %q: want NAME=VALUE", flag, v)
		}
		out = append(out, job.Pair{Name: name, Value: value})
	}
	return out, nil
}

func jobsCommand() *cli.Command {
	return &cli.Command{
		Name:  "jobs",
		Usage: "list pending, running and finished jobs",
		Flags: withServer(
			projectFlag("only this `PROJECT`"),
			&cli.StringFlag{Name: "state", Usage: "only `STATE`: pending, running or finished"},
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "list again at each job event (the daemon's /events) until interrupted"},
		),
		Action: serverAction(func(cCtx *cli.Context, s *session) error {
			if err := needArgs(cCtx, 0, 0); err != nil {
				return err
			}
			state := job.State(cCtx.String("state"))
			switch state {
			case "", job.Pending, job.Running, job.Finished:
			default:
				return usagef("--state %q: want pending, running or finished", state)
			}
			list := func() error {
				jobs, err := s.c.ListJobs(cCtx.Context, cCtx.String("project"))
				if err != nil {
					return err
				}
				s.human(func(w io.Writer) { printJobs(w, jobs.All(), state) })
				return nil
			}
			if !cCtx.Bool("watch") {
				return list()
			}
			if s.json {
				return usagef("--watch prints tables; for JSON use: scrapydctl events -f --json")
			}
			// The listing is taken once the stream is open (again after a
			// reconnection), so no change falls between the two; each
			// event then redraws it.
			first := true
			open := func() error {
				if !first {
					clearScreen(s.out)
				}
				first = false
				return list()
			}
			project := cCtx.String("project")
			return s.c.Events(cCtx.Context, client.EventsOptions{Since: -1, Follow: true, OnOpen: open}, func(e client.Event) error {
				if project != "" && e.Project != project {
					return nil
				}
				clearScreen(s.out)
				fmt.Fprintln(s.out, eventLine(e))
				return list()
			})
		}),
	}
}

func printJobs(w io.Writer, jobs []client.Job, only job.State) {
	rows := [][]string{{"STATE", "PROJECT", "SPIDER", "JOB", "PID", "START", "END", "OUTCOME"}}
	// A cluster's listing names each crawl's node: a column of its own.
	cluster := slices.ContainsFunc(jobs, func(j client.Job) bool { return j.Node != "" })
	if cluster {
		rows[0] = append(rows[0], "NODE")
	}
	for _, j := range jobs {
		if only != "" && j.State != only {
			continue
		}
		pid := ""
		if j.PID != 0 {
			pid = strconv.Itoa(j.PID)
		}
		row := []string{string(j.State), j.Project, j.Spider, j.ID, pid,
			shortTime(j.StartTime), shortTime(j.EndTime), outcome(j.Outcome, j.ExitCode)}
		if cluster {
			row = append(row, j.Node)
		}
		rows = append(rows, row)
	}
	table(w, rows)
}

// shortTime drops the microseconds, as Scrapyd's /jobs page does.
func shortTime(t string) string {
	t, _, _ = strings.Cut(t, ".")
	return t
}

func outcome(o job.Outcome, exit *int) string {
	if exit != nil {
		return fmt.Sprintf("%s (exit %d)", o, *exit)
	}
	return string(o)
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show a job's state",
		ArgsUsage: "JOB",
		Flags:     withServer(projectFlag("the job's `PROJECT`")),
		Action: serverAction(func(cCtx *cli.Context, s *session) error {
			if err := needArgs(cCtx, 1, 1); err != nil {
				return err
			}
			st, err := s.c.Status(cCtx.Context, cCtx.Args().First(), cCtx.String("project"))
			if err != nil {
				return err
			}
			s.human(func(w io.Writer) {
				switch {
				case st.State == "":
					fmt.Fprintln(w, "unknown")
				case st.Outcome != "" || st.ExitCode != nil:
					fmt.Fprintf(w, "%s: %s\n", st.State, outcome(st.Outcome, st.ExitCode))
				default:
					fmt.Fprintln(w, st.State)
				}
			})
			return nil
		}),
	}
}

func cancelCommand() *cli.Command {
	return &cli.Command{
		Name:      "cancel",
		Usage:     "cancel a pending or running job, or with -p alone every one of the project's (--spider, --state narrow)",
		ArgsUsage: projectArg + " [JOB]",
		Flags: withServer(
			projectFlag("the job's `PROJECT` (instead of the first argument)"),
			&cli.StringFlag{Name: "signal", Usage: "`SIGNAL` name or number for a running crawl (server default: INT)"},
			&cli.BoolFlag{Name: "force", Usage: "stop it now (send KILL)"},
			&cli.StringFlag{Name: "spider", Usage: "with -p and no JOB: only this `SPIDER`'s jobs"},
			&cli.StringFlag{Name: "state", Usage: "with -p and no JOB: only `STATE` jobs (pending or running)"},
		),
		Action: serverAction(func(cCtx *cli.Context, s *session) error {
			if cCtx.Bool("force") && cCtx.String("signal") != "" {
				return usagef("give either --signal or --force, not both")
			}
			if p := cCtx.String("project"); p != "" && cCtx.NArg() == 0 {
				return cancelMany(cCtx, s, p)
			}
			if cCtx.String("spider") != "" || cCtx.String("state") != "" {
				return usagef("--spider and --state select many jobs: give -p PROJECT and no JOB")
			}
			project, args, err := projectArgs(cCtx, 1)
			if err != nil {
				return err
			}
			prev, err := s.c.Cancel(cCtx.Context, project, args[0], signalOf(cCtx))
			if err != nil {
				return err
			}
			s.human(func(w io.Writer) {
				if prev == "" {
					fmt.Fprintln(w, "nothing to cancel: the job is neither pending nor running")
					return
				}
				fmt.Fprintf(w, "cancelled (it was %s)\n", prev)
			})
			return nil
		}),
	}
}
