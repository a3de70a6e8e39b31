package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/scrapyd-debian/scrapyd/appliance/client"
	"github.com/urfave/cli/v2"
)

// Exit statuses, documented in --help, the README and scrapydctl(1), so
// that scripts can tell a wrong command line and an unreachable server
// from a server that said no.
const (
	exitOK          = 0
	exitFailed      = 1 // the server answered with an error, or the command failed
	exitUsage       = 2 // the command line is wrong; nothing was sent
	exitUnreachable = 3 // no answer from the server at all
	exitInterrupted = 130
)

// exitStatusHelp is the --help text for the statuses above.
const exitStatusHelp = "Exit status: 0 success; 1 the server answered with an error (or the command failed);\n" +
	"2 usage error (bad command line, nothing sent); 3 the server cannot be reached; 130 interrupted."

// usageError is a wrong command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef makes a usageError, like fmt.Errorf.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitStatus maps an error from run to the process's exit status.
func exitStatus(err error) int {
	var (
		usage       usageError
		unreachable *client.UnreachableError
		exitCoder   cli.ExitCoder
	)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &usage):
		return exitUsage
	case errors.As(err, &exitCoder):
		// urfave/cli's own: an unknown command or help topic.
		return exitUsage
	case errors.As(err, &unreachable):
		return exitUnreachable
	}
	return exitFailed
}

// asUsageError is every command's OnUsageError: a flag that does not parse
// is reported once, by main, with status 2.
func asUsageError(_ *cli.Context, err error, _ bool) error { return usageError{err} }

// onUsageErrors sets asUsageError on cmds and their subcommands.
func onUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = asUsageError
		onUsageErrors(c.Subcommands)
	}
}
