package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/scrapyd-debian/scrapyd/appliance/client"
	"github.com/urfave/cli/v2"
)

// wsCommand holds the commands of Scrapy's scrapy-ws.py, addressed by job:
// the daemon serves each running crawl's web service at /webservice/<job>/.
func wsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ws",
		Usage: "control a running crawl through its web service (JSON-RPC)",
		Description: "Each command addresses a running job: --job ID, or the job id as the first argument.\n" +
			"Where a command takes SPIDER (a spider reference as list-running prints it), the default\n" +
			"is every spider the crawl has open.",
		Subcommands: []*cli.Command{
			wsSub("stop", "stop a running spider (close_spider)", "[SPIDER]", func(ctx context.Context, w *client.WebService, args []string, s *session) error {
				spiders, err := spidersOf(ctx, w, args)
				if err != nil {
					return err
				}
				for _, sp := range spiders {
					if err := w.CloseSpider(ctx, sp); err != nil {
						return err
					}
					s.human(func(out io.Writer) { fmt.Fprintf(out, "stopping %s\n", sp) })
				}
				return nil
			}),
			wsSub("list-available", "list the spiders the crawl's project has", "", func(ctx context.Context, w *client.WebService, _ []string, s *session) error {
				spiders, err := w.Spiders(ctx)
				s.human(func(out io.Writer) { lines(out, spiders) })
				return err
			}),
			wsSub("list-running", "list the crawl's running spiders", "", func(ctx context.Context, w *client.WebService, _ []string, s *session) error {
				spiders, err := w.OpenSpiders(ctx)
				s.human(func(out io.Writer) { lines(out, spiders) })
				return err
			}),
			wsSub("list-resources", "list the web service's resources", "", func(ctx context.Context, w *client.WebService, _ []string, s *session) error {
				res, err := w.Resources(ctx)
				s.human(func(out io.Writer) { lines(out, res) })
				return err
			}),
			wsSub("get-global-stats", "print the crawl's global stats", "", func(ctx context.Context, w *client.WebService, _ []string, s *session) error {
				stats, err := w.Stats(ctx, "")
				s.human(func(out io.Writer) { printStats(out, stats) })
				return err
			}),
			wsSub("get-spider-stats", "print a running spider's stats", "[SPIDER]", func(ctx context.Context, w *client.WebService, args []string, s *session) error {
				spiders, err := spidersOf(ctx, w, args)
				if err != nil {
					return err
				}
				for _, sp := range spiders {
					stats, err := w.Stats(ctx, sp)
					if err != nil {
						return err
					}
					s.human(func(out io.Writer) {
						if len(spiders) > 1 {
							fmt.Fprintf(out, "%s:\n", sp)
						}
						printStats(out, stats)
					})
				}
				return nil
			}),
			wsSub("engine-status", "print the crawl engine's status", "", func(ctx context.Context, w *client.WebService, _ []string, s *session) error {
				raw, err := w.EngineStatus(ctx)
				s.human(func(out io.Writer) { printEngineStatus(out, raw) })
				return err
			}),
			wsSub("pause", "pause the crawl's engine", "", func(ctx context.Context, w *client.WebService, _ []string, _ *session) error {
				return w.Pause(ctx)
			}),
			wsSub("unpause", "resume a paused engine", "", func(ctx context.Context, w *client.WebService, _ []string, _ *session) error {
				return w.Unpause(ctx)
			}),
		},
	}
}

type wsFunc func(ctx context.Context, w *client.WebService, args []string, s *session) error

// wsSub makes one ws command: it finds the job (--job or the first
// argument), checks the remaining arguments against usage, and runs fn.
func wsSub(name, usage, argsUsage string, fn wsFunc) *cli.Command {
	maxArgs := len(strings.Fields(argsUsage))
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: strings.TrimSpace("[JOB] " + argsUsage),
		Flags:     withServer(&cli.StringFlag{Name: "job", Aliases: []string{"j"}, Usage: "the running job's `ID`"}),
		Action: serverAction(func(cCtx *cli.Context, s *session) error {
			args := cCtx.Args().Slice()
			id := cCtx.String("job")
			if id == "" {
				if len(args) == 0 {
					return usagef("ws %s: which job? (give --job ID or the id as the first argument)", name)
				}
				id, args = args[0], args[1:]
			}
			if len(args) > maxArgs {
				return usagef("ws %s: too many arguments (usage: ws %s %s)", name, name, cCtx.Command.ArgsUsage)
			}
			return fn(cCtx.Context, s.c.WebService(id), args, s)
		}),
	}
}

// spidersOf returns the spider given on the command line, else every spider
// the crawl has open (one, for a Scrapyd crawl).
func spidersOf(ctx context.Context, w *client.WebService, args []string) ([]string, error) {
	if len(args) > 0 {
		return args, nil
	}
	open, err := w.OpenSpiders(ctx)
	if err != nil {
		return nil, err
	}
	if len(open) == 0 {
		return nil, errors.New("the crawl has no open spider")
	}
	return open, nil
}

// printStats prints stats as scrapy-ws.py does ("%-40s %s"), sorted by name.
func printStats(w io.Writer, stats map[string]any) {
	names := make([]string, 0, len(stats))
	for k := range stats {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(w, "%-40s %v\n", k, stats[k])
	}
}

// printEngineStatus prints Scrapy's [expression, value] pairs as a table,
// and any other shape as indented JSON.
func printEngineStatus(w io.Writer, raw json.RawMessage) {
	// Numbers stay json.Number, printed as sent: through float64 an uptime
	// of 12345678.5 seconds would print as 1.23456785e+07.
	var pairs [][2]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&pairs); err == nil {
		rows := make([][]string, 0, len(pairs))
		for _, p := range pairs {
			rows = append(rows, []string{fmt.Sprint(p[0]), fmt.Sprint(p[1])})
		}
		table(w, rows)
		return
	}
	var v any
	if json.Unmarshal(raw, &v) == nil {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(w, string(b))
	}
}
