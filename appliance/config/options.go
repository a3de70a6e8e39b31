package config

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// option is one [scrapyd] key: its built-in default, how it is parsed into
// its Config field, and whether a running daemon can apply a change.
// Defaults containing {root} are under the root prefix, so that `--root .`
// gives a development tree the installed system's layout.
type option struct {
	def string
	field
	// restart says why a changed value waits for a restart: the daemon
	// used it once, at start. "" means it applies live (see Live).
	restart string
}

// field parses a value into one Config field; ptr points at that field, so
// that a reload can compare it and carry a restart-only value over.
type field struct {
	set func(c *Config, v string) error
	ptr func(c *Config) any
}

// Why a restart-only option cannot change while the daemon runs.
const (
	listener = "the listening sockets are opened at start"
	atStart  = "opened or created once at start"
	// The node_lease, lost_jobs and advertise_url a node registers with
	// (cluster mode) are the cluster's record of it until it restarts.
	atRegistration = "the node registers with it at start"
)

// options is the whole [scrapyd] section we understand. Scrapyd's defaults are
// kept where they apply; the paths are the Debian layout the seed documents.
var options = map[string]option{
	"bind_address":              {"127.0.0.1", str(func(c *Config) *string { return &c.BindAddress }), listener},
	"http_port":                 {"6800", intRange(0, 65535, func(c *Config) *int { return &c.HTTPPort }), listener},
	"unix_socket_path":          {"", path(func(c *Config) *string { return &c.UnixSocketPath }), listener},
	"username":                  {"", str(func(c *Config) *string { return &c.Username }), ""},
	"password":                  {"", str(func(c *Config) *string { return &c.Password }), ""},
	"tls_cert":                  {"", path(func(c *Config) *string { return &c.TLSCert }), listener},
	"tls_key":                   {"", path(func(c *Config) *string { return &c.TLSKey }), listener},
	"poll_interval":             {"5.0", seconds(0.01, func(c *Config) *time.Duration { return &c.PollInterval }), ""},
	"start_timeout":             {"30", seconds(0.1, func(c *Config) *time.Duration { return &c.StartTimeout }), ""},
	"idle_timeout":              {"auto", idleTimeout(func(c *Config) *time.Duration { return &c.IdleTimeout }), ""},
	"max_proc":                  {"0", intRange(0, 100000, func(c *Config) *int { return &c.MaxProc }), ""},
	"max_proc_per_cpu":          {"4", intRange(0, 10000, func(c *Config) *int { return &c.MaxProcPerCPU }), ""},
	"eggs_dir":                  {"{root}/var/lib/scrapyd/eggs", path(func(c *Config) *string { return &c.EggsDir }), atStart},
	"dbs_dir":                   {"{root}/var/lib/scrapyd/dbs", path(func(c *Config) *string { return &c.DbsDir }), "the job database is opened at start"},
	"items_dir":                 {"{root}/var/lib/scrapyd/items", path(func(c *Config) *string { return &c.ItemsDir }), ""},
	"logs_dir":                  {"{root}/var/log/scrapyd", path(func(c *Config) *string { return &c.LogsDir }), ""},
	"jobs_dir":                  {"", path(func(c *Config) *string { return &c.JobsDir }), ""},
	"runtime_dir":               {"", path(func(c *Config) *string { return &c.RuntimeDir }), atStart},
	"crawl_dir":                 {"", path(func(c *Config) *string { return &c.CrawlDir }), ""},
	"envs_dir":                  {"", path(func(c *Config) *string { return &c.EnvsDir }), atStart},
	"pip_index_url":             {"", str(func(c *Config) *string { return &c.PipIndexURL }), ""},
	"pip_options":               {"", field{pipOptions, ptrTo(func(c *Config) *[]string { return &c.PipOptions })}, ""},
	"env_install_timeout":       {"600", seconds(1, func(c *Config) *time.Duration { return &c.EnvInstallTimeout }), ""},
	"log_file":                  {"{root}/var/log/scrapyd/scrapyd.log", path(func(c *Config) *string { return &c.LogFile }), "the daemon's log is opened at start"},
	"jobs_to_keep":              {"5", intRange(0, math.MaxInt32, func(c *Config) *int { return &c.JobsToKeep }), ""},
	"finished_to_keep":          {"100", intRange(0, math.MaxInt32, func(c *Config) *int { return &c.FinishedToKeep }), ""},
	"logs_max_age":              {"0", age(func(c *Config) *time.Duration { return &c.LogsMaxAge }), ""},
	"logs_max_bytes":            {"0", size(func(c *Config) *int64 { return &c.LogsMaxBytes }), ""},
	"logs_max_bytes_per_spider": {"0", size(func(c *Config) *int64 { return &c.LogsMaxBytesPerSpider }), ""},
	"compress_finished":         {"off", boolean(func(c *Config) *bool { return &c.CompressFinished }), ""},
	"prefix_header":             {"x-forwarded-prefix", str(func(c *Config) *string { return &c.PrefixHeader }), ""},
	"debug":                     {"off", boolean(func(c *Config) *bool { return &c.Debug }), ""},
	"node_name":                 {"", field{nodeName, ptrTo(func(c *Config) *string { return &c.NodeName })}, ""},
	"database":                  {"", field{database, ptrTo(func(c *Config) *string { return &c.Database })}, "the job database is opened at start"},
	"database_password_file":    {"", path(func(c *Config) *string { return &c.DatabasePasswordFile }), "the job database is opened at start"},
	"node_lease":                {"30", seconds(1, func(c *Config) *time.Duration { return &c.NodeLease }), atRegistration},
	"lost_jobs":                 {"mark", field{lostJobs, ptrTo(func(c *Config) *string { return &c.LostJobs })}, atRegistration},
	"advertise_url":             {"", field{advertiseURL, ptrTo(func(c *Config) *string { return &c.AdvertiseURL })}, atRegistration},
	"log_ship_limit":            {"64M", size(func(c *Config) *int64 { return &c.LogShipLimit }), ""},
	"python":                    {"/usr/bin/python3", executable(func(c *Config) *string { return &c.Python }), ""},
	"launcher":                  {"auto", field{launcherKind, ptrTo(func(c *Config) *string { return &c.Launcher })}, "the launcher is chosen at start, and running crawls belong to it"},
	"crawl_user":                {"scrapy", str(func(c *Config) *string { return &c.CrawlUser }), "the crawl user is resolved with the launcher at start"},
	"metrics_public":            {"off", boolean(func(c *Config) *bool { return &c.MetricsPublic }), ""},
	"upload_limit":              {"64M", size(func(c *Config) *int64 { return &c.UploadLimit }), "the HTTP server's body limit is fixed at start"},
	"crawl_memory_max":          {"0", size(func(c *Config) *int64 { return &c.CrawlMemoryMax }), ""},
	"crawl_cpu_quota":           {"0", percent(func(c *Config) *int { return &c.CrawlCPUQuota }), ""},
	"crawl_tasks_max":           {"0", intRange(0, math.MaxInt32, func(c *Config) *int { return &c.CrawlTasksMax }), ""},
	"crawl_max_runtime":         {"0", seconds(0, func(c *Config) *time.Duration { return &c.CrawlMaxRuntime }), ""},
	"crawl_writable_paths":      {"", list(func(c *Config) *[]string { return &c.CrawlWritablePaths }), ""},
	"webservice_enabled":        {"on", boolean(func(c *Config) *bool { return &c.WebserviceEnabled }), ""},
	"webservice_resources":      {"crawler, stats, enginestatus", list(func(c *Config) *[]string { return &c.WebserviceResources }), ""},
	"webservice_logfile":        {"", path(func(c *Config) *string { return &c.WebserviceLogFile }), ""},
}

// scrapydOnly are Scrapyd options that name Python classes or modules; an
// existing scrapyd.conf may carry them, and they mean nothing here.
var scrapydOnly = map[string]bool{
	"application": true, "runner": true, "webroot": true, "eggstorage": true,
	"jobstorage": true, "spiderqueue": true, "poller": true,
}

// Names lists every option we understand, sorted (for `config show`).
func Names() []string {
	out := make([]string, 0, len(options))
	for k := range options {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// builtinEntries are every option's default: the path options' from the
// layout (and said so in their source), the others' from options.
func builtinEntries(root, cwd string, l Layout) []entry {
	out := make([]entry, 0, len(options))
	for _, k := range Names() {
		v, src := options[k].def, Source{File: builtin}
		if d, ok := layoutDefault(k, root, cwd, l); ok {
			v, src = d, layoutSource(l)
		}
		out = append(out, entry{section: "scrapyd", key: k, value: v, source: src})
	}
	return out
}

func hasRoot(def string) bool { return strings.HasPrefix(def, "{root}") }

// trimRoot is a {root} default relative to the root.
func trimRoot(def string) string { return strings.TrimPrefix(strings.TrimPrefix(def, "{root}"), "/") }

// ptrTo adapts a field accessor to field.ptr.
func ptrTo[T any](f func(*Config) *T) func(*Config) any {
	return func(c *Config) any { return f(c) }
}

// parsed makes the field for a value parsed by parse and stored by f.
func parsed[T any](f func(*Config) *T, parse func(v string) (T, error)) field {
	return field{
		set: func(c *Config, v string) error {
			x, err := parse(v)
			if err != nil {
				return err
			}
			*f(c) = x
			return nil
		},
		ptr: ptrTo(f),
	}
}

func str(f func(*Config) *string) field {
	return parsed(f, func(v string) (string, error) { return v, nil })
}

// path makes a relative path absolute from the daemon's working directory,
// which is what it means in Scrapyd, once, here: crawls run elsewhere (their
// own working directory, or a unit whose sandbox takes absolute paths only).
// A URL (items_dir = s3://…) is kept as given. NUL bytes can never name a file.
func path(f func(*Config) *string) field {
	return parsed(f, func(v string) (string, error) {
		if strings.ContainsRune(v, 0) {
			return "", errors.New("contains a NUL byte")
		}
		if v == "" || filepath.IsAbs(v) || strings.Contains(v, "://") {
			return v, nil
		}
		return filepath.Abs(v)
	})
}

func executable(f func(*Config) *string) field {
	return parsed(f, func(v string) (string, error) {
		if !filepath.IsAbs(v) {
			// A PATH lookup would make the interpreter depend on the
			// environment the daemon happened to start in.
			return "", fmt.Errorf("%q is not an absolute path", v)
		}
		return v, nil
	})
}

func intRange(lo, hi int, f func(*Config) *int) field {
	return parsed(f, func(v string) (int, error) { return parseInt(v, lo, hi) })
}

func parseInt(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", v)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d is out of range [%d, %d]", n, lo, hi)
	}
	return n, nil
}

func percent(f func(*Config) *int) field {
	return parsed(f, func(v string) (int, error) {
		return parseInt(strings.TrimSuffix(strings.TrimSpace(v), "%"), 0, 100000)
	})
}

// seconds accepts Scrapyd's float seconds ("5.0") or a Go duration ("2h").
// idleTimeout parses idle_timeout: auto (IdleAuto) or seconds/a duration,
// 0 for never.
func idleTimeout(f func(*Config) *time.Duration) field {
	secs := seconds(0, f)
	return field{set: func(c *Config, v string) error {
		if strings.EqualFold(strings.TrimSpace(v), "auto") {
			*f(c) = IdleAuto
			return nil
		}
		return secs.set(c, v)
	}, ptr: secs.ptr}
}

func seconds(min float64, f func(*Config) *time.Duration) field {
	return parsed(f, func(v string) (time.Duration, error) {
		v = strings.TrimSpace(v)
		s, err := strconv.ParseFloat(v, 64)
		if err != nil {
			d, derr := time.ParseDuration(v)
			if derr != nil {
				return 0, fmt.Errorf("%q is neither seconds nor a duration such as 90s or 2h", v)
			}
			s = d.Seconds()
		}
		if math.IsNaN(s) || math.IsInf(s, 0) || s < 0 || (s != 0 && s < min) || (min > 0 && s == 0) {
			return 0, fmt.Errorf("%q is out of range (at least %gs)", v, min)
		}
		return time.Duration(s * float64(time.Second)), nil
	})
}

// age is seconds as seconds reads them, or whole days ("30d"): how
// long finished logs are kept is said in days.
func age(f func(*Config) *time.Duration) field {
	secs := seconds(0, f)
	return field{
		set: func(c *Config, v string) error {
			if d, ok := strings.CutSuffix(strings.TrimSpace(v), "d"); ok {
				n, err := parseInt(d, 0, 100000)
				if err != nil {
					return fmt.Errorf("%q is not a number of days such as 30d", v)
				}
				*f(c) = time.Duration(n) * 24 * time.Hour
				return nil
			}
			return secs.set(c, v)
		},
		ptr: secs.ptr,
	}
}

func boolean(f func(*Config) *bool) field {
	return parsed(f, func(v string) (bool, error) {
		// The words Python's ConfigParser.getboolean accepts.
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "1", "yes", "true", "on":
			return true, nil
		case "0", "no", "false", "off":
			return false, nil
		}
		return false, fmt.Errorf("%q is not a boolean (on/off, yes/no, true/false, 1/0)", v)
	})
}

// size accepts bytes or a number with a K, M, G or T suffix (powers of 1024).
func size(f func(*Config) *int64) field {
	return parsed(f, func(v string) (int64, error) {
		s := strings.ToUpper(strings.TrimSpace(v))
		s = strings.TrimSuffix(strings.TrimSuffix(s, "B"), "I")
		mult := int64(1)
		if n := len(s); n > 0 {
			switch s[n-1] {
			case 'K':
				mult = 1 << 10
			case 'M':
				mult = 1 << 20
			case 'G':
				mult = 1 << 30
			case 'T':
				mult = 1 << 40
			}
			if mult > 1 {
				s = s[:n-1]
			}
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || n < 0 || n > math.MaxInt64/mult {
			return 0, fmt.Errorf("%q is not a size such as 512M or 2G", v)
		}
		return n * mult, nil
	})
}

func list(f func(*Config) *[]string) field {
	return parsed(f, func(v string) ([]string, error) {
		return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }), nil
	})
}

// pipOptions are split at spaces only, as a shell would without quotes:
// an option's value may hold a comma (--trusted-host a,b).
func pipOptions(c *Config, v string) error {
	c.PipOptions = strings.Fields(v)
	return nil
}

// database is "" or a PostgreSQL URL. A password in it is refused: the
// URL is shown by `config show` and in messages, so the password lives in
// database_password_file (root-only) or ~/.pgpass instead.
func database(c *Config, v string) error {
	if v == "" {
		c.Database = ""
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "postgresql" && u.Scheme != "postgres") {
		return errors.New("not a postgresql:// URL (leave it empty for the embedded SQLite database)")
	}
	if _, ok := u.User.Password(); ok || u.Query().Has("password") {
		return errors.New("the URL holds a password: put it in database_password_file (mode 0600) or ~/.pgpass instead")
	}
	c.Database = v
	return nil
}

func nodeName(c *Config, v string) error {
	if v == "" {
		// Scrapyd's default is socket.gethostname().
		v, _ = os.Hostname()
	}
	c.NodeName = v
	return nil
}

func lostJobs(c *Config, v string) error {
	switch v {
	case "mark", "requeue":
		c.LostJobs = v
		return nil
	}
	return fmt.Errorf("%q is neither mark nor requeue", v)
}

// advertiseURL is "" or an http(s) URL with a host: where other nodes send
// what only this node can answer.
func advertiseURL(c *Config, v string) error {
	if v == "" {
		c.AdvertiseURL = ""
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("not an http:// or https:// URL such as http://node1.example:6800")
	}
	c.AdvertiseURL = strings.TrimRight(v, "/")
	return nil
}

func launcherKind(c *Config, v string) error {
	switch v {
	case "auto", "exec", "systemd":
		c.Launcher = v
	case "scrapyd.launcher.Launcher":
		// An existing Scrapyd configuration names its Python class here.
		c.Launcher = "auto"
	default:
		return fmt.Errorf("%q is not one of auto, exec, systemd", v)
	}
	return nil
}
