package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"

	"github.com/urfave/cli/v2"
)

// schedulesCommand manages recurring schedules (this daemon's
// addschedule.json and friends, issue 16).
func schedulesCommand() *cli.Command {
	change := func(name, action, usage, done string) *cli.Command {
		return &cli.Command{
			Name:      name,
			Usage:     usage,
			ArgsUsage: projectArg + " SCHEDULE",
			Flags:     withServer(projectFlag("the schedule's `PROJECT` (instead of the first argument)")),
			Action: serverAction(func(cCtx *cli.Context, s *session) error {
				project, args, err := projectArgs(cCtx, 1)
				if err != nil {
					return err
				}
				if err := s.c.ChangeSchedule(cCtx.Context, action, project, args[0]); err != nil {
					return err
				}
				s.human(func(w io.Writer) { fmt.Fprintln(w, done) })
				return nil
			}),
		}
	}
	return &cli.Command{
		Name:  "schedules",
		Usage: "recurring schedules: add, list, rm, pause, resume",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "run a spider on a timetable (--cron or --every); prints the schedule id and its next run",
				ArgsUsage: projectArg + " SPIDER",
				Flags: withServer(
					projectFlag("the `PROJECT` (instead of the first argument)"),
					&cli.StringFlag{Name: "cron", Usage: "five cron fields or @daily, @hourly...: `EXPR`"},
					&cli.StringFlag{Name: "timezone", Usage: "`ZONE` of --cron, such as Europe/Paris (default: the daemon's)"},
					&cli.StringFlag{Name: "every", Usage: "a fixed period: `DURATION` such as 30m or 2h"},
					&cli.StringFlag{Name: "overlap", Usage: "when a run is still active: skip (default), allow or queue"},
					&cli.StringFlag{Name: "jitter", Usage: "start each run up to `DURATION` late, at random"},
					&cli.IntFlag{Name: "retries", Usage: "run a failed or lost run again up to `N` times"},
					&cli.StringFlag{Name: "retry-delay", Usage: "wait `DURATION` before the first retry (doubling; server default 10s)"},
					&cli.StringFlag{Name: "id", Usage: "the schedule's `ID` (to update one; default: a new one)"},
					&cli.StringSliceFlag{Name: "arg", Aliases: []string{"a"}, Usage: "spider argument `NAME=VALUE` (repeatable)"},
					&cli.StringSliceFlag{Name: "setting", Aliases: []string{"s"}, Usage: "Scrapy setting `NAME=VALUE` (repeatable)"},
					&cli.Float64Flag{Name: "priority", Usage: "higher runs first"},
					&cli.StringFlag{Name: "version", Usage: "project `VERSION` (default: the latest at each run)"},
				),
				Action: serverAction(func(cCtx *cli.Context, s *session) error {
					project, rest, err := projectArgs(cCtx, 1)
					if err != nil {
						return err
					}
					form := url.Values{"project": {project}, "spider": {rest[0]}}
					for flag, param := range map[string]string{"cron": "cron", "timezone": "timezone", "every": "every", "overlap": "overlap",
						"jitter": "jitter", "retry-delay": "retry_delay", "id": "schedule", "version": "_version"} {
						if v := cCtx.String(flag); v != "" {
							form.Set(param, v)
						}
					}
					if cCtx.IsSet("retries") {
						form.Set("retries", strconv.Itoa(cCtx.Int("retries")))
					}
					if cCtx.IsSet("priority") {
						form.Set("priority", strconv.FormatFloat(cCtx.Float64("priority"), 'g', -1, 64))
					}
					settings, err := pairs("-s", cCtx.StringSlice("setting"))
					if err != nil {
						return err
					}
					for _, p := range settings {
						form.Add("setting", p.Name+"="+p.Value)
					}
					args, err := pairs("-a", cCtx.StringSlice("arg"))
					if err != nil {
						return err
					}
					for _, a := range args {
						if form.Has(a.Name) {
							return usagef("-a %s: addschedule.json uses that name", a.Name)
						}
						form.Set(a.Name, a.Value)
					}
					added, err := s.c.AddSchedule(cCtx.Context, form)
					if err != nil {
						return err
					}
					s.human(func(w io.Writer) { fmt.Fprintf(w, "%s\nnext run: %s\n", added.ID, added.NextRun) })
					return nil
				}),
			},
			{
				Name:  "list",
				Usage: "list the schedules (of -p PROJECT)",
				Flags: withServer(projectFlag("only this `PROJECT`")),
				Action: serverAction(func(cCtx *cli.Context, s *session) error {
					if err := needArgs(cCtx, 0, 0); err != nil {
						return err
					}
					list, err := s.c.ListSchedules(cCtx.Context, cCtx.String("project"))
					if err != nil {
						return err
					}
					s.human(func(w io.Writer) {
						rows := [][]string{{"SCHEDULE", "PROJECT", "SPIDER", "WHEN", "NEXT", "LAST", "OUTCOME", "PAUSED"}}
						for _, sc := range list {
							when := "every " + sc.Every
							if sc.Cron != "" {
								when = sc.Cron
								if sc.Timezone != "" {
									when += " (" + sc.Timezone + ")"
								}
							}
							rows = append(rows, []string{sc.ID, sc.Project, sc.Spider, when, shortTime(sc.NextRun), shortTime(sc.LastRun), sc.LastOutcome, sc.PausedReason})
						}
						table(w, rows)
					})
					return nil
				}),
			},
			change("rm", "del", "delete a schedule (its runs stay)", "deleted"),
			change("pause", "pause", "pause a schedule", "paused"),
			change("resume", "resume", "resume a paused schedule from its next due time", "resumed"),
		},
	}
}
