// Package scrapycfg reads a Scrapy project's scrapy.cfg the way Scrapy and
// scrapyd-deploy do (merged system, user and project files; deploy targets
// that inherit from [deploy]; $VAR expansion) and the credentials in ~/.netrc.
package scrapycfg

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// FileName is the name Scrapy looks for, upwards from the working directory.
const FileName = "scrapy.cfg"

// ErrNoProject says no scrapy.cfg was found from a directory upwards.
var ErrNoProject = errors.New("no Scrapy project found (no scrapy.cfg in this directory or above)")

// ErrUnknownTarget is wrapped when a named deploy target is not configured.
var ErrUnknownTarget = errors.New("unknown target")

// Find returns the path of the closest scrapy.cfg from dir upwards, as
// Scrapy's closest_scrapy_cfg does.
func Find(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find %s: %w", FileName, err)
	}
	for {
		p := filepath.Join(dir, FileName)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNoProject
		}
		dir = parent
	}
}

// Sources lists the files Scrapy merges, lowest priority first: the system
// file, the user's files, then the project's own (closest may be empty).
func Sources(closest string) []string {
	srcs := []string{"/etc/scrapy.cfg"}
	xdg := os.Getenv("XDG_CONFIG_HOME")
	home, _ := os.UserHomeDir()
	if xdg == "" && home != "" {
		xdg = filepath.Join(home, ".config")
	}
	if xdg != "" {
		srcs = append(srcs, filepath.Join(xdg, FileName))
	}
	if home != "" {
		srcs = append(srcs, filepath.Join(home, ".scrapy.cfg"))
	}
	if closest != "" {
		srcs = append(srcs, closest)
	}
	return srcs
}

// Config is the merged content of one or more scrapy.cfg files. Keys are
// lower-cased as Python's ConfigParser does; values are returned interpolated
// (%(name)s) and with environment variables expanded, as scrapyd-client does.
type Config struct {
	sections map[string]map[string]string
	order    []string // section names in first-seen order, for stable target listings
}

// Load reads and merges the files in order; later files override earlier
// ones key by key. Missing files are skipped, as ConfigParser.read does.
func Load(paths ...string) (*Config, error) {
	c := &Config{sections: map[string]map[string]string{}}
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		err = c.parse(f, p)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Parse reads one file's content; name is used in error messages.
func Parse(r io.Reader, name string) (*Config, error) {
	c := &Config{sections: map[string]map[string]string{}}
	if err := c.parse(r, name); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) parse(r io.Reader, name string) error {
	sc := bufio.NewScanner(r)
	var (
		section string
		lastKey string // for continuation lines
		lineNo  int
	)
	for sc.Scan() {
		lineNo++
		raw := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || trimmed[0] == '#' || trimmed[0] == ';' {
			lastKey = ""
			continue
		}
		// An indented line continues the previous value (ConfigParser's
		// multi-line values).
		if raw[0] == ' ' || raw[0] == '\t' {
			if lastKey != "" {
				c.sections[section][lastKey] += "\n" + trimmed
				continue
			}
		}
		if trimmed[0] == '[' {
			end := strings.IndexByte(trimmed, ']')
			if end < 2 {
				return fmt.Errorf("%s:%d: bad section header %q", name, lineNo, trimmed)
			}
			section = trimmed[1:end]
			if _, ok := c.sections[section]; !ok {
				c.sections[section] = map[string]string{}
				c.order = append(c.order, section)
			}
			lastKey = ""
			continue
		}
		if section == "" {
			return fmt.Errorf("%s:%d: %q is outside any [section]", name, lineNo, trimmed)
		}
		i := strings.IndexAny(trimmed, "=:")
		if i <= 0 {
			return fmt.Errorf("%s:%d: expected key = value, got %q", name, lineNo, trimmed)
		}
		key := strings.ToLower(strings.TrimSpace(trimmed[:i]))
		c.sections[section][key] = strings.TrimSpace(trimmed[i+1:])
		lastKey = key
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}

// items returns a section's raw keys with [DEFAULT] underneath, as
// ConfigParser.items does.
func (c *Config) items(section string) map[string]string {
	out := map[string]string{}
	for k, v := range c.sections["DEFAULT"] {
		out[k] = v
	}
	for k, v := range c.sections[section] {
		out[k] = v
	}
	return out
}

// HasSection reports whether any file had the section.
func (c *Config) HasSection(section string) bool {
	_, ok := c.sections[section]
	return ok
}

// Get returns a value, interpolated and expanded.
func (c *Config) Get(section, key string) (string, bool) {
	if !c.HasSection(section) && section != "DEFAULT" {
		return "", false
	}
	vars := c.items(section)
	v, ok := vars[strings.ToLower(key)]
	if !ok {
		return "", false
	}
	return resolve(v, vars), true
}

// Settings returns the project's settings module ([settings] default), the
// module scrapyd-deploy writes into the egg's entry point.
func (c *Config) Settings() (string, error) {
	v, ok := c.Get("settings", "default")
	if !ok || v == "" {
		return "", errors.New("scrapy.cfg has no [settings] default = <module>")
	}
	return v, nil
}

// Target is one deploy target: a [deploy] or [deploy:NAME] section.
type Target struct {
	Name     string
	URL      string
	Project  string
	Version  string
	Username string
	Password string
}

// Targets lists the deploy targets as scrapyd-deploy does: [deploy] is the
// target "default" when it has a url, and every [deploy:NAME] inherits the
// keys of [deploy] it does not set itself.
func (c *Config) Targets() []Target {
	var out []Target
	base := map[string]string{}
	if c.HasSection("deploy") {
		base = c.items("deploy")
		if _, ok := base["url"]; ok {
			out = append(out, targetFrom("default", base))
		}
	}
	for _, s := range c.order {
		name, ok := strings.CutPrefix(s, "deploy:")
		if !ok {
			continue
		}
		vars := map[string]string{}
		for k, v := range base {
			vars[k] = v
		}
		for k, v := range c.items(s) {
			vars[k] = v
		}
		out = append(out, targetFrom(name, vars))
	}
	return out
}

// Target returns the named deploy target.
func (c *Config) Target(name string) (Target, error) {
	for _, t := range c.Targets() {
		if t.Name == name {
			return t, nil
		}
	}
	return Target{}, fmt.Errorf("%w: %s", ErrUnknownTarget, name)
}

func targetFrom(name string, vars map[string]string) Target {
	get := func(k string) string { return resolve(vars[k], vars) }
	return Target{
		Name:     name,
		URL:      get("url"),
		Project:  get("project"),
		Version:  get("version"),
		Username: get("username"),
		Password: get("password"),
	}
}

var interpolation = regexp.MustCompile(`%\(([^)]+)\)s|%%`)

// resolve applies ConfigParser's basic %(name)s interpolation, then
// expands $VAR and ${VAR} like os.path.expandvars (scrapyd-client 1.2.3+).
func resolve(v string, vars map[string]string) string {
	// Bounded like ConfigParser's MAX_INTERPOLATION_DEPTH, so that a
	// self-reference cannot loop.
	for range 10 {
		if !strings.Contains(v, "%") {
			break
		}
		next := interpolation.ReplaceAllStringFunc(v, func(m string) string {
			if m == "%%" {
				return "\x00"
			}
			ref := strings.ToLower(m[2 : len(m)-2])
			if r, ok := vars[ref]; ok {
				return r
			}
			return m
		})
		if next == v {
			break
		}
		v = next
	}
	return ExpandEnv(strings.ReplaceAll(v, "\x00", "%"))
}

var envVar = regexp.MustCompile(`\$(\w+|\{[^}]*\})`)

// ExpandEnv replaces $VAR and ${VAR} with the environment's value and,
// unlike os.ExpandEnv, leaves unset variables as written, as Python's
// os.path.expandvars does.
func ExpandEnv(s string) string {
	return envVar.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.TrimSuffix(strings.TrimPrefix(m[1:], "{"), "}")
		if v, ok := os.LookupEnv(name); ok {
			return v
		}
		return m
	})
}
