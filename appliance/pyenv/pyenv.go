// Package pyenv keeps the Python environments uploads ask for: one
// virtual environment per distinct set of requirements and wheels, shared
// by every version of every project that asks for the same set, built over
// the configured interpreter with its system packages visible (Debian's
// Scrapy, unless the requirements pin another). An environment is built in
// a hidden directory and renamed into place only once its install
// succeeded, so envs_dir never holds a half-built one under its name.
package pyenv

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/durable"
	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/ziplimit"
)

// Spec is what an upload asks for.
type Spec struct {
	Requirements []byte // a pip requirements file; nil for none
	Wheels       string // a zip of .whl files on disk; "" for none
}

// Empty: the upload asks for nothing, and runs as before (the configured
// python, no environment).
func (s Spec) Empty() bool { return len(bytes.TrimSpace(s.Requirements)) == 0 && s.Wheels == "" }

// Runner runs one confined command to its end (confine.Runner).
type Runner interface {
	Run(ctx context.Context, cmd launch.Command) (stdout, stderr string, err error)
}

// Install is how environments are built under the configuration in force.
type Install struct {
	Python     string   // the interpreter environments are made over
	IndexURL   string   // pip_index_url; "" installs offline
	PipOptions []string // pip_options, appended to pip install
	Timeout    time.Duration
	Env        []string // the environment commands start from
	Dir        string   // working directory
	Runner     Runner
	Limits     launch.Limits
	Hidden     []string // what the install must not read (the egg store, the job database)
	// Own gives the directory the install writes to the crawl user (a
	// root daemon); nil does nothing.
	Own func(dir string) error
	// Seal hands a built environment back to the daemon (a root daemon
	// chowns it to root), so that no crawl can change code another
	// project shares; nil does nothing.
	Seal func(dir string) error
}

// InstallError is an install that failed: Output is what pip (or python)
// said, trimmed to its end.
type InstallError struct{ Output string }

func (e *InstallError) Error() string { return e.Output }

// Info is what an environment holds, written when it was built.
type Info struct {
	ID           string    `json:"id"`
	Requirements string    `json:"requirements"`
	Wheels       []string  `json:"wheels"`   // the wheel files it was installed from
	Packages     []Package `json:"packages"` // installed in the environment (not the system's)
	Built        time.Time `json:"built"`
}

// Package is one installed distribution.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Store keeps environments under Dir; it is safe for concurrent use.
type Store struct {
	Dir string

	mu     sync.Mutex
	locks  map[string]*idLock // one build per id at a time
	pinned map[string]int     // ids an upload in progress holds
}

type idLock struct {
	sync.Mutex
	users int
}

// infoFile is written last into a built environment.
const infoFile = "scrapyd-env.json"

// buildPrefix names hidden build directories; anything so named is a
// build in progress or one a crash left.
const buildPrefix = ".build-"

// Python is the interpreter of environment id under dir.
func Python(dir, id string) string { return filepath.Join(dir, id, "bin", "python") }

// Env is an environment an upload holds: Collect does not remove it until
// Release.
type Env struct {
	ID      string
	Python  string
	Reused  bool // it existed already: no install ran
	release func()
}

// Release lets Collect remove the environment once no version uses it.
func (e *Env) Release() {
	if e != nil && e.release != nil {
		e.release()
		e.release = nil
	}
}

// Ensure returns the environment for spec, building it when no upload
// built the same set before. A failed install returns an *InstallError
// and leaves nothing behind.
func (s *Store) Ensure(ctx context.Context, spec Spec, in Install) (*Env, error) {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	build, err := os.MkdirTemp(s.Dir, buildPrefix)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(build) // renamed away when built
	if err := os.Chmod(build, 0o755); err != nil {
		return nil, err
	}
	if in.Own != nil {
		if err := in.Own(build); err != nil {
			return nil, err
		}
	}
	wheels, sums, err := extractWheels(spec.Wheels, filepath.Join(build, "wheels"))
	if err != nil {
		return nil, err
	}
	reqs := normalise(spec.Requirements)
	id := envID(in, reqs, sums)
	unlock := s.lock(id)
	defer unlock()
	env := &Env{ID: id, Python: Python(s.Dir, id), release: s.pin(id)}
	if _, err := os.Stat(filepath.Join(s.Dir, id, infoFile)); err == nil {
		env.Reused = true
		return env, nil
	}
	if in.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, in.Timeout)
		defer cancel()
	}
	if err := install(ctx, build, spec.Requirements, wheels, in); err != nil {
		env.Release()
		return nil, err
	}
	info := Info{ID: id, Requirements: string(spec.Requirements), Wheels: wheels, Built: time.Now().UTC()}
	var perr error
	if info.Packages, perr = packages(ctx, build, in); perr != nil {
		env.Release()
		return nil, perr
	}
	os.RemoveAll(filepath.Join(build, "wheels"))
	data, _ := json.MarshalIndent(info, "", "  ")
	if err := os.WriteFile(filepath.Join(build, infoFile), data, 0o644); err != nil {
		env.Release()
		return nil, err
	}
	if in.Seal != nil {
		if err := in.Seal(build); err != nil {
			env.Release()
			return nil, err
		}
	}
	final := filepath.Join(s.Dir, id)
	os.RemoveAll(final) // a leftover without its info file
	if err := os.Rename(build, final); err != nil {
		env.Release()
		return nil, err
	}
	return env, durable.SyncDir(s.Dir)
}

// Rebuild builds environment id on this node from the spec another node
// built it from (a cluster: the version's upload came in there). It must
// come out as id, which it does when this node's python, pip_index_url and
// pip_options are the uploading node's; an environment built under
// another id is left to Collect, as no version names it.
func (s *Store) Rebuild(ctx context.Context, id string, spec Spec, in Install) error {
	env, err := s.Ensure(ctx, spec, in)
	if err != nil {
		return err
	}
	defer env.Release()
	if env.ID != id {
		return fmt.Errorf("the version's requirements make environment %s on this node, not %s: this node's python, pip_index_url or pip_options differ from those of the node the version was uploaded to", env.ID, id)
	}
	return nil
}

// Has says whether environment id is built.
func (s *Store) Has(id string) bool {
	_, err := os.Stat(filepath.Join(s.Dir, filepath.Base(id), infoFile))
	return err == nil
}

// install makes the virtual environment in dir and installs into it, as
// confined commands: venv over the configured interpreter (without its own
// pip: Debian's, among the system packages, installs into the environment
// and saves a copy per environment), then pip install.
func install(ctx context.Context, dir string, requirements []byte, wheels []string, in Install) error {
	py := filepath.Join(dir, "bin", "python")
	pip := []string{"-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--no-cache-dir",
		"--progress-bar", "off", "--no-warn-script-location"}
	switch {
	case len(wheels) > 0:
		pip = append(pip, "--no-index", "--find-links", filepath.Join(dir, "wheels"))
	case in.IndexURL != "":
		pip = append(pip, "--index-url", in.IndexURL)
	default:
		// No index and no wheels: offline, so that a dependency the
		// system lacks fails at once and says which.
		pip = append(pip, "--no-index")
	}
	pip = append(pip, in.PipOptions...)
	if len(bytes.TrimSpace(requirements)) > 0 {
		req := filepath.Join(dir, "requirements.txt")
		if err := os.WriteFile(req, requirements, 0o644); err != nil {
			return err
		}
		pip = append(pip, "-r", req)
	} else {
		for _, w := range wheels {
			pip = append(pip, filepath.Join(dir, "wheels", w))
		}
	}
	steps := []struct {
		what string
		argv []string
	}{
		{"python -m venv", []string{in.Python, "-m", "venv", "--without-pip", "--system-site-packages", dir}},
		{"pip install", append([]string{py}, pip...)},
	}
	for _, step := range steps {
		if _, stderr, err := run(ctx, dir, in, step.argv, len(wheels) > 0); err != nil {
			msg := strings.TrimSpace(stderr)
			if ctx.Err() != nil {
				msg = fmt.Sprintf("no answer within env_install_timeout (%s); %s", in.Timeout, msg)
			}
			if msg == "" {
				msg = err.Error()
			}
			return &InstallError{Output: step.what + " failed: " + trim(msg)}
		}
	}
	return nil
}

// run runs one step confined: only the environment's directory writable,
// no network unless an index is configured and no wheelhouse was given.
func run(ctx context.Context, dir string, in Install, argv []string, offline bool) (string, string, error) {
	env := append(slices.Clip(in.Env), "PIP_CONFIG_FILE=/dev/null", "PYTHONNOUSERSITE=1", "PIP_NO_CACHE_DIR=1")
	return in.Runner.Run(ctx, launch.Command{
		Job: "env-install", Path: argv[0], Args: argv[1:], Env: env, Dir: in.Dir, Limits: in.Limits,
		Sandbox: launch.Sandbox{Writable: []string{dir}, Hidden: in.Hidden, NoNetwork: offline || in.IndexURL == ""},
	})
}

// listPackages prints the distributions installed in the environment
// itself (not the system's), as JSON.
const listPackages = `import importlib.metadata as m, json, site, sys
ds = m.distributions(path=site.getsitepackages()[:1])
json.dump(sorted({d.metadata["Name"]: d.version for d in ds}.items(), key=lambda p: p[0].lower()), sys.stdout)`

// packages lists what the install put into the environment.
func packages(ctx context.Context, dir string, in Install) ([]Package, error) {
	out, stderr, err := run(ctx, dir, in, []string{filepath.Join(dir, "bin", "python"), "-c", listPackages}, true)
	if err != nil {
		return nil, &InstallError{Output: "listing the installed packages failed: " + trim(stderr)}
	}
	var pairs [][2]string
	if err := json.Unmarshal([]byte(out), &pairs); err != nil {
		return nil, &InstallError{Output: "listing the installed packages failed: " + err.Error()}
	}
	pkgs := make([]Package, len(pairs))
	for i, p := range pairs {
		pkgs[i] = Package{Name: p[0], Version: p[1]}
	}
	return pkgs, nil
}

// Read returns what environment id holds.
func (s *Store) Read(id string) (Info, error) {
	var info Info
	data, err := os.ReadFile(filepath.Join(s.Dir, filepath.Base(id), infoFile))
	if err != nil {
		return info, err
	}
	return info, json.Unmarshal(data, &info)
}

// Collect removes every environment that inUse does not name and no upload
// in progress holds; at startup also what a crash left (builds, staged
// wheelhouses), since no upload runs yet. inUse is asked under the lock
// pins take, so a version committed before its environment is released is
// always seen; it is not asked when there is nothing to remove, and an
// error from it removes nothing. It returns the ids it removed.
func (s *Store) Collect(inUse func() (map[string]bool, error), startup bool) []string {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var envs []string
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "."):
			if startup && (strings.HasPrefix(name, buildPrefix) || strings.HasPrefix(name, stagePrefix)) {
				os.RemoveAll(filepath.Join(s.Dir, name))
			}
		case e.IsDir() && s.pinned[name] == 0:
			envs = append(envs, name)
		}
	}
	if len(envs) == 0 {
		return nil
	}
	use, err := inUse()
	if err != nil {
		return nil
	}
	var removed []string
	for _, name := range envs {
		if use[name] {
			continue
		}
		if os.RemoveAll(filepath.Join(s.Dir, name)) == nil {
			removed = append(removed, name)
		}
	}
	return removed
}

// stagePrefix names uploaded wheelhouses waiting for their upload's check.
const stagePrefix = ".wheels-"

// StageWheels writes an uploaded wheelhouse read from r to a hidden file,
// as it arrives; the caller removes it (os.Remove) when done.
func (s *Store) StageWheels(r io.Reader) (string, error) {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return "", fmt.Errorf("stage wheels: %w", err)
	}
	f, err := os.CreateTemp(s.Dir, stagePrefix+"*.zip")
	if err != nil {
		return "", fmt.Errorf("stage wheels: %w", err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("stage wheels: %w", err)
	}
	return f.Name(), nil
}

// lock takes the build lock of id.
func (s *Store) lock(id string) (unlock func()) {
	s.mu.Lock()
	if s.locks == nil {
		s.locks = map[string]*idLock{}
	}
	l := s.locks[id]
	if l == nil {
		l = &idLock{}
		s.locks[id] = l
	}
	l.users++
	s.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		s.mu.Lock()
		if l.users--; l.users == 0 {
			delete(s.locks, id)
		}
		s.mu.Unlock()
	}
}

// pin keeps id from Collect until the returned func is called.
func (s *Store) pin(id string) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pinned == nil {
		s.pinned = map[string]int{}
	}
	s.pinned[id]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.pinned[id]--; s.pinned[id] <= 0 {
			delete(s.pinned, id)
		}
	}
}

// normalise is the requirements as a set: comments, blank lines and
// surrounding spaces dropped, lines sorted, so that the same set written
// differently names the same environment.
func normalise(req []byte) []string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(req))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			lines = append(lines, strings.Join(strings.Fields(line), " "))
		}
	}
	slices.Sort(lines)
	return slices.Compact(lines)
}

// envID names the environment of a set: a hash of what decides its
// contents, the interpreter and, without wheels, the index included.
func envID(in Install, reqs []string, wheelSums []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "python %s\n", in.Python)
	if len(wheelSums) == 0 {
		fmt.Fprintf(h, "index %s\noptions %q\n", in.IndexURL, in.PipOptions)
	}
	for _, r := range reqs {
		fmt.Fprintf(h, "req %s\n", r)
	}
	for _, w := range wheelSums {
		fmt.Fprintf(h, "wheel %s\n", w)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Limits of a wheelhouse zip: what extracting it may write.
const (
	maxWheels     = 1000
	maxWheelBytes = 2 << 30
)

// ErrWheels: the wheels part is not what a wheelhouse is.
var ErrWheels = errors.New("wheels must be a zip of .whl files (or sdists: .tar.gz, .zip)")

// distribution says whether name is what pip installs from a
// --find-links directory: a wheel, or an sdist (whose setup.py then runs
// in the install's sandbox).
func distribution(name string) bool {
	for _, ext := range []string{".whl", ".tar.gz", ".zip"} {
		if strings.HasSuffix(name, ext) && len(name) > len(ext) {
			return true
		}
	}
	return false
}

// extractWheels writes the distributions in the zip at src into dir and
// returns their names and "name sha256" sums, sorted. Folders in the zip
// are flattened (pip wheel -w writes a flat directory); anything but a
// distribution is refused.
func extractWheels(src, dir string) (names, sums []string, err error) {
	if src == "" {
		return nil, nil, nil
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	zr, err := ziplimit.Open(f, fi.Size())
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrWheels, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	var total int64
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/") {
			continue
		}
		name := path.Base(f.Name)
		if !distribution(name) || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "\\\x00") {
			return nil, nil, fmt.Errorf("%w: %q is neither", ErrWheels, f.Name)
		}
		if slices.Contains(names, name) {
			return nil, nil, fmt.Errorf("%w: %q twice", ErrWheels, name)
		}
		if len(names) == maxWheels {
			return nil, nil, fmt.Errorf("%w: more than %d wheels", ErrWheels, maxWheels)
		}
		sum, n, err := copyWheel(f, filepath.Join(dir, name), maxWheelBytes-total)
		if err != nil {
			return nil, nil, err
		}
		total += n
		names = append(names, name)
		sums = append(sums, name+" "+sum)
	}
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("%w: it holds none", ErrWheels)
	}
	slices.Sort(names)
	slices.Sort(sums)
	return names, sums, nil
}

// copyWheel writes one entry to dst, at most left bytes, and returns its
// sha256.
func copyWheel(f *zip.File, dst string, left int64) (string, int64, error) {
	rc, err := f.Open()
	if err != nil {
		return "", 0, fmt.Errorf("%w: %v", ErrWheels, err)
	}
	defer rc.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", 0, err
	}
	defer out.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(rc, left+1))
	if err != nil {
		return "", 0, fmt.Errorf("%w: %v", ErrWheels, err)
	}
	if n > left {
		return "", 0, fmt.Errorf("%w: more than %d GiB unpacked", ErrWheels, maxWheelBytes>>30)
	}
	return hex.EncodeToString(h.Sum(nil)), n, out.Close()
}

// trim keeps the end of a tool's output, where pip and Python say what
// went wrong: the last lines, at most 2000 bytes, as one message.
func trim(out string) string {
	const max = 2000
	out = strings.TrimSpace(out)
	if len(out) <= max {
		return out
	}
	out = out[len(out)-max:]
	if i := strings.IndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	return "… " + out
}
