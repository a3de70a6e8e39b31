// Package eggtest is the contract of an egg store: what the service and the
// dispatcher rely on, as tests that every implementation must pass
// (egg.Store on disk, memegg.Store, and eggcache.Store: a cluster's eggs
// in PostgreSQL with copies on each node).
package eggtest

import (
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/egg"
)

// Store is every method of an egg store. The consumers declare the parts
// they use (service.Eggs, dispatch.Eggs); each is a subset of this one.
type Store interface {
	Projects() ([]string, error)
	Versions(project string) ([]egg.Version, error)
	Find(project, version string) (egg.Version, error)
	Stage(project string, r io.Reader) (egg.Staged, error)
	Delete(project, version string) error
	DeleteProject(project string) error
}

// Run runs the contract; open returns a new, empty store.
func Run(t *testing.T, open func(t *testing.T) Store) {
	for _, c := range []struct {
		name string
		test func(*testing.T, Store)
	}{
		{"Empty", empty},
		{"VersionsKeepUploadedNamesAndOrder", versions},
		{"StagedIsInvisibleUntilCommit", staging},
		{"SameStemReplaces", sameStem},
		{"Delete", deletes},
		{"EnvGoesWithTheVersion", envs},
	} {
		t.Run(c.name, func(t *testing.T) { c.test(t, open(t)) })
	}
}

func upload(t *testing.T, s Store, project, version string) {
	t.Helper()
	st, err := s.Stage(project, strings.NewReader(project+" "+version))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(version); err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T, s Store, project string) []string {
	t.Helper()
	vs, err := s.Versions(project)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

func projects(t *testing.T, s Store) []string {
	t.Helper()
	ps, err := s.Projects()
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{}, ps...)
}

// holds says that a version's Path is a file with the bytes uploaded as it
// (a crawl reads its egg from a file).
func holds(t *testing.T, v egg.Version, data string) {
	t.Helper()
	got, err := os.ReadFile(v.Path)
	if err != nil || string(got) != data {
		t.Fatalf("version %s: Path %q reads %q, %v; want %q", v.Name, v.Path, got, err, data)
	}
}

func empty(t *testing.T, s Store) {
	if ps := projects(t, s); len(ps) != 0 {
		t.Fatalf("projects = %q", ps)
	}
	if vs, err := s.Versions("p"); len(vs) != 0 || err != nil {
		t.Fatalf("an unknown project has no versions, and that is no error (Scrapyd answers []): %v, %v", vs, err)
	}
	if _, err := s.Find("p", ""); !errors.Is(err, egg.ErrNotFound) {
		t.Fatalf("Find in an unknown project: %v", err)
	}
}

func versions(t *testing.T, s Store) {
	for _, v := range []string{"r10", "r9", "1.0"} {
		upload(t, s, "p", v)
	}
	upload(t, s, "a", "x")
	if got, want := names(t, s, "p"), []string{"1.0", "r9", "r10"}; !slices.Equal(got, want) {
		t.Fatalf("versions = %q, want %q (oldest first, egg.Compare)", got, want)
	}
	if got := projects(t, s); !slices.Equal(got, []string{"a", "p"}) {
		t.Fatalf("projects = %q, want sorted", got)
	}
	latest, err := s.Find("p", "")
	if err != nil || latest.Name != "r10" {
		t.Fatalf("latest = %+v, %v; want r10", latest, err)
	}
	holds(t, latest, "p r10")
	for _, name := range []string{"1.0", "1_0"} { // as uploaded, or by its stem
		v, err := s.Find("p", name)
		if err != nil || v.Name != "1.0" {
			t.Fatalf("Find(%q) = %+v, %v; want 1.0", name, v, err)
		}
		holds(t, v, "p 1.0")
	}
	if _, err := s.Find("p", "2.0"); !errors.Is(err, egg.ErrNotFound) {
		t.Fatalf("Find of a missing version: %v", err)
	}
}

func staging(t *testing.T, s Store) {
	st, err := s.Stage("p", strings.NewReader("egg bytes"))
	if err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(st.Path()); err != nil || string(data) != "egg bytes" {
		t.Fatalf("staged Path reads %q, %v", data, err)
	}
	if ps := projects(t, s); len(ps) != 0 {
		t.Fatalf("a staged upload must not show as a project: %q", ps)
	}
	st.Abort()
	if ps := projects(t, s); len(ps) != 0 {
		t.Fatalf("an aborted upload shows as a project: %q", ps)
	}
	st, _ = s.Stage("p", strings.NewReader("kept"))
	if err := st.Commit("1.0"); err != nil {
		t.Fatal(err)
	}
	v, err := s.Find("p", "1.0")
	if err != nil {
		t.Fatal(err)
	}
	holds(t, v, "kept")
}

func sameStem(t *testing.T, s Store) {
	upload(t, s, "p", "1.0")
	upload(t, s, "p", "1_0") // the same file in Scrapyd's eggs_dir
	if got := names(t, s, "p"); !slices.Equal(got, []string{"1_0"}) {
		t.Fatalf("versions = %q, want the second upload only", got)
	}
	v, _ := s.Find("p", "1.0")
	holds(t, v, "p 1_0")
}

func deletes(t *testing.T, s Store) {
	for _, v := range []string{"r9", "r10"} {
		upload(t, s, "p", v)
	}
	upload(t, s, "q", "1")
	if err := s.Delete("p", "r10"); err != nil {
		t.Fatal(err)
	}
	if latest, _ := s.Find("p", ""); latest.Name != "r9" {
		t.Fatalf("after deleting r10 the latest is %q", latest.Name)
	}
	if err := s.Delete("p", "r10"); !errors.Is(err, egg.ErrNotFound) {
		t.Fatalf("deleting a deleted version: %v", err)
	}
	if err := s.Delete("p", "r9"); err != nil {
		t.Fatal(err)
	}
	if got := projects(t, s); !slices.Equal(got, []string{"q"}) {
		t.Fatalf("deleting the last version must remove the project: %q", got)
	}
	if err := s.DeleteProject("q"); err != nil {
		t.Fatal(err)
	}
	if got := projects(t, s); len(got) != 0 {
		t.Fatalf("projects after DeleteProject = %q", got)
	}
	if err := s.DeleteProject("q"); !errors.Is(err, egg.ErrNotFound) {
		t.Fatalf("DeleteProject of no project: %v", err)
	}
}

// envs: the environment a version was committed with is the version's,
// and a replacing upload without one leaves none behind.
func envs(t *testing.T, s Store) {
	st, err := s.Stage("p", strings.NewReader("p 1"))
	if err != nil {
		t.Fatal(err)
	}
	st.UseEnv("0123abcd")
	if err := st.Commit("1"); err != nil {
		t.Fatal(err)
	}
	upload(t, s, "p", "2")
	vs, _ := s.Versions("p")
	if len(vs) != 2 || vs[0].Env != "0123abcd" || vs[1].Env != "" {
		t.Fatalf("versions = %+v, want 1 with its environment and 2 without", vs)
	}
	if v, _ := s.Find("p", "1"); v.Env != "0123abcd" {
		t.Fatalf("Find(1).Env = %q", v.Env)
	}
	upload(t, s, "p", "1") // replaced, without requirements
	if v, _ := s.Find("p", "1"); v.Env != "" {
		t.Fatalf("replaced by an upload without requirements, Env = %q", v.Env)
	}
}
