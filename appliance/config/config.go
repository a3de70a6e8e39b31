// Package config reads Scrapyd's configuration (built-in defaults, then
// /etc/scrapyd/scrapyd.conf, /etc/scrapyd/conf.d/* in name order, ./scrapyd.conf,
// ~/.scrapyd.conf, extra files, then SCRAPYD_* environment variables) into an
// immutable, validated Config snapshot. Readers keep one snapshot per
// operation; a reload builds a new one and swaps it in whole.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// IdleAuto is idle_timeout = auto: DefaultIdle when the daemon is
// socket-activated and crawls run as systemd units, never otherwise.
const IdleAuto time.Duration = -1

// DefaultIdle is idle_timeout = auto's value where it applies: longer than
// the polling period of dashboards and of a person between two commands,
// so a session in use does not pay a cold start on each request, and short
// against the hours an appliance mostly waits.
const DefaultIdle = 5 * time.Minute

// Config is one validated snapshot. Never modify a Config after Load returns it.
type Config struct {
	Root string // the prefix every built-in path is under ("/" when installed)
	// Layout says which built-in paths apply: the installed system's or
	// Scrapyd's own, relative to the daemon's working directory.
	Layout Layout

	BindAddress    string
	HTTPPort       int
	UnixSocketPath string
	Username       string
	Password       string
	TLSCert        string
	TLSKey         string

	PollInterval time.Duration
	StartTimeout time.Duration // a crawl start not done by then is abandoned and recorded failed
	// IdleTimeout: a socket-activated daemon exits after this long with
	// nothing to do (issue 19); 0 never, IdleAuto decided at start.
	IdleTimeout   time.Duration
	MaxProc       int
	MaxProcPerCPU int

	EggsDir    string
	DbsDir     string
	LogsDir    string
	ItemsDir   string
	JobsDir    string
	RuntimeDir string
	// CrawlDir is the working directory of crawls and `scrapy list`;
	// empty in the files means the directory that holds eggs_dir (see
	// derive).
	CrawlDir string
	// EnvsDir holds the Python environments uploads ask for (pyenv);
	// empty in the files means envs/ beside eggs_dir (see derive).
	EnvsDir        string
	LogFile        string
	JobsToKeep     int
	FinishedToKeep int
	// Retention beyond jobs_to_keep (issue 17 point 5), 0 for none: a
	// finished crawl's log and items files older than LogsMaxAge go, then
	// the oldest while a spider's (all spiders') files in logs_dir (and
	// in items_dir) exceed LogsMaxBytesPerSpider (LogsMaxBytes).
	LogsMaxAge            time.Duration
	LogsMaxBytes          int64
	LogsMaxBytesPerSpider int64
	// CompressFinished gzips a crawl's log and items once it has ended.
	// Off by default: programs that read items_dir/P/S/ID.jl (or a local
	// LogParser reading *.log) from disk would lose the files.
	CompressFinished bool

	PrefixHeader string
	Debug        bool
	NodeName     string
	// Database is the job store: "" the embedded SQLite in dbs_dir, or a
	// postgresql:// URL (cluster mode, issue 15) without a password, which
	// comes from DatabasePasswordFile or ~/.pgpass.
	Database             string
	DatabasePasswordFile string
	// Cluster mode only: how long a node's lease runs unrenewed before any
	// node may reap it; what reaping does to its running jobs (mark:
	// outcome lost; requeue: pending again); how other nodes reach this
	// one ("" derives it from bind_address and http_port).
	NodeLease    time.Duration
	LostJobs     string
	AdvertiseURL string

	// LogShipLimit is how much of each crawl's log its node ships to the
	// database in cluster mode, for other nodes to serve; the rest stays
	// on the node (a last line says so). 0 ships none.
	LogShipLimit int64

	Python      string
	Launcher    string // auto, exec or systemd
	CrawlUser   string
	UploadLimit int64
	// MetricsPublic opens /metrics to scrapers without credentials when
	// auth is on (issue 17); the health probes are always open.
	MetricsPublic bool

	// How an upload's requirements are installed: from pip_index_url with
	// pip_options, or offline (wheels only) without an index.
	PipIndexURL       string
	PipOptions        []string
	EnvInstallTimeout time.Duration

	CrawlMemoryMax  int64
	CrawlCPUQuota   int
	CrawlTasksMax   int
	CrawlMaxRuntime time.Duration
	// CrawlWritablePaths are directories crawls may write besides their
	// own, where the launcher confines them (systemd).
	CrawlWritablePaths []string

	WebserviceEnabled   bool
	WebserviceResources []string
	WebserviceLogFile   string

	// Settings is the [settings] section: projects that run from an installed
	// settings module instead of an egg (Scrapyd's scrapy.cfg-style projects).
	Settings map[string]string
	// Webhooks are the [webhook:NAME] sections, by name.
	Webhooks []Webhook
	// Caps are the [project:NAME] sections' slot caps (issue 16), applied
	// live.
	Caps map[string]ProjectCaps

	// Sources says which file (and line) set each [scrapyd] option (and each
	// [settings] entry, as "[settings] name"), and Raw what it said there
	// (for `scrapyd config show`).
	Sources map[string]Source
	Raw     map[string]string
	// Files lists the configuration files that were read, in order.
	Files []string
	// Warnings are non-fatal remarks (options we ignore), for the log.
	Warnings []string
}

// ProjectCaps are one project's slot caps; 0 means none.
type ProjectCaps struct {
	MaxProc       int // the project's running crawls at most
	SpiderMaxProc int // each of its spiders' running crawls at most
}

// Slots is how many crawls may run at once: max_proc, or CPUs x
// max_proc_per_cpu when max_proc is 0 (Scrapyd's rule).
func (c *Config) Slots() int {
	if c.MaxProc > 0 {
		return c.MaxProc
	}
	return runtime.NumCPU() * c.MaxProcPerCPU
}

// AuthEnabled reports whether HTTP Basic auth is on: only when both username
// and password are set, as in Scrapyd.
func (c *Config) AuthEnabled() bool { return c.Username != "" && c.Password != "" }

// Options says where to look. The zero value reads the installed system's
// files plus the working directory's and the home directory's.
type Options struct {
	// Root is the prefix for built-in paths and /etc/scrapyd; "" means "/"
	// and that no --root was given, so the layout is decided from the
	// files present (see decideLayout).
	Root string
	// Layout, when set, is kept instead of deciding again: a daemon keeps
	// the one it started with at every reload, so that creating or
	// removing /etc/scrapyd/scrapyd.conf never moves its paths.
	Layout *Layout
	Extra  []string // files given with --config, read after the search order
	Env    []string // KEY=VALUE; nil means os.Environ()
	Cwd    string   // "" means the process's working directory
	Home   string   // "" means $HOME; "-" skips ~/.scrapyd.conf
	// Flags are options given on the daemon's command line (--bind,
	// --port). They are read last, so they win over every file and
	// variable, and at every reload too.
	Flags []Flag
}

// Flag is one option set by a command-line flag.
type Flag struct {
	Name   string // the flag as typed, e.g. "--port": `config show` names it
	Option string // the [scrapyd] option it sets, e.g. "http_port"
	Value  string
}

// root is absolute, so that every built-in path is (see path).
func (o Options) root() string {
	if o.Root == "" {
		return "/"
	}
	if abs, err := filepath.Abs(o.Root); err == nil {
		return abs
	}
	return o.Root
}

// ConfDir is <root>/etc/scrapyd.
func (o Options) ConfDir() string { return filepath.Join(o.root(), "etc", "scrapyd") }

// cwd is the daemon's working directory, "" when it cannot be known.
func (o Options) cwd() string {
	if o.Cwd != "" {
		return o.Cwd
	}
	wd, _ := os.Getwd()
	return wd
}

// SearchPaths lists every file and directory of the search order, existing or
// not, in reading order: the live-reload watcher watches exactly these.
func (o Options) SearchPaths() (files []string, confD string) {
	confD = filepath.Join(o.ConfDir(), "conf.d")
	files = []string{filepath.Join(o.ConfDir(), "scrapyd.conf")}
	if cwd := o.cwd(); cwd != "" {
		files = append(files, filepath.Join(cwd, "scrapyd.conf"))
	}
	home := o.Home
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	if home != "" && home != "-" {
		files = append(files, filepath.Join(home, ".scrapyd.conf"))
	}
	return files, confD
}

// Load reads and validates the whole search order. An error names the file
// and line at fault; no partial Config is ever returned.
func Load(o Options) (*Config, error) {
	root := o.root()
	var layout Layout
	if o.Layout != nil {
		layout = *o.Layout
	} else {
		layout = decideLayout(o.Root, o.ConfDir(), o.cwd())
	}
	entries := builtinEntries(root, o.cwd(), layout)
	files, confD := o.SearchPaths()
	ordered := []string{files[0]}
	if names, err := os.ReadDir(confD); err == nil {
		var fs []string
		for _, n := range names {
			// Editors' backups and swap files are not configuration.
			if n.IsDir() || strings.HasPrefix(n.Name(), ".") || strings.HasSuffix(n.Name(), "~") || strings.HasSuffix(n.Name(), ".swp") || strings.HasSuffix(n.Name(), ".dpkg-dist") || strings.HasSuffix(n.Name(), ".dpkg-old") {
				continue
			}
			fs = append(fs, filepath.Join(confD, n.Name()))
		}
		sort.Strings(fs)
		ordered = append(ordered, fs...)
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("%s: %w", confD, err)
	}
	ordered = append(ordered, files[1:]...)
	c := &Config{Root: root, Layout: layout, Settings: map[string]string{}, Caps: map[string]ProjectCaps{}, Sources: map[string]Source{}, Raw: map[string]string{}}
	for _, f := range ordered {
		data, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		es, err := parseINI(f, data)
		if err != nil {
			return nil, err
		}
		entries = append(entries, es...)
		c.Files = append(c.Files, f)
	}
	for _, f := range o.Extra {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--config %s: %w", f, err)
		}
		es, err := parseINI(f, data)
		if err != nil {
			return nil, err
		}
		entries = append(entries, es...)
		c.Files = append(c.Files, f)
	}
	env := o.Env
	if env == nil {
		env = os.Environ()
	}
	entries = append(entries, envEntries(env)...)
	for _, f := range o.Flags {
		entries = append(entries, entry{section: "scrapyd", key: f.Option, value: f.Value, source: Source{File: "(flag " + f.Name + ")"}})
	}
	if err := c.apply(entries); err != nil {
		return nil, err
	}
	return c, nil
}

// envEntries turns SCRAPYD_<OPTION>=value into [scrapyd] options. Scrapyd
// 1.5 reads five of them; we accept every option, and ignore the variables
// Scrapyd sets for crawls (SCRAPYD_EGG_VERSION), which name no option.
func envEntries(env []string) []entry {
	var out []entry
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "SCRAPYD_") {
			continue
		}
		key := strings.ToLower(strings.TrimPrefix(k, "SCRAPYD_"))
		if _, known := options[key]; !known {
			continue
		}
		out = append(out, entry{section: "scrapyd", key: key, value: v, source: Source{File: "(environment " + k + ")"}})
	}
	return out
}

func (c *Config) apply(entries []entry) error {
	for _, e := range entries {
		switch e.section {
		case "scrapyd":
			opt, ok := options[e.key]
			if !ok {
				if !scrapydOnly[e.key] {
					c.Warnings = append(c.Warnings, fmt.Sprintf("%s: unknown option %q ignored", e.source, e.key))
				}
				continue
			}
			if err := opt.set(c, e.value); err != nil {
				return fmt.Errorf("%s: %s: %w", e.source, e.key, err)
			}
			c.Sources[e.key] = e.source
			c.Raw[e.key] = e.value
		case "settings":
			c.Settings[e.key] = e.value
			c.Sources[settingsKey(e.key)] = e.source
		default:
			if strings.HasPrefix(e.section, webhookPrefix) {
				if err := c.setWebhook(e); err != nil {
					return err
				}
			}
			if name, ok := strings.CutPrefix(e.section, "project:"); ok {
				if err := c.setCap(name, e); err != nil {
					return err
				}
			}
		}
	}
	c.derive()
	return c.validate()
}

// setCap applies one option of a [project:NAME] section.
func (c *Config) setCap(project string, e entry) error {
	if err := checkProjectName(project); err != nil {
		return fmt.Errorf("%s: [project:%s]: %w", e.source, project, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(e.value))
	if err != nil || n < 0 {
		return fmt.Errorf("%s: [project:%s] %s: %q is not a whole number >= 0", e.source, project, e.key, e.value)
	}
	caps := c.Caps[project]
	switch e.key {
	case "max_proc":
		caps.MaxProc = n
	case "spider_max_proc":
		caps.SpiderMaxProc = n
	default:
		return fmt.Errorf("%s: [project:%s]: unknown option %q (known: max_proc, spider_max_proc)", e.source, project, e.key)
	}
	c.Caps[project] = caps
	c.Sources["[project:"+project+"] "+e.key] = e.source
	return nil
}

// checkProjectName refuses a [project:NAME] that no project could have.
func checkProjectName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\\\x00 ") || name == "." || name == ".." {
		return fmt.Errorf("%q is not a project name", name)
	}
	return nil
}

// derive fills the options whose default depends on others. crawl_dir's
// default is the directory holding eggs_dir, which the daemon creates at
// start, so it exists in every layout (issue 13): /var/lib/scrapyd when
// installed, DIR/var/lib/scrapyd with --root DIR, and the daemon's working
// directory when a scrapyd.conf there says eggs_dir = eggs, as Scrapyd's
// own default file does (Scrapyd runs crawls in its working directory).
func (c *Config) derive() {
	if c.Raw["crawl_dir"] == "" {
		c.CrawlDir = filepath.Dir(c.EggsDir)
		c.derivedFrom("crawl_dir", "the directory holding eggs_dir")
	}
	// envs/ beside eggs/: /var/lib/scrapyd/envs when installed, and the
	// same below --root.
	if c.Raw["envs_dir"] == "" {
		c.EnvsDir = filepath.Join(filepath.Dir(c.EggsDir), "envs")
		c.derivedFrom("envs_dir", "envs beside eggs_dir")
	}
}

// derivedFrom says, for `config show`, that key's default follows another
// option, unless a file or variable set it empty.
func (c *Config) derivedFrom(key, rule string) {
	if c.Sources[key].File == builtin {
		c.Sources[key] = Source{File: "(default, " + rule + ")"}
	}
}

func (c *Config) validate() error {
	fail := func(key, format string, a ...any) error {
		return fmt.Errorf("%s: %s: %s", c.Sources[key], key, fmt.Sprintf(format, a...))
	}
	if strings.Contains(c.Username, ":") {
		return fail("username", "must not contain ':' (HTTP Basic auth separates user and password with it)")
	}
	if (c.Username == "") != (c.Password == "") {
		key := "username"
		if c.Password != "" {
			key = "password"
		}
		return fail(key, "username and password must be set together (with only one, authentication would silently stay off)")
	}
	if c.BindAddress == "" && c.UnixSocketPath == "" {
		return fail("bind_address", "empty, and unix_socket_path is empty too: the daemon would listen nowhere")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		// Name the one that is set: its file and line are where to look.
		key := "tls_cert"
		if c.TLSKey != "" {
			key = "tls_key"
		}
		return fail(key, "tls_cert and tls_key must be set together")
	}
	for _, p := range c.CrawlWritablePaths {
		if !filepath.IsAbs(p) {
			return fail("crawl_writable_paths", "%q is not an absolute path", p)
		}
	}
	for _, d := range []struct{ key, val string }{{"eggs_dir", c.EggsDir}, {"dbs_dir", c.DbsDir}} {
		if d.val == "" {
			return fail(d.key, "must not be empty")
		}
	}
	dirs := map[string]string{}
	for _, d := range []struct{ key, val string }{{"eggs_dir", c.EggsDir}, {"dbs_dir", c.DbsDir}, {"logs_dir", c.LogsDir}, {"items_dir", c.ItemsDir}, {"jobs_dir", c.JobsDir}, {"envs_dir", c.EnvsDir}} {
		if d.val == "" {
			continue
		}
		// Retention deletes any file in the per-spider directories, so two
		// options sharing a directory would delete each other's files.
		if other, dup := dirs[filepath.Clean(d.val)]; dup {
			return fail(d.key, "is the same directory as %s (%s); each must be its own", other, d.val)
		}
		dirs[filepath.Clean(d.val)] = d.key
	}
	// Crawls run uploaded code in crawl_dir; the egg store and the job
	// database are the daemon's, and crawls' sandboxes hide them.
	for _, d := range []struct{ key, val string }{{"eggs_dir", c.EggsDir}, {"dbs_dir", c.DbsDir}} {
		if rel, err := filepath.Rel(d.val, c.CrawlDir); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return fail("crawl_dir", "%s is inside %s (%s): crawls must not run in the daemon's own state", c.CrawlDir, d.key, d.val)
		}
		// Crawls hide these directories, and must see their environment.
		if rel, err := filepath.Rel(d.val, c.EnvsDir); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return fail("envs_dir", "%s is inside %s (%s), which crawls cannot see", c.EnvsDir, d.key, d.val)
		}
	}
	if c.Slots() < 1 {
		return fail("max_proc_per_cpu", "max_proc and max_proc_per_cpu are both 0: no crawl could ever run")
	}
	return c.validateWebhooks()
}
