package service_test

import (
	"bytes"
	"context"
	"io"
	"maps"
	"slices"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/pyenv"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// envStore stands in for pyenv.Store: every set is environment "e-" + its
// requirements; Collect records what the service says is in use.
type envStore struct {
	inUse []map[string]bool
}

func (e *envStore) Ensure(_ context.Context, spec pyenv.Spec, _ pyenv.Install) (*pyenv.Env, error) {
	return &pyenv.Env{ID: "e-" + string(bytes.TrimSpace(spec.Requirements)), Python: "/envs/python"}, nil
}
func (e *envStore) StageWheels(io.Reader) (string, error) { return "", nil }
func (e *envStore) Read(string) (pyenv.Info, error)       { return pyenv.Info{}, nil }
func (e *envStore) Collect(inUse func() (map[string]bool, error), _ bool) []string {
	use, _ := inUse()
	e.inUse = append(e.inUse, use)
	return nil
}

func upload(t *testing.T, s *service.Service, project, version, requirements string) {
	t.Helper()
	up := receive(t, s, project)
	up.Deps.Requirements = requirements
	if _, err := s.AddVersion(context.Background(), project, version, up); err != nil {
		t.Fatal(err)
	}
}

// TestEnvironmentsCollected: the service asks for collection with the
// environments still in use after each change that may free one: an
// upload with requirements, a version replaced by one without, a deleted
// version and project; jobs list their version's environment.
func TestEnvironmentsCollected(t *testing.T) {
	s, _ := newService(t, &lister{names: []string{"a"}})
	envs := &envStore{}
	s.Envs, s.Install = envs, func(*config.Config) pyenv.Install { return pyenv.Install{} }
	last := func() []string {
		t.Helper()
		if len(envs.inUse) == 0 {
			t.Fatal("no collection")
		}
		return slices.Sorted(maps.Keys(envs.inUse[len(envs.inUse)-1]))
	}
	upload(t, s, "p", "1", "x==1")
	upload(t, s, "p", "2", "y==1")
	if got := last(); !slices.Equal(got, []string{"e-x==1", "e-y==1"}) {
		t.Errorf("after two uploads in use: %v", got)
	}
	if _, err := s.Schedule(context.Background(), service.ScheduleRequest{Project: "p", Spider: "a", Version: "1"}); err != nil {
		t.Fatal(err)
	}
	if l, err := s.Jobs(context.Background(), service.JobsQuery{}); err != nil || len(l.Pending) != 1 || l.Pending[0].Env != "e-x==1" {
		t.Errorf("pending job's env: %+v, %v", l.Pending, err)
	}
	n := len(envs.inUse)
	upload(t, s, "p", "1", "") // replaced without requirements
	if len(envs.inUse) != n+1 || !slices.Equal(last(), []string{"e-y==1"}) {
		t.Errorf("after replacing 1 without requirements: %d collections, in use %v", len(envs.inUse)-n, last())
	}
	if err := s.DeleteVersion("p", "2"); err != nil {
		t.Fatal(err)
	}
	if got := last(); len(got) != 0 {
		t.Errorf("after deleting 2: in use %v", got)
	}
	upload(t, s, "p", "3", "z==1")
	if err := s.DeleteProject("p"); err != nil {
		t.Fatal(err)
	}
	if got := last(); len(got) != 0 {
		t.Errorf("after deleting the project: in use %v", got)
	}
}
