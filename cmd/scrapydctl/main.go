// Command scrapydctl is the client for Scrapyd and for this daemon: it
// deploys a Scrapy project (scrapyd-deploy's job), schedules, watches and
// cancels crawls, reads their logs and items, and talks to a running
// crawl's web service. It uses only the public API, so it works against
// Python Scrapyd too.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	code := exitStatus(err)
	if code != exitOK && code != exitInterrupted { // interrupted: nothing to add
		fmt.Fprintln(os.Stderr, "scrapydctl:", err)
	}
	os.Exit(code)
}

// run is main without the process: tests call it with their own writers.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	app := newApp(stdout, stderr)
	return app.RunContext(ctx, reorderArgs(app.Commands, args))
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "scrapydctl",
		Usage: "deploy Scrapy projects to Scrapyd and control their crawls",
		Description: "The server is a deploy target of the closest scrapy.cfg (-t NAME, default \"default\"),\n" +
			"or --url (or --host/--port); credentials come from the flags, the target, or ~/.netrc.\n\n" +
			exitStatusHelp,
		Writer:    stdout,
		ErrWriter: stderr,
		// Spider arguments and settings may contain commas.
		DisableSliceFlagSeparator: true,
		// main reports errors once, with the program's name.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			deployCommand(),
			projectsCommand(), versionsCommand(), spidersCommand(),
			scheduleCommand(), jobsCommand(), statusCommand(), cancelCommand(), rerunCommand(), schedulesCommand(),
			logCommand(), itemsCommand(), eventsCommand(),
			delversionCommand(), delprojectCommand(), daemonstatusCommand(),
			wsCommand(),
		},
		OnUsageError: asUsageError,
	}
	onUsageErrors(app.Commands)
	return app
}
