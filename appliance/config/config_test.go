package config

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func opts(root string) Options {
	return Options{Root: root, Env: []string{}, Cwd: filepath.Join(root, "cwd"), Home: filepath.Join(root, "home")}
}

func TestDefaultsFollowTheRootPrefix(t *testing.T) {
	root := t.TempDir()
	c, err := Load(opts(root))
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		c.EggsDir:  root + "/var/lib/scrapyd/eggs",
		c.DbsDir:   root + "/var/lib/scrapyd/dbs",
		c.EnvsDir:  root + "/var/lib/scrapyd/envs",
		c.ItemsDir: root + "/var/lib/scrapyd/items",
		c.LogsDir:  root + "/var/log/scrapyd",
		c.LogFile:  root + "/var/log/scrapyd/scrapyd.log",
		c.Python:   "/usr/bin/python3",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if c.EnvInstallTimeout != 10*time.Minute || c.PipIndexURL != "" || len(c.PipOptions) != 0 {
		t.Errorf("environment defaults: timeout %s, index %q, options %q", c.EnvInstallTimeout, c.PipIndexURL, c.PipOptions)
	}
	if c.BindAddress != "127.0.0.1" || c.HTTPPort != 6800 || c.PollInterval != 5*time.Second || c.MaxProcPerCPU != 4 ||
		c.JobsToKeep != 5 || c.FinishedToKeep != 100 || c.PrefixHeader != "x-forwarded-prefix" || c.AuthEnabled() {
		t.Errorf("Scrapyd's defaults not kept: %+v", c)
	}
	if s := c.Sources["http_port"]; s.File != "(built-in)" {
		t.Errorf("source of http_port = %v", s)
	}
}

// TestRelativePathsAreMadeAbsolute: a relative root (--root .) or path is
// relative to the daemon's working directory, and resolved once at load:
// crawls run in another directory, and their units take absolute paths only.
func TestRelativePathsAreMadeAbsolute(t *testing.T) {
	root := t.TempDir()
	t.Chdir(root)
	write(t, filepath.Join(root, "etc/scrapyd/scrapyd.conf"), "[scrapyd]\nlogs_dir = logs\nitems_dir = s3://bucket/items\n")
	c, err := Load(Options{Root: ".", Env: []string{}, Cwd: root, Home: "-"})
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		c.Root: root, c.EggsDir: root + "/var/lib/scrapyd/eggs", c.LogsDir: root + "/logs",
		c.ItemsDir: "s3://bucket/items", // a URL is kept as given
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestSearchOrderLaterFilesWin(t *testing.T) {
	root := t.TempDir()
	o := opts(root)
	write(t, filepath.Join(root, "etc/scrapyd/scrapyd.conf"), "[scrapyd]\nmax_proc = 1\nhttp_port = 7001\nnode_name = etc\n")
	write(t, filepath.Join(root, "etc/scrapyd/conf.d/10-a"), "[scrapyd]\nmax_proc = 2\n")
	write(t, filepath.Join(root, "etc/scrapyd/conf.d/20-b"), "[scrapyd]\nmax_proc = 3\n")
	write(t, filepath.Join(root, "etc/scrapyd/conf.d/30-c.conf~"), "[scrapyd]\nmax_proc = 99\n") // an editor backup
	write(t, filepath.Join(o.Cwd, "scrapyd.conf"), "[scrapyd]\nhttp_port = 7002\n")
	write(t, filepath.Join(o.Home, ".scrapyd.conf"), "[scrapyd]\nhttp_port = 7003\n[settings]\nlegacy = legacy.settings\n")
	extra := filepath.Join(root, "extra.conf")
	write(t, extra, "[scrapyd]\nusername = u\npassword = p\n")
	o.Extra = []string{extra}
	o.Env = []string{"SCRAPYD_HTTP_PORT=7004", "SCRAPYD_EGG_VERSION=ignored", "OTHER=x"}
	c, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxProc != 3 || c.HTTPPort != 7004 || c.NodeName != "etc" || !c.AuthEnabled() || c.Settings["legacy"] != "legacy.settings" {
		t.Fatalf("wrong precedence: max_proc=%d http_port=%d node=%q auth=%v settings=%v", c.MaxProc, c.HTTPPort, c.NodeName, c.AuthEnabled(), c.Settings)
	}
	if got := c.Sources["max_proc"].String(); got != filepath.Join(root, "etc/scrapyd/conf.d/20-b")+":2" {
		t.Errorf("max_proc source = %s", got)
	}
	if got := c.Sources["http_port"].String(); got != "(environment SCRAPYD_HTTP_PORT)" {
		t.Errorf("http_port source = %s", got)
	}
	if len(c.Files) != 6 {
		t.Errorf("files read = %q", c.Files)
	}
}

func TestSlots(t *testing.T) {
	c := &Config{MaxProc: 0, MaxProcPerCPU: 4}
	if c.Slots() < 4 {
		t.Fatalf("slots = %d", c.Slots())
	}
	c.MaxProc = 7
	if c.Slots() != 7 {
		t.Fatalf("slots = %d", c.Slots())
	}
}

// TestBadConfigs pairs each file in testdata/*.bad.conf with the error it
// must give (the first line of the file, after "# error: ").
func TestBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.bad.conf")
	if len(files) == 0 {
		t.Fatal("no testdata/*.bad.conf")
	}
	for _, f := range files {
		data, _ := os.ReadFile(f)
		first, _, _ := strings.Cut(string(data), "\n")
		want := strings.TrimPrefix(first, "# error: ")
		root := t.TempDir()
		path := filepath.Join(root, "etc/scrapyd/scrapyd.conf")
		write(t, path, string(data))
		_, err := Load(opts(root))
		if err == nil {
			t.Errorf("%s: loaded without error", f)
			continue
		}
		if got := strings.ReplaceAll(err.Error(), path, "FILE"); got != want {
			t.Errorf("%s:\n got  %s\n want %s", f, got, want)
		}
	}
}

func FuzzParseINI(f *testing.F) {
	f.Add("[scrapyd]\nmax_proc = 4\n  continued\n; c\n")
	f.Add("[scrapyd\nx")
	f.Fuzz(func(t *testing.T, s string) {
		es, err := parseINI("f", []byte(s))
		if err != nil {
			return
		}
		for _, e := range es {
			if e.section == "" || e.source.Line < 1 {
				t.Fatalf("entry without section or line: %+v", e)
			}
		}
	})
}

// TestCrawlDirExistsInEveryLayout: crawls and listings run in crawl_dir,
// by default the directory holding eggs_dir, which the daemon creates at
// start (issue 13: with a fixed <root>/var/lib/scrapyd, the Scrapyd way of
// starting failed every upload with "fork/exec /usr/bin/python3: no such
// file or directory").
func TestCrawlDirExistsInEveryLayout(t *testing.T) {
	root := t.TempDir()
	o := opts(root)
	if c := load(t, o); c.CrawlDir != root+"/var/lib/scrapyd" {
		t.Errorf("--root layout: crawl_dir = %q", c.CrawlDir)
	}
	// The Scrapyd way: a scrapyd.conf with Scrapyd's own relative eggs_dir
	// in the daemon's working directory.
	write(t, filepath.Join(o.Cwd, "scrapyd.conf"), "[scrapyd]\neggs_dir = eggs\n")
	t.Chdir(o.Cwd)
	if c := load(t, o); c.CrawlDir != o.Cwd || Show(io.Discard, c) != nil || c.EnvsDir != o.Cwd+"/envs" {
		t.Errorf("Scrapyd way: crawl_dir = %q, envs_dir = %q, want the working directory %q and envs/ in it", c.CrawlDir, c.EnvsDir, o.Cwd)
	}
	write(t, filepath.Join(o.Cwd, "scrapyd.conf"), "[scrapyd]\neggs_dir = eggs\ncrawl_dir = work\n")
	if c := load(t, o); c.CrawlDir != o.Cwd+"/work" {
		t.Errorf("crawl_dir set: %q", c.CrawlDir)
	}
}

// TestLiveCrawlDirFollowsTheRunningEggsDir: eggs_dir waits for a restart,
// so the crawl_dir derived from it does too.
func TestLiveCrawlDirFollowsTheRunningEggsDir(t *testing.T) {
	root := t.TempDir()
	o := opts(root)
	running := load(t, o)
	write(t, filepath.Join(root, "etc/scrapyd/conf.d/10.conf"), "[scrapyd]\neggs_dir = /srv/x/eggs\n")
	next, pending, err := Live(running, load(t, o))
	if err != nil || !slices.Equal(pending, []string{"eggs_dir"}) {
		t.Fatal(err, pending)
	}
	if next.CrawlDir != running.CrawlDir || len(Changed(running, next)) != 0 {
		t.Errorf("crawl_dir = %q, want the running %q", next.CrawlDir, running.CrawlDir)
	}
}

func TestRetentionOptions(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "etc/scrapyd/scrapyd.conf"), "[scrapyd]\nlogs_max_age = 30d\nlogs_max_bytes = 2G\nlogs_max_bytes_per_spider = 512M\ncompress_finished = on\n")
	c, err := Load(opts(root))
	if err != nil {
		t.Fatal(err)
	}
	if c.LogsMaxAge != 720*time.Hour || c.LogsMaxBytes != 2<<30 || c.LogsMaxBytesPerSpider != 512<<20 || !c.CompressFinished {
		t.Errorf("retention options: %v %d %d %v", c.LogsMaxAge, c.LogsMaxBytes, c.LogsMaxBytesPerSpider, c.CompressFinished)
	}
	for v, want := range map[string]time.Duration{"36h": 36 * time.Hour, "86400": 24 * time.Hour, "0": 0} {
		write(t, filepath.Join(root, "etc/scrapyd/scrapyd.conf"), "[scrapyd]\nlogs_max_age = "+v+"\n")
		if c, err := Load(opts(root)); err != nil || c.LogsMaxAge != want {
			t.Errorf("logs_max_age = %s: %v, %v", v, c, err)
		}
	}
}

// TestIdleTimeout: idle_timeout is auto (the default, decided by the
// daemon), 0 for never, or seconds or a duration.
func TestIdleTimeout(t *testing.T) {
	root := t.TempDir()
	if c, err := Load(opts(root)); err != nil || c.IdleTimeout != IdleAuto {
		t.Errorf("default idle_timeout: %v, %v; want auto", c, err)
	}
	for v, want := range map[string]time.Duration{"auto": IdleAuto, "AUTO": IdleAuto, "3s": 3 * time.Second, "300": 5 * time.Minute, "0": 0} {
		write(t, filepath.Join(root, "etc/scrapyd/scrapyd.conf"), "[scrapyd]\nidle_timeout = "+v+"\n")
		if c, err := Load(opts(root)); err != nil || c.IdleTimeout != want {
			t.Errorf("idle_timeout = %s: %v, %v; want %v", v, c, err, want)
		}
	}
}

// TestProjectCaps: [project:NAME] sections give slot caps, and a change of
// them is live (Changed names it, RestartOnly does not hold it back).
func TestProjectCaps(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "etc/scrapyd/scrapyd.conf")
	write(t, path, "[scrapyd]\nmax_proc = 4\n[project:shop]\nmax_proc = 2\nspider_max_proc = 1\n[project:news]\nspider_max_proc = 1\n")
	a, err := Load(opts(root))
	if err != nil {
		t.Fatal(err)
	}
	if a.Caps["shop"] != (ProjectCaps{MaxProc: 2, SpiderMaxProc: 1}) || a.Caps["news"] != (ProjectCaps{SpiderMaxProc: 1}) || len(a.Caps) != 2 {
		t.Fatalf("caps %+v", a.Caps)
	}
	write(t, path, "[scrapyd]\nmax_proc = 4\n[project:shop]\nmax_proc = 3\n")
	b, err := Load(opts(root))
	if err != nil {
		t.Fatal(err)
	}
	next, pending, err := Live(a, b)
	if err != nil || len(pending) != 0 || next.Caps["shop"].MaxProc != 3 {
		t.Fatalf("live: %+v %v %v", next.Caps, pending, err)
	}
	if got := Changed(a, b); !strings.Contains(strings.Join(got, " "), "[project:*]") {
		t.Fatalf("Changed = %v, want [project:*] in it", got)
	}
}
