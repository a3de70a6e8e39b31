// Package eggcache is the egg store of a cluster (issue 15): the eggs live
// in the shared database, stored by the node that checked the upload, and
// every node keeps copies in its eggs_dir, fetched when a crawl or a
// listing needs the file and checked against the stored hash each time.
// The copies are laid out as egg.Store lays out eggs
// (eggs_dir/<project>/<stem>.egg), so a crawl's egg path and its sandbox
// are those of a single node.
//
// A copy is marked by a hidden side file holding its hash
// (.<stem>.sha256): Reconcile removes only marked copies the database no
// longer names, never an egg the cluster does not know. An egg found in
// place with the stored hash (one a single node had before its eggs were
// imported) is marked when first used.
package eggcache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/durable"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
)

// DB is the shared database as the cache uses it (pgstore.Store). Versions
// are named as uploaded or by their egg.Sanitize stem; a missing one is
// egg.ErrNotFound. AddEgg, DeleteEgg and DeleteEggProject announce the
// change to every node.
type DB interface {
	AddEgg(ctx context.Context, u egg.Upload) error
	EggProjects(ctx context.Context) ([]string, error)
	// EggRecords lists a project's versions, every project's for "".
	EggRecords(ctx context.Context, project string) ([]egg.Record, error)
	EggData(ctx context.Context, project, version string) (data []byte, sha256 string, err error)
	// EggDeps is what the version's environment is built from.
	EggDeps(ctx context.Context, project, version string) (requirements string, wheels []byte, err error)
	DeleteEgg(ctx context.Context, project, version string) error
	DeleteEggProject(ctx context.Context, project string) error
}

// Envs builds versions' Python environments on this node (the daemon's
// pyenv store, under the configuration in force).
type Envs interface {
	// Has says whether environment id is built here.
	Has(id string) bool
	// Build builds environment id from an upload's requirements and
	// wheelhouse (a zip's path, "" for none), or says why it cannot.
	Build(ctx context.Context, id, requirements, wheels string) error
}

// Timeouts of the calls that take no context (the egg store's methods are
// those of egg.Store): a listing, and a fetch with its environment build
// (pip's own is bounded by env_install_timeout inside Build).
const (
	queryTimeout = 30 * time.Second
	fetchTimeout = 30 * time.Minute
)

// Store is safe for concurrent use.
type Store struct {
	DB  DB
	Dir string // eggs_dir
	// Envs builds the environments versions name; nil refuses to find a
	// version that names one (this node cannot run it).
	Envs Envs

	// locks holds a *sync.Mutex per egg path or environment: one fetch
	// (or build) of each at a time. One per version this node ever
	// fetched: few enough to keep.
	locks sync.Map
}

// lock takes the lock of key.
func (s *Store) lock(key string) (unlock func()) {
	m, _ := s.locks.LoadOrStore(key, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// stagingDir is egg.Store's: uploads and fetches are written there, on the
// same file system as the copies, and whatever a crash left in it goes at
// start (egg.Store.CleanStaging).
const stagingDir = ".staging"

func (s *Store) path(project, version string) string {
	return filepath.Join(s.Dir, project, egg.Sanitize(version)+".egg")
}

func (s *Store) marker(project, stem string) string {
	return filepath.Join(s.Dir, project, "."+stem+".sha256")
}

// Projects lists the projects that have eggs in the database, sorted.
func (s *Store) Projects() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	return s.DB.EggProjects(ctx)
}

// Versions lists a project's versions in the database, oldest first
// (egg.Compare). Path is where this node's copy is kept: Find fetches it.
func (s *Store) Versions(project string) ([]egg.Version, error) {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	vs, _, err := s.versions(ctx, project)
	return vs, err
}

// versions returns the versions oldest first, and their records by name.
func (s *Store) versions(ctx context.Context, project string) ([]egg.Version, map[string]egg.Record, error) {
	recs, err := s.DB.EggRecords(ctx, project)
	if err != nil {
		return nil, nil, err
	}
	byName := make(map[string]egg.Record, len(recs))
	names := make([]string, 0, len(recs))
	for _, r := range recs {
		byName[r.Version] = r
		names = append(names, r.Version)
	}
	egg.Sort(names)
	out := make([]egg.Version, len(names))
	for i, n := range names {
		r := byName[n]
		out[i] = egg.Version{Name: n, Path: s.path(project, n), Uploaded: r.Uploaded, Env: r.Env}
	}
	return out, byName, nil
}

// Find returns a version as egg.Store does, with this node's copy of its
// egg at Path, fetched from the database when it is missing or does not
// hold the stored hash, and its Python environment built here when it
// names one.
func (s *Store) Find(project, version string) (egg.Version, error) {
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	vs, recs, err := s.versions(ctx, project)
	if err != nil {
		return egg.Version{}, err
	}
	v, err := egg.Match(vs, version)
	if err != nil {
		return egg.Version{}, err
	}
	if err := s.fetch(ctx, recs[v.Name]); err != nil {
		return egg.Version{}, err
	}
	if v.Env != "" {
		if err := s.env(ctx, v); err != nil {
			return egg.Version{}, err
		}
	}
	return v, nil
}

// fetch makes the copy of r hold r's bytes.
func (s *Store) fetch(ctx context.Context, r egg.Record) error {
	path := s.path(r.Project, r.Version)
	unlock := s.lock(path)
	defer unlock()
	if sum, err := fileSum(path); err == nil && sum == r.SHA256 {
		// An egg that was here before the cluster (a node that imported
		// its eggs) becomes a marked copy: a delete removes it too.
		if _, err := os.Stat(s.marker(r.Project, egg.Sanitize(r.Version))); os.IsNotExist(err) {
			return durable.WriteFile(s.marker(r.Project, egg.Sanitize(r.Version)), []byte(sum))
		}
		return nil
	}
	data, sum, err := s.DB.EggData(ctx, r.Project, r.Version)
	if err != nil {
		return fmt.Errorf("fetch egg %s %s: %w", r.Project, r.Version, err)
	}
	if got := dataSum(data); got != sum {
		return fmt.Errorf("fetch egg %s %s: the database holds bytes of sha256 %s, stored as %s", r.Project, r.Version, got, sum)
	}
	// sum may be a newer upload of the same stem than r: the copy holds
	// what the database holds now.
	tmp, err := s.stage(data)
	if err != nil {
		return fmt.Errorf("fetch egg %s %s: %w", r.Project, r.Version, err)
	}
	if err := s.keep(r.Project, r.Version, sum, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fetch egg %s %s: %w", r.Project, r.Version, err)
	}
	return nil
}

// stage writes data to a new file in the staging directory, readable by
// crawls (eggs hold code, not secrets), synced.
func (s *Store) stage(data []byte) (string, error) {
	dir := filepath.Join(s.Dir, stagingDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "fetch-*.egg")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// keep renames the file at tmp into place as the copy of a version holding
// sum: the marker first, so that a copy is never unmarked.
func (s *Store) keep(project, version, sum, tmp string) error {
	dir := filepath.Join(s.Dir, project)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	stem := egg.Sanitize(version)
	if err := durable.WriteFile(s.marker(project, stem), []byte(sum)); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.path(project, version)); err != nil {
		return err
	}
	return durable.SyncDir(dir)
}

// env builds v's environment here unless it is built.
func (s *Store) env(ctx context.Context, v egg.Version) error {
	if s.Envs == nil {
		return fmt.Errorf("version %s needs its Python environment %s, and this node builds none", v.Name, v.Env)
	}
	if s.Envs.Has(v.Env) {
		return nil
	}
	unlock := s.lock("env " + v.Env)
	defer unlock()
	if s.Envs.Has(v.Env) {
		return nil
	}
	project := filepath.Base(filepath.Dir(v.Path))
	reqs, wheels, err := s.DB.EggDeps(ctx, project, v.Name)
	if err != nil {
		return fmt.Errorf("build the Python environment of version %s: %w", v.Name, err)
	}
	wheelsPath := ""
	if wheels != nil {
		if wheelsPath, err = s.stage(wheels); err != nil {
			return fmt.Errorf("build the Python environment of version %s: %w", v.Name, err)
		}
		defer os.Remove(wheelsPath)
	}
	if err := s.Envs.Build(ctx, v.Env, reqs, wheelsPath); err != nil {
		return fmt.Errorf("the Python environment of version %s could not be built on this node: %w", v.Name, err)
	}
	return nil
}

func dataSum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

func fileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// staged is an upload in egg.Store's staging directory.
type staged struct {
	egg.Staged // the file, and Abort
	store      *Store
	project    string
	env        string
	details    egg.Details
}

// Stage writes the egg read from r to a staging file as egg.Store does;
// nothing is in the database until Commit.
func (s *Store) Stage(project string, r io.Reader) (egg.Staged, error) {
	inner, err := (&egg.Store{Dir: s.Dir}).Stage(project, r)
	if err != nil {
		return nil, err
	}
	return &staged{Staged: inner, store: s, project: project}, nil
}

func (st *staged) UseEnv(id string) { st.env = id }

func (st *staged) UseDetails(d egg.Details) { st.details = d }

// Commit stores the egg, its hash, its spider list and what its
// environment is built from in one transaction, then keeps the staged file
// as this node's copy. The upload is read into memory once, for the
// database's bytea.
func (st *staged) Commit(version string) error {
	data, err := os.ReadFile(st.Path())
	if err != nil {
		return fmt.Errorf("store egg: %w", err)
	}
	u := egg.Upload{
		Record:  egg.Record{Project: st.project, Version: version, SHA256: dataSum(data), Env: st.env},
		Data:    data,
		Spiders: st.details.Spiders, Requirements: st.details.Requirements,
	}
	if st.details.Wheels != "" {
		if u.Wheels, err = os.ReadFile(st.details.Wheels); err != nil {
			return fmt.Errorf("store egg: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	if err := st.store.DB.AddEgg(ctx, u); err != nil {
		return fmt.Errorf("store egg: %w", err)
	}
	path := st.store.path(st.project, version)
	unlock := st.store.lock(path)
	defer unlock()
	// A copy that cannot be kept is fetched again when needed.
	if st.store.keep(st.project, version, u.SHA256, st.Path()) != nil {
		st.Abort()
	}
	return nil
}

// Delete removes one version from the database, and this node's copy;
// the other nodes remove theirs when they hear of it (Reconcile).
func (s *Store) Delete(project, version string) error {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	vs, _, err := s.versions(ctx, project)
	if err != nil {
		return err
	}
	v, err := egg.Match(vs, version)
	if err != nil {
		return err
	}
	if err := s.DB.DeleteEgg(ctx, project, v.Name); err != nil {
		return err
	}
	// Deleted: a copy left here by a failure is removed when this node
	// hears its own announcement, or after its next reconnect.
	s.Reconcile(ctx)
	return nil
}

// DeleteProject removes a project's versions, and this node's copies.
func (s *Store) DeleteProject(project string) error {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	if err := s.DB.DeleteEggProject(ctx, project); err != nil {
		return err
	}
	s.Reconcile(ctx)
	return nil
}

// Reconcile removes this node's copies of eggs the database no longer
// holds (deleted, or replaced by an upload of another hash), and project
// directories left empty. Eggs it did not fetch or store are left alone.
func (s *Store) Reconcile(ctx context.Context) error {
	want, err := s.sums(ctx, "")
	if err != nil {
		return err
	}
	projects, err := os.ReadDir(s.Dir)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var errs []error
	for _, p := range projects {
		if !p.IsDir() || strings.HasPrefix(p.Name(), ".") {
			continue
		}
		dir := filepath.Join(s.Dir, p.Name())
		ents, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range ents {
			stem, ok := strings.CutSuffix(strings.TrimPrefix(e.Name(), "."), ".sha256")
			if !ok || !strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if s.current(p.Name(), stem, want) {
				continue
			}
			unlock := s.lock(s.path(p.Name(), stem))
			// Asked again under the egg's lock: an upload committed
			// since the first read keeps its copy here (it writes the
			// copy under this lock, after its commit).
			now, err := s.sums(ctx, p.Name())
			if err != nil || s.current(p.Name(), stem, now) {
				if err != nil {
					errs = append(errs, err)
				}
				unlock()
				continue
			}
			if err := os.Remove(filepath.Join(dir, stem+".egg")); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			} else {
				// egg.Store's side files go with the egg they describe.
				for _, side := range []string{e.Name(), "." + stem + ".version", "." + stem + ".env"} {
					os.Remove(filepath.Join(dir, side))
				}
			}
			unlock()
		}
		os.Remove(dir) // only when empty
	}
	return errors.Join(errs...)
}

// sums maps project/stem to the sha256 the database holds, for one
// project or ("") every project.
func (s *Store) sums(ctx context.Context, project string) (map[string]string, error) {
	recs, err := s.DB.EggRecords(ctx, project)
	if err != nil {
		return nil, err
	}
	want := make(map[string]string, len(recs))
	for _, r := range recs {
		want[r.Project+"/"+egg.Sanitize(r.Version)] = r.SHA256
	}
	return want, nil
}

// current says whether the marked copy of project/stem holds what the
// database holds for it.
func (s *Store) current(project, stem string, want map[string]string) bool {
	sum, ok := want[project+"/"+stem]
	if !ok {
		return false
	}
	raw, err := os.ReadFile(s.marker(project, stem))
	return err == nil && strings.TrimSpace(string(raw)) == sum
}
