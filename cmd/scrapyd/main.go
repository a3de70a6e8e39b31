// Command scrapyd is the Scrapyd daemon: it serves Scrapyd's JSON API and
// web pages and runs crawls. Serving is the default action; `scrapyd config
// show` and `scrapyd config check` inspect the configuration files, and
// `scrapyd cluster import` moves a single node's store into a cluster's
// database.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/daemon"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "1.0.0~dev"

func main() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) }

// run is main with its outputs and exit status in hand, for tests. Any
// error exits 1, which is what ExecStartPre and ExecReload look at.
func run(args []string, stdout, stderr io.Writer) int {
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintf(c.App.Writer, "Scrapyd %s\n", c.App.Version) }
	app := newApp()
	app.Writer, app.ErrWriter = stdout, stderr
	if err := app.RunContext(context.Background(), args); err != nil {
		fmt.Fprintln(stderr, "scrapyd:", err)
		return 1
	}
	return 0
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "scrapyd",
		Usage:   "run Scrapy spiders on a server: the Scrapyd daemon",
		Version: version,
		Flags:   configFlags(),
		Action: func(c *cli.Context) error {
			return daemon.Run(c.Context, daemon.Options{Config: configOptions(c), Version: version})
		},
		Commands: []*cli.Command{
			{
				Name:        "config",
				Usage:       "inspect the configuration files",
				Subcommands: []*cli.Command{showCommand("show"), checkCommand("check")},
			},
			{
				Name:        "cluster",
				Usage:       "cluster mode on PostgreSQL (the database option)",
				Subcommands: []*cli.Command{importCommand()},
			},
			showCommand("show-config"),
			checkCommand("check-config"),
			wakeCommand(),
		},
	}
}

// configFlags returns fresh flags each time: urfave/cli flags keep their
// values, so commands must not share them.
func configFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "config", Aliases: []string{"c"}, Usage: "read this configuration file after the search order (repeatable)"},
		&cli.StringFlag{Name: "root", Usage: "prefix for /etc/scrapyd, /var/lib/scrapyd and /var/log/scrapyd (e.g. . for a development tree); without it: that layout when /etc/scrapyd/scrapyd.conf exists, else the Scrapyd way (eggs, logs, dbs in the working directory)"},
		&cli.StringFlag{Name: "bind", Usage: "listen on `ADDRESS` (bind_address; wins over every file and SCRAPYD_ variable)"},
		&cli.StringFlag{Name: "port", Usage: "listen on TCP `PORT` (http_port; wins over every file and SCRAPYD_ variable)"},
	}
}

// optionFlags are the flags that set a configuration option.
var optionFlags = []struct{ flag, option string }{{"bind", "bind_address"}, {"port", "http_port"}}

// configOptions reads --root, --config, --bind and --port wherever they were given, before
// the command (scrapyd --root . config check) or after it (scrapyd config
// check --root .), so that a command reads exactly what the daemon reads.
func configOptions(c *cli.Context) config.Options {
	// No --root leaves Root empty: the layout is then decided from the
	// files present (installed, or the Scrapyd way).
	o := config.Options{}
	rootSet := false
	for _, ctx := range c.Lineage() { // the command's own context first
		local := ctx.LocalFlagNames()
		if !rootSet && slices.Contains(local, "root") {
			o.Root, rootSet = ctx.String("root"), true
		}
		if slices.Contains(local, "config") || slices.Contains(local, "c") {
			o.Extra = append(slices.Clone(ctx.StringSlice("config")), o.Extra...)
		}
		for _, f := range optionFlags {
			// The command's own flag wins: it comes first in the lineage.
			if slices.Contains(local, f.flag) && !slices.ContainsFunc(o.Flags, func(g config.Flag) bool { return g.Option == f.option }) {
				o.Flags = append(o.Flags, config.Flag{Name: "--" + f.flag, Option: f.option, Value: ctx.String(f.flag)})
			}
		}
	}
	return o
}

// wakeCommand pokes the daemon's wake socket (scrapyd-wake.socket): each
// crawl unit runs it when it stops (ExecStopPost=), so that a daemon
// asleep (idle_timeout) starts, records the end and starts the next job.
// The connection carries nothing; connecting is the message.
func wakeCommand() *cli.Command {
	return &cli.Command{
		Name:      "wake",
		Usage:     "poke the wake socket: start a sleeping daemon, or tell a running one that a crawl ended",
		ArgsUsage: "SOCKET",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("wake: give the wake socket's path")
			}
			conn, err := net.DialTimeout("unix", c.Args().First(), 5*time.Second)
			if err != nil {
				return fmt.Errorf("wake: %w", err)
			}
			return conn.Close()
		},
	}
}

func showCommand(name string) *cli.Command {
	return &cli.Command{
		Name:  name,
		Usage: "print the effective configuration and the file and line that set each value",
		Flags: configFlags(),
		Action: func(c *cli.Context) error {
			cfg, err := load(c)
			if err != nil {
				return err
			}
			return config.Show(c.App.Writer, cfg)
		},
	}
}

func checkCommand(name string) *cli.Command {
	return &cli.Command{
		Name:  name,
		Usage: "validate the configuration files without touching the daemon, as it does at start and reload (exit status 1 on an error; for ExecStartPre and ExecReload)",
		Flags: configFlags(),
		Action: func(c *cli.Context) error {
			cfg, err := load(c)
			if err != nil {
				return err
			}
			if err := daemon.Validate(cfg); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "configuration OK (%d files read)\n", len(cfg.Files))
			return nil
		},
	}
}

// importCommand moves a single node's store into the cluster's database
// (daemon.ImportToCluster).
func importCommand() *cli.Command {
	return &cli.Command{
		Name:  "import",
		Usage: "move this node's single-node store (queue, running crawls, history, spider cache, schedules) into the database option's PostgreSQL, as node_name's; run it with the daemon stopped, once",
		Flags: configFlags(),
		Action: func(c *cli.Context) error {
			cfg, err := load(c)
			if err != nil {
				return err
			}
			return daemon.ImportToCluster(c.Context, cfg, c.App.Writer)
		},
	}
}

// load reads the configuration as the daemon would and prints its warnings
// (unknown options) to stderr, where they stay apart from show's table.
func load(c *cli.Context) (*config.Config, error) {
	cfg, err := config.Load(configOptions(c))
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(c.App.ErrWriter, "scrapyd: warning:", w)
	}
	return cfg, nil
}
