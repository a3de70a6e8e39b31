package egg

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/durable"
)

// ErrNotFound: no such project or version.
var ErrNotFound = errors.New("not found")

// Store keeps eggs under Dir. The version string as uploaded is kept in a
// hidden side file (.<stem>.version) because the file name only holds the
// sanitized stem; eggs without one (from Scrapyd) show their stem. A version
// uploaded with requirements names its Python environment in another
// (.<stem>.env): it goes and comes with the egg, whatever removes it.
type Store struct {
	Dir string
}

// stagingDir holds uploads until they are checked; it is hidden, so it is
// never listed as a project, and on the same file system, so that the final
// rename is atomic.
const stagingDir = ".staging"

// Version is one stored egg.
type Version struct {
	Name     string // as uploaded
	Path     string // the egg file
	Uploaded time.Time
	Env      string // the id of its Python environment; "" for none
}

// Projects lists the projects that have eggs, sorted.
func (s *Store) Projects() ([]string, error) {
	ents, err := os.ReadDir(s.Dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Versions lists a project's versions, oldest first (see Compare). An
// unknown project has no versions (Scrapyd answers [] rather than an error).
func (s *Store) Versions(project string) ([]Version, error) {
	dir := filepath.Join(s.Dir, project)
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list versions of %s: %w", project, err)
	}
	var out []Version
	for _, e := range ents {
		stem, ok := strings.CutSuffix(e.Name(), ".egg")
		if !ok || e.IsDir() || strings.HasPrefix(stem, ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		name := stem
		if raw, err := os.ReadFile(filepath.Join(dir, "."+stem+".version")); err == nil && Sanitize(string(raw)) == stem {
			name = string(raw)
		}
		v := Version{Name: name, Path: filepath.Join(dir, e.Name()), Uploaded: info.ModTime()}
		if raw, err := os.ReadFile(filepath.Join(dir, "."+stem+".env")); err == nil {
			v.Env = strings.TrimSpace(string(raw))
		}
		out = append(out, v)
	}
	names := make([]string, len(out))
	byName := make(map[string]Version, len(out))
	for i, v := range out {
		names[i] = v.Name
		byName[v.Name] = v
	}
	Sort(names)
	for i, n := range names {
		out[i] = byName[n]
	}
	return out, nil
}

// Find returns a version, matched as uploaded or by its sanitized stem;
// version "" means the latest.
func (s *Store) Find(project, version string) (Version, error) {
	vs, err := s.Versions(project)
	if err != nil {
		return Version{}, err
	}
	return Match(vs, version)
}

// Match finds a version among vs (oldest first) as Find does: by its name
// as uploaded, else by its Sanitize stem; "" is the latest.
func Match(vs []Version, version string) (Version, error) {
	if len(vs) == 0 {
		return Version{}, ErrNotFound
	}
	if version == "" {
		return vs[len(vs)-1], nil
	}
	for _, v := range vs {
		if v.Name == version {
			return v, nil
		}
	}
	for _, v := range vs {
		if Sanitize(v.Name) == Sanitize(version) {
			return v, nil
		}
	}
	return Version{}, ErrNotFound
}

// Record is a version as a shared store (a cluster's database) lists it:
// SHA256 is what a node's cached copy of the egg must hold.
type Record struct {
	Project, Version string
	SHA256           string
	Env              string
	Uploaded         time.Time
}

// Upload is a checked upload as a shared store keeps it (SHA256 the
// Data's, Env its environment's id).
type Upload struct {
	Record
	Data         []byte
	Spiders      []string
	Requirements string
	Wheels       []byte // the wheelhouse zip; nil for none
}

// Staged is an upload kept but not yet visible as a version: its spiders
// are listed first, and a bad one is aborted.
type Staged interface {
	// Path is a file holding the egg, for `scrapy list` to read.
	Path() string
	// UseEnv records the version's Python environment (pyenv), at Commit.
	UseEnv(id string)
	// UseDetails records what the upload's check found, for a store that
	// keeps it with the egg (a cluster's); the disk store keeps none.
	UseDetails(d Details)
	// Commit makes it the given version, replacing a version of the same
	// Sanitize name (and the environment that one named).
	Commit(version string) error
	// Abort drops it.
	Abort()
}

// Details are what an upload's check found: a cluster's store commits the
// spider list with the egg, in one transaction, and keeps the requirements
// and wheels so that another node can build the version's environment.
// The disk store needs none of it (the job store caches spider lists; the
// environment is built where the egg is).
type Details struct {
	Spiders      []string
	Requirements string
	Wheels       string // the staged wheelhouse's path; "" for none
}

// staged is an upload written to disk in the staging directory.
type staged struct {
	store   *Store
	project string
	path    string
	env     string
}

// Stage writes the egg read from r durably to a hidden temporary file, as
// it arrives (an upload is never held in memory whole). Nothing is visible
// until Commit; Abort (or a crash, or an error from r) leaves no version
// behind.
func (s *Store) Stage(project string, r io.Reader) (Staged, error) {
	dir := filepath.Join(s.Dir, stagingDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("stage egg: %w", err)
	}
	f, err := os.CreateTemp(dir, Sanitize(project)+"-*.egg")
	if err != nil {
		return nil, fmt.Errorf("stage egg: %w", err)
	}
	st := &staged{store: s, project: project, path: f.Name()}
	// Crawls run as the crawl user and must read their egg; CreateTemp's
	// 0600 would hide it from them. Eggs hold code, not secrets.
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		st.Abort()
		return nil, fmt.Errorf("stage egg: %w", err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		st.Abort()
		return nil, fmt.Errorf("stage egg: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		st.Abort()
		return nil, fmt.Errorf("stage egg: %w", err)
	}
	if err := f.Close(); err != nil {
		st.Abort()
		return nil, fmt.Errorf("stage egg: %w", err)
	}
	return st, nil
}

func (st *staged) Path() string { return st.path }

func (st *staged) Abort() { os.Remove(st.path) }

func (st *staged) UseEnv(id string) { st.env = id }

func (st *staged) UseDetails(Details) {}

// Commit writes the side files first (a version replaced by one without
// requirements loses its .env), then renames the egg into place, then
// syncs the directory.
func (st *staged) Commit(version string) error {
	dir := filepath.Join(st.store.Dir, st.project)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("store egg: %w", err)
	}
	stem := Sanitize(version)
	if err := durable.WriteFile(filepath.Join(dir, "."+stem+".version"), []byte(version)); err != nil {
		return fmt.Errorf("store egg: %w", err)
	}
	envFile := filepath.Join(dir, "."+stem+".env")
	if st.env != "" {
		if err := durable.WriteFile(envFile, []byte(st.env)); err != nil {
			return fmt.Errorf("store egg: %w", err)
		}
	} else if err := os.Remove(envFile); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("store egg: %w", err)
	}
	if err := os.Rename(st.path, filepath.Join(dir, stem+".egg")); err != nil {
		return fmt.Errorf("store egg: %w", err)
	}
	return durable.SyncDir(dir)
}

// Delete removes one version; the project goes too when it was the last.
func (s *Store) Delete(project, version string) error {
	v, err := s.Find(project, version)
	if err != nil {
		return err
	}
	if err := os.Remove(v.Path); err != nil {
		return fmt.Errorf("delete version: %w", err)
	}
	dir := filepath.Dir(v.Path)
	stem := strings.TrimSuffix(filepath.Base(v.Path), ".egg")
	os.Remove(filepath.Join(dir, "."+stem+".version"))
	os.Remove(filepath.Join(dir, "."+stem+".env"))
	if rest, _ := s.Versions(project); len(rest) == 0 {
		os.RemoveAll(dir)
	}
	return nil
}

// DeleteProject removes a project and all its versions.
func (s *Store) DeleteProject(project string) error {
	dir := filepath.Join(s.Dir, project)
	if _, err := os.Stat(dir); err != nil {
		return ErrNotFound
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("delete project: %w", err)
	}
	return nil
}

// CleanStaging removes uploads a crash left half-done.
func (s *Store) CleanStaging() { os.RemoveAll(filepath.Join(s.Dir, stagingDir)) }
