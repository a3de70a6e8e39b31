package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/scrapyd-debian/scrapyd/appliance/client"
	"github.com/urfave/cli/v2"
)

func projectsCommand() *cli.Command {
	return &cli.Command{
		Name:  "projects",
		Usage: "list the projects",
		Flags: withServer(),
		Action: serverAction(func(cCtx *cli.Context, s *session) error {
			if err := needArgs(cCtx, 0, 0); err != nil {
				return err
			}
			projects, err := s.c.ListProjects(cCtx.Context)
			s.human(func(w io.Writer) { lines(w, projects) })
			return err
		}),
	}
}

func versionsCommand() *cli.Command {
	return &cli.Command{
		Name:      "versions",
		Usage:     "list a project's versions, oldest first (the last one runs)",
		ArgsUsage: projectArg,
		Flags:     withServer(projectFlag("the `PROJECT` (instead of the argument)")),
		Action: serverAction(func(cCtx *cli.Context, s *session) error {
			project, _, err := projectArgs(cCtx, 0)
			if err != nil {
				return err
			}
			versions, err := s.c.ListVersions(cCtx.Context, project)
			s.human(func(w io.Writer) { lines(w, versions) })
			return err
		}),
	}
}

func spidersCommand() *cli.Command {
	return &cli.Command{
		Name:      "spiders",
		Usage:     "list a project's spiders",
		ArgsUsage: projectArg,
		Flags: withServer(projectFlag("the `PROJECT` (instead of the argument)"),
			&cli.StringFlag{Name: "version", Usage: "project `VERSION` (default: the latest)"}),
		Action: serverAction(func(cCtx *cli.Context, s *session) error {
			project, _, err := projectArgs(cCtx, 0)
			if err != nil {
				return err
			}
			spiders, err := s.c.ListSpiders(cCtx.Context, project, cCtx.String("version"))
			s.human(func(w io.Writer) { lines(w, spiders) })
			return err
		}),
	}
}

func delversionCommand() *cli.Command {
	return &cli.Command{
		Name:      "delversion",
		Usage:     "delete one version of a project",
		ArgsUsage: projectArg + " VERSION",
		Flags:     withServer(projectFlag("the `PROJECT` (instead of the first argument)")),
		Action: serverAction(func(cCtx *cli.Context, s *session) error {
			project, args, err := projectArgs(cCtx, 1)
			if err != nil {
				return err
			}
			version := args[0]
			if err := s.c.DelVersion(cCtx.Context, project, version); err != nil {
				return err
			}
			s.human(func(w io.Writer) { fmt.Fprintf(w, "deleted version %s of %s\n", version, project) })
			return nil
		}),
	}
}

func delprojectCommand() *cli.Command {
	return &cli.Command{
		Name:      "delproject",
		Usage:     "delete a project and all its versions",
		ArgsUsage: projectArg,
		Flags:     withServer(projectFlag("the `PROJECT` (instead of the argument)")),
		Action: serverAction(func(cCtx *cli.Context, s *session) error {
			project, _, err := projectArgs(cCtx, 0)
			if err != nil {
				return err
			}
			if err := s.c.DelProject(cCtx.Context, project); err != nil {
				return err
			}
			s.human(func(w io.Writer) { fmt.Fprintf(w, "deleted project %s\n", project) })
			return nil
		}),
	}
}

func daemonstatusCommand() *cli.Command {
	return &cli.Command{
		Name:  "daemonstatus",
		Usage: "show the number of pending, running and finished jobs, and the daemon's diagnostics",
		Flags: withServer(),
		Action: serverAction(func(cCtx *cli.Context, s *session) error {
			if err := needArgs(cCtx, 0, 0); err != nil {
				return err
			}
			st, err := s.c.DaemonStatus(cCtx.Context)
			if err != nil {
				return err
			}
			s.human(func(w io.Writer) {
				table(w, [][]string{
					{"node", st.NodeName},
					{"pending", strconv.Itoa(st.Pending)},
					{"running", strconv.Itoa(st.Running)},
					{"finished", strconv.Itoa(st.Finished)},
				})
			})
			if s.json {
				// Scripts get daemonstatus.json's answer, as before.
				return nil
			}
			d, err := s.c.Diagnostics(cCtx.Context)
			var he *client.HTTPError
			if errors.As(err, &he) && he.StatusCode == http.StatusNotFound {
				// Scrapyd itself has no diagnostics.json.
				return nil
			}
			if err != nil {
				return err
			}
			s.human(func(w io.Writer) { printDiagnostics(w, d) })
			return nil
		}),
	}
}

// printDiagnostics writes diagnostics.json's answer below the counts.
func printDiagnostics(w io.Writer, d client.Diagnostics) {
	rows := [][]string{{"version", d.Version}, {"launcher", d.Launcher}}
	configError := "none"
	if d.ConfigError != "" {
		configError = d.ConfigError + " (the previous configuration stays in use)"
	}
	rows = append(rows, []string{"config error", configError})
	restart := "no"
	if len(d.RestartNeeded) > 0 {
		restart = "yes, for " + strings.Join(d.RestartNeeded, ", ")
	}
	rows = append(rows, []string{"restart needed", restart})
	for _, warning := range d.Warnings {
		rows = append(rows, []string{"warning", warning})
	}
	fmt.Fprintln(w)
	table(w, rows)
	if len(d.Nodes) > 0 {
		// Cluster mode: the counts above are the cluster's.
		nodes := [][]string{{"NODE", "STATE", "SLOTS", "RUNNING", "LEASE UNTIL", "VERSION"}}
		for _, n := range d.Nodes {
			nodes = append(nodes, []string{n.Name, nodeState(n), strconv.Itoa(n.Slots), strconv.Itoa(n.Running), n.LeaseUntil, n.Version})
		}
		fmt.Fprintln(w)
		table(w, nodes)
	}
}

// nodeState is a node's state as the web's nodes page words it.
func nodeState(n client.Node) string {
	switch {
	case n.Alive:
		return "alive"
	case n.Reaped:
		return "dead"
	case n.Stopped:
		return "stopped"
	}
	return "lease expired"
}
