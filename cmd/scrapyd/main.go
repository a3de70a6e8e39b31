// Command scrapyd is the Scrapyd daemon: it serves Scrapyd's JSON API and
// web pages and runs crawls. Serving is the default action.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/daemon"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "1.0.0~dev"

func main() {
	app := &cli.App{
		Name:    "scrapyd",
		Usage:   "run Scrapy spiders on a server: the Scrapyd daemon",
		Version: version,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "config", Aliases: []string{"c"}, Usage: "read this configuration file after the search order (repeatable)"},
			&cli.StringFlag{Name: "root", Usage: "prefix for /etc/scrapyd, /var/lib/scrapyd and /var/log/scrapyd (e.g. . for a development tree)", Value: "/"},
		},
		Action: func(c *cli.Context) error {
			return daemon.Run(c.Context, daemon.Options{Config: configOptions(c), Version: version})
		},
	}
	cli.VersionPrinter = func(c *cli.Context) { fmt.Printf("Scrapyd %s\n", c.App.Version) }
	if err := app.RunContext(context.Background(), os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "scrapyd:", err)
		os.Exit(1)
	}
}

func configOptions(c *cli.Context) config.Options {
	return config.Options{Root: c.String("root"), Extra: c.StringSlice("config")}
}
