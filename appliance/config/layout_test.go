package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// requireNoInstalledConfig skips a test of a start without --root on a
// machine where the package's /etc/scrapyd is there: its layout would then
// be, rightly, the installed one.
func requireNoInstalledConfig(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/etc/scrapyd"); err == nil {
		t.Skip("/etc/scrapyd exists: a start without --root takes the installed layout here")
	}
}

// scrapydWayOptions is a start without --root in dir.
func scrapydWayOptions(dir string) Options {
	return Options{Env: []string{}, Cwd: dir, Home: "-"}
}

// pathOptions are every option naming a file or directory the daemon
// creates or writes.
var pathOptions = []string{"eggs_dir", "dbs_dir", "logs_dir", "items_dir", "jobs_dir", "runtime_dir", "crawl_dir", "envs_dir", "log_file", "unix_socket_path", "webservice_logfile"}

// pathValue is option key's effective path in c.
func pathValue(c *Config, key string) string { return *options[key].ptr(c).(*string) }

// TestScrapydWayDefaults: started without --root in a folder holding a
// minimal scrapyd.conf, every path the daemon writes is Scrapyd's default
// relative to that folder (eggs, logs, dbs; no items_dir), or one of our
// own below it, so that a user who may write nowhere else can start there.
func TestScrapydWayDefaults(t *testing.T) {
	requireNoInstalledConfig(t)
	for name, conf := range map[string]string{
		"minimal scrapyd.conf": "[scrapyd]\nhttp_port = 6899\n",
		"Scrapyd's own default_scrapyd.conf": func() string {
			// scrapy/scrapyd tag 1.6.0 (8256317), scrapyd/default_scrapyd.conf.
			b, err := os.ReadFile("testdata/scrapyd-1.6.0-default_scrapyd.conf")
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}(),
		"no scrapyd.conf": "",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir) // a relative path in a file is from the process's directory
			if conf != "" {
				write(t, filepath.Join(dir, "scrapyd.conf"), conf)
			}
			c, err := Load(scrapydWayOptions(dir))
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"eggs_dir": dir + "/eggs", "logs_dir": dir + "/logs", "dbs_dir": dir + "/dbs", "items_dir": "", "jobs_dir": "",
				"log_file": dir + "/logs/scrapyd.log", "runtime_dir": dir + "/run", "crawl_dir": dir, "envs_dir": dir + "/envs",
				"unix_socket_path": "", "webservice_logfile": "",
			}
			for _, k := range pathOptions {
				if got := pathValue(c, k); got != want[k] {
					t.Errorf("%s = %q, want %q", k, got, want[k])
				}
			}
			if !c.Layout.ScrapydWay {
				t.Errorf("layout %+v, want the Scrapyd way", c.Layout)
			}
			why := "the Scrapyd way: ./scrapyd.conf without /etc/scrapyd/scrapyd.conf"
			if conf == "" {
				why = "the Scrapyd way: neither /etc/scrapyd/scrapyd.conf nor ./scrapyd.conf"
			}
			src := "(default, " + why + ")"
			if conf != "" && strings.Contains(conf, "eggs_dir") {
				// Scrapyd's file sets them itself, to the same values.
				src = filepath.Join(dir, "scrapyd.conf") + ":"
			}
			if got := c.Sources["eggs_dir"].String(); !strings.HasPrefix(got, src) {
				t.Errorf("eggs_dir set by %q, want %q", got, src)
			}
			if got := c.Sources["crawl_dir"].String(); got != "(default, the directory holding eggs_dir)" {
				t.Errorf("crawl_dir set by %q", got)
			}
			if got := c.Sources["runtime_dir"].String(); got != "(default, "+why+")" {
				t.Errorf("runtime_dir set by %q", got)
			}
			var out strings.Builder
			if err := Show(&out, c); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "(default, "+why+")") {
				t.Errorf("config show does not say where the defaults come from:\n%s", out.String())
			}
		})
	}
}

// TestEveryRootDefaultHasAScrapydWay: an option added with a {root}
// default must say where it goes the Scrapyd way, or it would point at
// the literal "{root}".
func TestEveryRootDefaultHasAScrapydWay(t *testing.T) {
	for k, o := range options {
		if _, ok := scrapydWay[k]; hasRoot(o.def) && !ok {
			t.Errorf("%s defaults to %s installed, and has no Scrapyd way default (layout.go)", k, o.def)
		}
	}
}

// TestScrapydWayFileWins: paths the file sets are its own, relative to the
// folder; the others keep the Scrapyd way's defaults.
func TestScrapydWayFileWins(t *testing.T) {
	requireNoInstalledConfig(t)
	dir := t.TempDir()
	t.Chdir(dir)
	write(t, filepath.Join(dir, "scrapyd.conf"), "[scrapyd]\nitems_dir = items\nlogs_dir = /var/tmp/x\n")
	c, err := Load(scrapydWayOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	if c.ItemsDir != dir+"/items" || c.LogsDir != "/var/tmp/x" || c.EggsDir != dir+"/eggs" || c.LogFile != dir+"/logs/scrapyd.log" {
		t.Errorf("items %q logs %q eggs %q log_file %q", c.ItemsDir, c.LogsDir, c.EggsDir, c.LogFile)
	}
}

// TestDecideLayout: --root, or the package's configuration, means the
// installed layout; otherwise the Scrapyd way.
func TestDecideLayout(t *testing.T) {
	dir := t.TempDir()
	etc, cwd := filepath.Join(dir, "etc/scrapyd"), filepath.Join(dir, "cwd")
	write(t, filepath.Join(cwd, "scrapyd.conf"), "[scrapyd]\n")
	check := func(rootFlag string, scrapydWay bool, why string) {
		t.Helper()
		if got := decideLayout(rootFlag, etc, cwd); got != (Layout{ScrapydWay: scrapydWay, Why: why}) {
			t.Errorf("decideLayout(%q) = %+v, want %v %q", rootFlag, got, scrapydWay, why)
		}
	}
	check("", true, "the Scrapyd way: ./scrapyd.conf without "+etc+"/scrapyd.conf")
	if got := decideLayout(".", etc, cwd); got != (Layout{RootFlag: ".", Why: "installed layout below --root ."}) {
		t.Errorf("decideLayout(.) = %+v", got)
	}
	write(t, filepath.Join(etc, "conf.d/000-default"), "")
	check("", false, "installed layout: "+etc+"/conf.d exists")
	write(t, filepath.Join(etc, "scrapyd.conf"), "")
	check("", false, "installed layout: "+etc+"/scrapyd.conf exists")
	os.Remove(filepath.Join(cwd, "scrapyd.conf"))
	if got := decideLayout("/", etc, cwd); got.ScrapydWay || got.RootFlag != "/" {
		t.Errorf("decideLayout(/) = %+v", got)
	}
}

// TestInstalledLayoutSources: with --root, the paths are the installed
// layout's below it, and `config show` says so.
func TestInstalledLayoutSources(t *testing.T) {
	root := t.TempDir()
	c, err := Load(opts(root))
	if err != nil {
		t.Fatal(err)
	}
	want := "(default, installed layout below --root " + root + ")"
	for _, k := range []string{"eggs_dir", "dbs_dir", "items_dir", "logs_dir", "log_file"} {
		if got := c.Sources[k].String(); got != want {
			t.Errorf("%s set by %q, want %q", k, got, want)
		}
	}
	if c.RuntimeDir != "" || c.Sources["runtime_dir"].File != builtin {
		t.Errorf("runtime_dir %q (%v): installed, the daemon takes systemd's or <root>/var/run/scrapyd", c.RuntimeDir, c.Sources["runtime_dir"])
	}
}

// TestLayoutKept: a layout given in Options is kept whatever the files
// present say (a reload keeps the start's), and loading again with it
// gives the same snapshot.
func TestLayoutKept(t *testing.T) {
	requireNoInstalledConfig(t)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "scrapyd.conf"), "[scrapyd]\nhttp_port = 6899\n")
	o := scrapydWayOptions(dir)
	first, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	kept := first.Layout
	o.Layout = &kept
	again, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first, again) {
		t.Errorf("reloaded with the kept layout:\n%+v\nwant\n%+v", again, first)
	}
	installed := Layout{Why: "installed layout: /etc/scrapyd/scrapyd.conf exists"}
	o.Layout = &installed
	c, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	if c.EggsDir != "/var/lib/scrapyd/eggs" || c.LogsDir != "/var/log/scrapyd" {
		t.Errorf("a kept installed layout gives eggs %q logs %q", c.EggsDir, c.LogsDir)
	}
	// The installed layout's error, for a user starting the binary by hand
	// where the package is installed.
	want := "logs_dir /var/log/scrapyd: permission denied: set logs_dir in ./scrapyd.conf, or start with --root . (the default is the installed layout: /etc/scrapyd/scrapyd.conf exists)"
	if got := c.PathError("logs_dir", "/var/log/scrapyd", &fs.PathError{Op: "mkdir", Path: "/var/log/scrapyd", Err: syscall.EACCES}).Error(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestPathError: a path the daemon cannot create names its option and the
// fix: where to set it when it is a default, where it was set otherwise.
func TestPathError(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "etc/scrapyd/conf.d/10-x.conf"), "[scrapyd]\n\nitems_dir = /nope/items\n")
	c, err := Load(opts(root))
	if err != nil {
		t.Fatal(err)
	}
	logs := filepath.Join(root, "var/log/scrapyd")
	denied := &fs.PathError{Op: "mkdir", Path: logs, Err: syscall.EACCES}
	for _, tc := range []struct {
		key, path string
		err       error
		want      string
	}{
		{"logs_dir", logs, denied, "logs_dir " + logs + ": permission denied: set logs_dir in " + root + "/etc/scrapyd/conf.d/*.conf, or give --root a folder you can write to (the default is the installed layout below --root " + root + ")"},
		{"log_file", logs + "/scrapyd.log", denied, "log_file " + logs + "/scrapyd.log: mkdir " + logs + ": permission denied: set log_file in " + root + "/etc/scrapyd/conf.d/*.conf"},
		{"items_dir", "/nope/items", &fs.PathError{Op: "mkdir", Path: "/nope", Err: syscall.EROFS}, "items_dir /nope/items: mkdir /nope: read-only file system: change items_dir at " + root + "/etc/scrapyd/conf.d/10-x.conf:3"},
	} {
		if got := c.PathError(tc.key, tc.path, tc.err).Error(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
	requireNoInstalledConfig(t)
	dir := t.TempDir()
	c, err = Load(scrapydWayOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	want := "eggs_dir " + dir + "/eggs: permission denied: set eggs_dir in ./scrapyd.conf, or start in a folder you can write to"
	if got := c.PathError("eggs_dir", dir+"/eggs", &fs.PathError{Op: "mkdir", Path: dir + "/eggs", Err: syscall.EACCES}).Error(); !strings.HasPrefix(got, want) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
