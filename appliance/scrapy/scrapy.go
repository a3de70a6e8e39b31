// Package scrapy is the only package that knows Scrapy's command line: how a
// crawl is started (the same way Scrapyd starts it, so spiders see the same
// arguments and settings) and how a project's spiders are listed.
package scrapy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/confine"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/launch"
)

// Project says how to import a project: from an egg, or (Scrapyd's
// [settings] projects) from an installed settings module.
type Project struct {
	Name           string
	Egg            string // path of the egg; "" for a [settings] project
	SettingsModule string // from the egg's [scrapy] settings entry point
	// Python is the interpreter of the version's own environment (its
	// uploaded requirements); "" runs the configured python.
	Python string
}

// Extras are what other parts add to a crawl (the crawl web service's
// extension): more environment, import paths and settings.
type Extras struct {
	Env        []string // KEY=VALUE, replacing the same key (SCRAPY_SETTINGS_MODULE may be wrapped)
	PythonPath []string
	Settings   []job.Pair
	Writable   []string // directories the crawl must write besides its own (a socket's)
}

// Crawl is one crawl to start.
type Crawl struct {
	Python  string   // absolute path of the interpreter
	BaseEnv []string // the environment every crawl starts from
	Dir     string   // working directory
	Project Project
	Spec    job.Spec
	// Version is the version the user asked for ("" for the latest): Scrapyd
	// passes -a _version and SCRAPYD_EGG_VERSION only in that case.
	Version   string
	LogFile   string // "" disables the log file
	ItemsFeed string // a feed URI; "" disables the items feed
	JobDir    string // "" disables JOBDIR
	Stdout    string
	Stderr    string
	Limits    launch.Limits
	Sandbox   launch.Sandbox
	Extras    Extras
}

// Command builds the launch command, with Scrapyd's argument order: user
// settings, then LOG_FILE, FEEDS and JOBDIR (so ours win), then _job,
// _version and the user's spider arguments.
func Command(c Crawl) launch.Command {
	args := []string{"-m", "scrapy", "crawl", c.Spec.Spider}
	for _, s := range c.Spec.Settings {
		args = append(args, "-s", s.Name+"="+s.Value)
	}
	for _, s := range c.Extras.Settings {
		args = append(args, "-s", s.Name+"="+s.Value)
	}
	if c.LogFile != "" {
		args = append(args, "-s", "LOG_FILE="+c.LogFile)
	}
	if c.ItemsFeed != "" {
		// Scrapy expands a feed URI with Python's %-formatting (`uri %
		// uri_params`, scrapy/extensions/feedexport.py), so the percent
		// escapes of a name with a space or `%` (file:///…/my%20shop/…) are
		// doubled to reach the file as named, not a mangled one.
		uri := strings.ReplaceAll(c.ItemsFeed, "%", "%%")
		feeds, _ := json.Marshal(map[string]map[string]string{uri: {"format": "jsonlines"}})
		args = append(args, "-s", "FEEDS="+string(feeds))
	}
	if c.JobDir != "" {
		args = append(args, "-s", "JOBDIR="+c.JobDir)
	}
	args = append(args, "-a", "_job="+c.Spec.ID)
	if c.Version != "" {
		args = append(args, "-a", "_version="+c.Version)
	}
	for _, a := range c.Spec.Args {
		args = append(args, "-a", a.Name+"="+a.Value)
	}
	env := projectEnv(c.BaseEnv, c.Project, c.Extras.PythonPath)
	if c.Version != "" {
		env = append(env, "SCRAPYD_EGG_VERSION="+c.Version)
	}
	env = setEnv(env, c.Extras.Env...)
	sandbox := c.Sandbox
	sandbox.Writable = append(slices.Clip(sandbox.Writable), c.Extras.Writable...)
	python := c.Python
	if c.Project.Python != "" {
		python = c.Project.Python
	}
	return launch.Command{
		Job: c.Spec.ID, Project: c.Spec.Project, Spider: c.Spec.Spider,
		Path: python, Args: args, Env: env, Dir: c.Dir,
		Stdout: c.Stdout, Stderr: c.Stderr, Limits: c.Limits, Sandbox: sandbox,
	}
}

// FileFeed is the items feed URI for a local items file.
func FileFeed(path string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(path)}).String()
}

// projectEnv is the environment that makes Python import the project:
// the egg first on PYTHONPATH, its settings module, and SCRAPY_PROJECT.
func projectEnv(base []string, p Project, extraPath []string) []string {
	env := make([]string, 0, len(base)+5)
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PYTHONPATH", "SCRAPY_SETTINGS_MODULE", "SCRAPY_PROJECT", "SCRAPYD_EGG_VERSION", "PYTHONIOENCODING":
			continue
		}
		env = append(env, kv)
	}
	var path []string
	if p.Egg != "" {
		path = append(path, p.Egg)
	}
	path = append(path, extraPath...)
	if len(path) > 0 {
		env = append(env, "PYTHONPATH="+strings.Join(path, ":"))
	}
	if p.SettingsModule != "" {
		env = append(env, "SCRAPY_SETTINGS_MODULE="+p.SettingsModule)
	}
	return append(env, "SCRAPY_PROJECT="+p.Name, "PYTHONIOENCODING=UTF-8")
}

// setEnv sets each KEY=VALUE in env, replacing an earlier value of KEY.
func setEnv(env []string, kvs ...string) []string {
	for _, kv := range kvs {
		k, _, _ := strings.Cut(kv, "=")
		env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		env = append(env, kv)
	}
	return env
}

// python is the interpreter of the project's environment, or the
// configured one.
func (l Lister) python(p Project) string {
	if p.Python != "" {
		return p.Python
	}
	return l.Python
}

// RunnerError is `scrapy list` failing: the message is what Scrapy printed,
// as Scrapyd reports it.
type RunnerError struct{ Output string }

func (e *RunnerError) Error() string { return "RunnerError: " + e.Output }

// Lister runs `scrapy list`: uploaded code, run when an egg is uploaded
// and when a schedule needs the spider names.
type Lister struct {
	Python  string
	BaseEnv []string
	Dir     string
	// Credential, when set, runs the listing as that user: uploaded code
	// never runs as root.
	Credential *syscall.Credential
	Timeout    time.Duration // 0 means one minute
	// Launcher, when set, runs the listing as a crawl is run (a transient
	// unit, confined by Sandbox and Limits) instead of as a child process.
	// Its output goes through files in OutputDir, which the launcher opens.
	Launcher  launch.Launcher
	OutputDir string
	Sandbox   launch.Sandbox // the project's egg is added to Exposed
	Limits    launch.Limits  // leave MaxRuntime zero: Timeout bounds a listing
}

// List runs `python -m scrapy list -s LOG_STDOUT=0` for a project (Scrapyd
// added LOG_STDOUT=0 because projects logging to stdout listed nothing).
func (l Lister) List(ctx context.Context, p Project) ([]string, error) {
	timeout := l.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := []string{"-m", "scrapy", "list", "-s", "LOG_STDOUT=0"}
	env := projectEnv(l.BaseEnv, p, nil)
	// It sees its own egg and no other, and writes nothing.
	sb := l.Sandbox
	if p.Egg != "" {
		sb.Exposed = append(slices.Clip(sb.Exposed), p.Egg)
	}
	python := l.python(p)
	run := confine.Runner{Credential: l.Credential, Launcher: l.Launcher, OutputDir: l.OutputDir}
	stdout, stderr, err := run.Run(ctx, launch.Command{
		Job: "list", Project: p.Name, Path: python, Args: args, Env: env, Dir: l.Dir, Limits: l.Limits, Sandbox: sb,
	})
	if err != nil {
		out := stderr
		if out == "" {
			out = stdout
		}
		if out == "" || ctx.Err() != nil {
			out = fmt.Sprintf("%s -m scrapy list: %v", python, err)
			if ctx.Err() != nil {
				out += fmt.Sprintf(" (no answer within %s)", timeout)
			}
		}
		return nil, &RunnerError{Output: out}
	}
	var names []string
	for _, line := range strings.Split(stdout, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			names = append(names, line)
		}
	}
	return names, nil
}

// CrawlEnv is the daemon's environment minus what must not reach a crawl:
// systemd's activation and notification variables (a crawl must never
// answer for the daemon) and the SCRAPYD_* configuration, which may carry
// the API password.
func CrawlEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LISTEN_") || strings.HasPrefix(k, "SCRAPYD_") || strings.HasPrefix(k, "WATCHDOG_") ||
			k == "NOTIFY_SOCKET" || k == "INVOCATION_ID" || k == "JOURNAL_STREAM" {
			continue
		}
		out = append(out, kv)
	}
	return out
}
