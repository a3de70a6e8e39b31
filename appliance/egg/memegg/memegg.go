// Package memegg is an egg store that keeps its index in memory: the
// second implementation of the contract in eggtest, for unit tests of the
// store's consumers. Crawls and `scrapy list` read an egg from a file, so
// each upload's bytes are written to a file in a scratch directory; nothing
// is kept across a restart.
package memegg

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/egg"
)

// Store is safe for concurrent use.
type Store struct {
	dir string

	mu       sync.Mutex
	files    int
	projects map[string][]egg.Version // oldest first
}

// New returns an empty store that writes eggs' files under dir.
func New(dir string) *Store {
	return &Store{dir: dir, projects: map[string][]egg.Version{}}
}

// Projects lists the projects that have versions, sorted.
func (s *Store) Projects() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for p := range s.projects {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

// Versions lists a project's versions, oldest first (egg.Compare).
func (s *Store) Versions(project string) ([]egg.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.projects[project]), nil
}

// Find returns a version, matched as uploaded or by its egg.Sanitize stem;
// "" means the latest.
func (s *Store) Find(project, version string) (egg.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.find(project, version)
	if err != nil {
		return egg.Version{}, err
	}
	return s.projects[project][i], nil
}

// find returns the index of a version in its project; s.mu held.
func (s *Store) find(project, version string) (int, error) {
	vs := s.projects[project]
	switch {
	case len(vs) == 0:
		return 0, egg.ErrNotFound
	case version == "":
		return len(vs) - 1, nil
	}
	if i := slices.IndexFunc(vs, func(v egg.Version) bool { return v.Name == version }); i >= 0 {
		return i, nil
	}
	if i := slices.IndexFunc(vs, func(v egg.Version) bool { return egg.Sanitize(v.Name) == egg.Sanitize(version) }); i >= 0 {
		return i, nil
	}
	return 0, egg.ErrNotFound
}

// staged is an upload in its file, not yet in the index.
type staged struct {
	store   *Store
	project string
	path    string
	env     string
}

// Stage writes data to a new file; nothing is visible until Commit.
func (s *Store) Stage(project string, r io.Reader) (egg.Staged, error) {
	s.mu.Lock()
	s.files++
	path := filepath.Join(s.dir, fmt.Sprintf("%d.egg", s.files))
	s.mu.Unlock()
	data, err := io.ReadAll(r)
	if err == nil {
		err = os.WriteFile(path, data, 0o644)
	}
	if err != nil {
		return nil, fmt.Errorf("stage egg: %w", err)
	}
	return &staged{store: s, project: project, path: path}, nil
}

func (st *staged) Path() string { return st.path }

func (st *staged) Abort() { os.Remove(st.path) }

func (st *staged) UseEnv(id string) { st.env = id }

func (st *staged) UseDetails(egg.Details) {}

// Commit adds the version, replacing one of the same egg.Sanitize stem (as
// on disk, where both are the same file).
func (st *staged) Commit(version string) error {
	s := st.store
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := slices.DeleteFunc(s.projects[st.project], func(v egg.Version) bool {
		if egg.Sanitize(v.Name) == egg.Sanitize(version) {
			os.Remove(v.Path)
			return true
		}
		return false
	})
	vs = append(vs, egg.Version{Name: version, Path: st.path, Uploaded: time.Now(), Env: st.env})
	slices.SortStableFunc(vs, func(a, b egg.Version) int { return egg.Compare(a.Name, b.Name) })
	s.projects[st.project] = vs
	return nil
}

// Delete removes one version; the project goes too when it was the last.
func (s *Store) Delete(project, version string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.find(project, version)
	if err != nil {
		return err
	}
	os.Remove(s.projects[project][i].Path)
	s.projects[project] = slices.Delete(s.projects[project], i, i+1)
	if len(s.projects[project]) == 0 {
		delete(s.projects, project)
	}
	return nil
}

// DeleteProject removes a project and all its versions.
func (s *Store) DeleteProject(project string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vs, ok := s.projects[project]
	if !ok {
		return egg.ErrNotFound
	}
	for _, v := range vs {
		os.Remove(v.Path)
	}
	delete(s.projects, project)
	return nil
}
