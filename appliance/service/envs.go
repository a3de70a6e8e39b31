package service

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/pyenv"
)

// Envs is the environment store as the service uses it (pyenv.Store).
// Collect calls inUse at most once, and only when there is something it
// could remove.
type Envs interface {
	Ensure(ctx context.Context, spec pyenv.Spec, in pyenv.Install) (*pyenv.Env, error)
	StageWheels(r io.Reader) (path string, err error)
	Read(id string) (pyenv.Info, error)
	Collect(inUse func() (map[string]bool, error), startup bool) []string
}

// maxRequirements bounds a requirements file: pip's own are a few KB.
const maxRequirements = 1 << 20

// Deps are what an upload asks to have installed with it: its
// requirements file and a wheelhouse (a zip of .whl files) staged on disk.
type Deps struct {
	Requirements string
	Wheels       *Wheels
}

// Wheels is an uploaded wheelhouse staged on disk.
type Wheels struct{ path string }

// ReceiveWheels stages an upload's wheelhouse read from r. It is
// discarded with the upload it goes with.
func (s *Service) ReceiveWheels(r io.Reader) (*Wheels, error) {
	if s.Envs == nil {
		_, err := io.Copy(io.Discard, r)
		return &Wheels{}, err
	}
	path, err := s.Envs.StageWheels(r)
	if err != nil {
		return nil, err
	}
	return &Wheels{path: path}, nil
}

// Discard removes the staged wheelhouse (an environment built from it
// keeps its own copy of the wheels); a second call does nothing.
func (w *Wheels) Discard() {
	if w.path != "" {
		os.Remove(w.path)
		w.path = ""
	}
}

// environment builds (or finds) the environment an upload asks for; nil
// when it asks for none. The caller releases it.
func (s *Service) environment(ctx context.Context, cfg *config.Config, d Deps) (*pyenv.Env, error) {
	spec := pyenv.Spec{Requirements: []byte(d.Requirements)}
	if d.Wheels != nil {
		spec.Wheels = d.Wheels.path
	}
	if spec.Empty() {
		return nil, nil
	}
	if len(spec.Requirements) > maxRequirements {
		return nil, Invalid("requirements", "larger than 1 MiB")
	}
	if s.Envs == nil || s.Install == nil {
		return nil, errorf("this server keeps no Python environments: upload without requirements or wheels")
	}
	env, err := s.Envs.Ensure(ctx, spec, s.Install(cfg))
	var ie *pyenv.InstallError
	switch {
	case errors.As(err, &ie):
		return nil, &Error{Message: "the requirements could not be installed: " + ie.Output}
	case errors.Is(err, pyenv.ErrWheels):
		return nil, &Error{Message: err.Error()}
	}
	return env, err
}

// collectEnvs removes the environments no version uses any more.
func (s *Service) collectEnvs() {
	if s.Envs != nil {
		s.Envs.Collect(s.envsInUse, false)
	}
}

// envsInUse are the environments stored versions name.
func (s *Service) envsInUse() (map[string]bool, error) {
	return EnvsInUse(s.Eggs)
}

// EnvsInUse are the environments the versions in eggs name (for Collect,
// here and at start). An egg store that cannot be read is an error, never
// "nothing in use".
func EnvsInUse(eggs interface {
	Projects() ([]string, error)
	Versions(string) ([]egg.Version, error)
}) (map[string]bool, error) {
	use := map[string]bool{}
	projects, err := eggs.Projects()
	if err != nil {
		return nil, err
	}
	for _, p := range projects {
		vs, err := eggs.Versions(p)
		if err != nil {
			return nil, err
		}
		for _, v := range vs {
			if v.Env != "" {
				use[v.Env] = true
			}
		}
	}
	return use, nil
}

// Env describes an environment for the pages ("" for none).
func (s *Service) Env(id string) (pyenv.Info, bool) {
	if id == "" || s.Envs == nil {
		return pyenv.Info{}, false
	}
	info, err := s.Envs.Read(id)
	return info, err == nil
}

// envPython is the interpreter of a version's environment, "" for the
// configured one.
func (s *Service) envPython(cfg *config.Config, v egg.Version) string {
	if v.Env == "" {
		return ""
	}
	return pyenv.Python(cfg.EnvsDir, v.Env)
}

// envIndex answers "which environment does this job's version use?" for
// one listing, reading each project's versions once.
func (s *Service) envIndex() func(project, version string) string {
	byProject := map[string][]egg.Version{}
	return func(project, version string) string {
		vs, ok := byProject[project]
		if !ok {
			vs, _ = s.Eggs.Versions(project)
			byProject[project] = vs
		}
		if len(vs) == 0 {
			return ""
		}
		if version == "" {
			return vs[len(vs)-1].Env
		}
		for _, v := range vs {
			if v.Name == version || egg.Sanitize(v.Name) == egg.Sanitize(version) {
				return v.Env
			}
		}
		return ""
	}
}

// JobEnv is the environment a job of this version runs in ("" for the
// latest, as of now); "" for none.
func (s *Service) JobEnv(project, version string) string { return s.envIndex()(project, version) }
