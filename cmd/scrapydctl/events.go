package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/client"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:  "events",
		Usage: "print job events (scheduled, started, finished), one a line",
		Description: "Reads the daemon's /events stream. Without --follow it prints the events the daemon\n" +
			"still keeps (after --since) and exits; with it, it waits for new ones (only new ones\n" +
			"unless --since is given) and reconnects after the last one seen if the daemon restarts.",
		Flags: withServer(
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new events"},
			&cli.Int64Flag{Name: "since", Usage: "only events after event `ID`", Value: -1},
			projectFlag("only this `PROJECT`"),
		),
		Action: serverAction(func(cCtx *cli.Context, s *session) error {
			if err := needArgs(cCtx, 0, 0); err != nil {
				return err
			}
			follow, since := cCtx.Bool("follow"), cCtx.Int64("since")
			if since < -1 {
				return usagef("--since %d: want an event id (0 or more)", since)
			}
			if since < 0 && !follow {
				since = 0 // without -f: everything kept
			}
			project := cCtx.String("project")
			return s.c.Events(cCtx.Context, client.EventsOptions{Since: since, Follow: follow}, func(e client.Event) error {
				if project != "" && e.Project != project {
					return nil
				}
				if s.json {
					_, err := fmt.Fprintf(s.out, "%s\n", e.Raw)
					return err
				}
				_, err := io.WriteString(s.out, eventLine(e)+"\n")
				return err
			})
		}),
	}
}

// eventLine is an event on one line: when, its id, what happened, to
// which job, and for a finished job how it ended.
func eventLine(e client.Event) string {
	parts := []string{shortTime(strings.Replace(e.Time, "T", " ", 1)), fmt.Sprintf("#%d", e.ID), fmt.Sprintf("%-9s", e.Event),
		e.Project + "/" + e.Spider + "/" + e.Job}
	if e.Outcome != nil {
		parts = append(parts, outcome(job.Outcome(*e.Outcome), e.ExitCode))
	}
	if e.Duration != nil {
		parts = append(parts, fmt.Sprintf("%.1fs", *e.Duration))
	}
	return strings.Join(parts, "  ")
}

// clearScreen starts a redrawn listing on a terminal; elsewhere (a file,
// a pipe) listings follow each other.
func clearScreen(w io.Writer) {
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			io.WriteString(w, "\x1b[H\x1b[2J")
			return
		}
	}
	io.WriteString(w, "\n")
}
