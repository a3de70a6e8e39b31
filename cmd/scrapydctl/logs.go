package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/client"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/urfave/cli/v2"
)

func logCommand() *cli.Command {
	return fileCommand(jobFile{name: "log", dir: "logs", ext: ".log", url: func(j client.Job) string { return j.LogURL }})
}

func itemsCommand() *cli.Command {
	return fileCommand(jobFile{name: "items", dir: "items", ext: ".jl", url: func(j client.Job) string { return j.ItemsURL }})
}

// jobFile is one of the files Scrapyd publishes per job.
type jobFile struct {
	name, dir, ext string
	url            func(client.Job) string // listjobs' log_url or items_url
}

// path is where Scrapyd publishes the file: used when the job is addressed
// as PROJECT SPIDER JOB, or when listjobs has no URL for a started job
// (Scrapyd before 1.5 gave none for running jobs).
func (f jobFile) path(project, spider, id string) string {
	return "/" + f.dir + "/" + url.PathEscape(project) + "/" + url.PathEscape(spider) + "/" + url.PathEscape(id) + f.ext
}

func fileCommand(f jobFile) *cli.Command {
	return &cli.Command{
		Name:  f.name,
		Usage: "print a job's " + f.name + " file; -f follows a running crawl until it finishes",
		Description: "JOB is looked up in listjobs.json (narrowed by --project). PROJECT SPIDER JOB\n" +
			"(or -p PROJECT SPIDER JOB) addresses the file directly, for jobs the server no longer lists.",
		ArgsUsage: "JOB | [-p] PROJECT SPIDER JOB",
		Flags: append(serverFlags(),
			projectFlag("the job's `PROJECT`"),
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing until the job is finished"},
			&cli.DurationFlag{Name: "interval", Value: time.Second, Usage: "how often to poll with -f"},
		),
		Action: serverAction(func(cCtx *cli.Context, s *session) error {
			var locate locator
			if project := cCtx.String("project"); cCtx.NArg() == 1 {
				locate = f.byListing(s.c, project, cCtx.Args().First())
			} else if project, args, err := projectArgs(cCtx, 2); err == nil {
				locate = f.byPath(s.c, project, args[0], args[1])
			} else {
				return usagef("%s: want JOB or [-p] PROJECT SPIDER JOB", f.name)
			}
			return f.copy(cCtx.Context, s, locate, cCtx.Bool("follow"), cCtx.Duration("interval"))
		}),
	}
}

// locator says where a job is and where its file is ("" when not yet known).
type locator func(ctx context.Context) (state job.State, path string, err error)

func (f jobFile) byListing(c *client.Client, project, id string) locator {
	return func(ctx context.Context) (job.State, string, error) {
		j, err := c.FindJob(ctx, project, id)
		if errors.Is(err, client.ErrJobNotFound) {
			return "", "", fmt.Errorf("%w (the server does not list it; try %s PROJECT SPIDER JOB)", err, f.name)
		}
		if err != nil {
			return "", "", err
		}
		p := f.url(j)
		if p == "" && j.State == job.Running {
			p = f.path(j.Project, j.Spider, j.ID)
		}
		return j.State, p, nil
	}
}

func (f jobFile) byPath(c *client.Client, project, spider, id string) locator {
	p := f.path(project, spider, id)
	return func(ctx context.Context) (job.State, string, error) {
		st, err := c.Status(ctx, id, project)
		return st.State, p, err
	}
}

// copy prints the file, and with follow keeps printing what is appended
// (HTTP Range from the last offset) until the job is finished. The state is
// read before each fetch, so the fetch after "finished" gets the whole rest.
func (f jobFile) copy(ctx context.Context, s *session, locate locator, follow bool, every time.Duration) error {
	var offset int64
	for {
		state, path, err := locate(ctx)
		if err != nil {
			return err
		}
		done := state == job.Finished || state == "" // "": the server does not know the job
		if path == "" && (!follow || done) {
			if state == job.Pending {
				return fmt.Errorf("the job is pending: it has no %s file yet (-f waits for it)", f.name)
			}
			return fmt.Errorf("the job has no %s file", f.name)
		}
		if path != "" {
			data, err := s.c.Fetch(ctx, path, offset)
			var he *client.HTTPError
			switch {
			case errors.As(err, &he) && he.StatusCode == http.StatusNotFound:
				if !follow || done {
					return fmt.Errorf("the job has no %s file", f.name)
				}
			case err != nil:
				return err
			}
			if _, err := s.out.Write(data); err != nil {
				return err
			}
			offset += int64(len(data))
		}
		if !follow || done {
			return nil
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
