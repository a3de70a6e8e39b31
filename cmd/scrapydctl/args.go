package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// reorderArgs moves a command's flags in front of its positional arguments,
// so that `schedule sample params -a limit=2` and `log JOB -f` work:
// urfave/cli v2, like the flag package, stops parsing flags at the first
// positional argument. Everything after "--" stays positional.
func reorderArgs(cmds []*cli.Command, args []string) []string {
	if len(args) == 0 {
		return args
	}
	i := 1
	var leaf *cli.Command
	for i < len(args) {
		c := findCommand(cmds, args[i])
		if c == nil {
			break
		}
		leaf, cmds = c, c.Subcommands
		i++
	}
	if leaf == nil || len(leaf.Subcommands) > 0 {
		return args // a command group: its own parsing finds the subcommand
	}
	out := append([]string(nil), args[:i]...)
	var flags, positional, afterDashes []string
	rest := args[i:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		if a == "--" {
			afterDashes = rest[j:]
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !hasValue && takesValue(leaf, name) && j+1 < len(rest) {
			j++
			flags = append(flags, rest[j])
		}
	}
	out = append(out, flags...)
	if afterDashes != nil {
		// "--" must still come before every positional, not just the late ones.
		return append(append(append(out, "--"), positional...), afterDashes[1:]...)
	}
	return append(out, positional...)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether the named flag of c consumes the next argument.
// Unknown flags are taken as booleans; urfave/cli reports them later.
func takesValue(c *cli.Command, name string) bool {
	for _, f := range c.Flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			_, isBool := f.(*cli.BoolFlag)
			return !isBool
		}
	}
	return false
}
