package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Layout is where the built-in paths point. It is decided once, from
// --root and the files present, before any file is read, so that an option a
// file leaves unset always means the same directory.
type Layout struct {
	// ScrapydWay: Scrapyd's own defaults, relative to the daemon's working
	// directory (eggs, logs, dbs), as when Scrapyd is started in a folder.
	// Otherwise the installed system's: /var/lib/scrapyd, /var/log/scrapyd,
	// below --root DIR when given.
	ScrapydWay bool
	// RootFlag is --root's value when it was given.
	RootFlag string
	// Why says what decided it, in the words `config show` prints.
	Why string
}

// scrapydWay are the path defaults of the Scrapyd way, relative to the
// daemon's working directory. eggs, logs and dbs are Scrapyd 1.6's
// default_scrapyd.conf; items_dir is empty there too, so that a project's
// own FEEDS setting is not overridden (Scrapyd passes FEEDS only when
// items_dir is set) and our code needs no items directory. log_file sits in
// logs_dir as it does installed (/var/log/scrapyd/scrapyd.log), and crawls'
// scrapyd.out and scrapyd.err beside it; runtime_dir (crawl sockets) would
// otherwise be /run/scrapyd, which only root can create. Nothing outside
// the folder is written, so an unprivileged user can start there.
var scrapydWay = map[string]string{
	"eggs_dir":    "eggs",
	"logs_dir":    "logs",
	"dbs_dir":     "dbs",
	"items_dir":   "",
	"log_file":    "logs/scrapyd.log",
	"runtime_dir": "run",
}

// decideLayout: installed when --root was given (rootFlag), or when the
// Debian package's configuration (confDir/scrapyd.conf, or its conf.d) is
// there; otherwise the Scrapyd way, whether cwd/scrapyd.conf exists
// (Scrapyd started in its folder) or not (the binary run bare, as Scrapyd
// runs with no configuration file).
func decideLayout(rootFlag, confDir, cwd string) Layout {
	if rootFlag != "" {
		return Layout{RootFlag: rootFlag, Why: "installed layout below --root " + rootFlag}
	}
	conf := filepath.Join(confDir, "scrapyd.conf")
	for _, p := range []string{conf, filepath.Join(confDir, "conf.d")} {
		// A file we may not even stat is there: reading it will say why.
		if _, err := os.Stat(p); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return Layout{Why: "installed layout: " + p + " exists"}
		}
	}
	if cwd != "" {
		if _, err := os.Stat(filepath.Join(cwd, "scrapyd.conf")); err == nil {
			return Layout{ScrapydWay: true, Why: "the Scrapyd way: ./scrapyd.conf without " + conf}
		}
	}
	return Layout{ScrapydWay: true, Why: "the Scrapyd way: neither " + conf + " nor ./scrapyd.conf"}
}

// layoutDefault is option key's default in layout l, and whether l decides
// it (a path option); cwd is the daemon's working directory.
func layoutDefault(key, root, cwd string, l Layout) (string, bool) {
	if l.ScrapydWay {
		v, ok := scrapydWay[key]
		if ok && v != "" {
			v = filepath.Join(cwd, v)
		}
		return v, ok
	}
	v := options[key].def
	if !hasRoot(v) {
		return v, false
	}
	return filepath.Join(root, trimRoot(v)), true
}

// PathError is the daemon's error when it cannot create or open the path
// of option key: it names the option and says how to fix it, where the
// value came from. err is os.MkdirAll's or os.OpenFile's.
func (c *Config) PathError(key, path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && filepath.Clean(pe.Path) == filepath.Clean(path) {
		err = pe.Err // the path is named once
	}
	return fmt.Errorf("%s %s: %w: %s", key, path, err, c.fix(key))
}

// fix says where to change option key.
func (c *Config) fix(key string) string {
	src, set := c.Sources[key]
	switch {
	case set && src.Line > 0:
		return fmt.Sprintf("change %s at %s", key, src)
	case set && src.File != builtin && !c.isDefault(src):
		return fmt.Sprintf("change %s %s", key, src.File)
	case c.Layout.ScrapydWay:
		return fmt.Sprintf("set %s in ./scrapyd.conf, or start in a folder you can write to (the default is relative to the working directory: %s)", key, c.Layout.Why)
	case c.Layout.RootFlag != "":
		return fmt.Sprintf("set %s in %s, or give --root a folder you can write to (the default is the %s)", key, filepath.Join(c.Root, "etc", "scrapyd", "conf.d", "*.conf"), c.Layout.Why)
	}
	return fmt.Sprintf("set %s in ./scrapyd.conf, or start with --root . (the default is the %s)", key, c.Layout.Why)
}

func (c *Config) isDefault(s Source) bool { return s.File == layoutSource(c.Layout).File }

// builtin is the source of an option's fixed default.
const builtin = "(built-in)"

// layoutSource is the source of a default the layout decided.
func layoutSource(l Layout) Source { return Source{File: "(default, " + l.Why + ")"} }
