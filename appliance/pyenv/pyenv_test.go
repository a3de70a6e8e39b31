package pyenv

import (
	"context"
	"errors"
	"os"
	osExec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/confine"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

func greeter(t testing.TB, version, greeting string) []byte {
	return testkit.Wheel(t, "greeter", version, map[string]string{"greeter/__init__.py": "def greet():\n    return " + greeting + "\n"})
}

func wheelhouse(t testing.TB, wheels map[string][]byte) string {
	p := filepath.Join(t.TempDir(), "wheels.zip")
	if err := os.WriteFile(p, testkit.Wheelhouse(t, wheels), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func childInstall(t testing.TB) Install {
	return Install{Python: "/usr/bin/python3", Runner: confine.Runner{}, Dir: t.TempDir(), Env: []string{"PATH=/usr/bin:/bin"}}
}

// TestEnsureBuildsOnceAndImports: a wheelhouse's package is importable from
// the environment's python (with Debian's Scrapy still visible), the same
// set asked again is the same environment without a second install, and
// what was installed is recorded.
func TestEnsureBuildsOnceAndImports(t *testing.T) {
	testkit.RequireScrapy(t)
	s := &Store{Dir: t.TempDir()}
	spec := Spec{Requirements: []byte("greeter==1.0\n"), Wheels: wheelhouse(t, map[string][]byte{testkit.WheelName("greeter", "1.0"): greeter(t, "1.0", "'hello'")})}
	env, err := s.Ensure(context.Background(), spec, childInstall(t))
	if err != nil {
		t.Fatal(err)
	}
	defer env.Release()
	if env.Reused {
		t.Error("first build reported as reused")
	}
	out, err := exec(env.Python, "import greeter, scrapy; print(greeter.greet())")
	if err != nil || out != "hello" {
		t.Fatalf("greeter in the environment: %q, %v", out, err)
	}
	// The same set, written differently: comment, blank line, spaces.
	again := Spec{Requirements: []byte("# pinned\n\n  greeter==1.0  \n"), Wheels: spec.Wheels}
	env2, err := s.Ensure(context.Background(), again, childInstall(t))
	if err != nil {
		t.Fatal(err)
	}
	defer env2.Release()
	if env2.ID != env.ID || !env2.Reused {
		t.Errorf("same set: id %s (reused %v), want %s reused", env2.ID, env2.Reused, env.ID)
	}
	info, err := s.Read(env.ID)
	if err != nil || len(info.Packages) != 1 || info.Packages[0] != (Package{"greeter", "1.0"}) || info.Requirements != "greeter==1.0\n" {
		t.Errorf("info = %+v, %v", info, err)
	}
	ents, _ := os.ReadDir(s.Dir)
	if len(ents) != 1 {
		t.Errorf("envs_dir holds %d entries, want the one environment", len(ents))
	}
	// In use by nobody once released: collected.
	env.Release()
	env2.Release()
	if removed := s.Collect(func() (map[string]bool, error) { return nil, nil }, false); len(removed) != 1 || removed[0] != env.ID {
		t.Errorf("Collect removed %v, want [%s]", removed, env.ID)
	}
}

// TestEnsureRefusesAndLeavesNothing: a requirement the wheelhouse lacks,
// offline, and a broken wheel are each refused with pip's message, and
// envs_dir stays empty.
func TestEnsureRefusesAndLeavesNothing(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	for name, spec := range map[string]Spec{
		"missing": {Requirements: []byte("greeter==1.0\n")},
		"broken":  {Wheels: wheelhouse(t, map[string][]byte{testkit.WheelName("greeter", "1.0"): []byte("not a zip")})},
	} {
		_, err := s.Ensure(context.Background(), spec, childInstall(t))
		var ie *InstallError
		if !errors.As(err, &ie) || !strings.Contains(ie.Output, "pip install failed") {
			t.Errorf("%s: err = %v, want pip's refusal", name, err)
		}
		if ents, _ := os.ReadDir(s.Dir); len(ents) != 0 {
			t.Errorf("%s: envs_dir holds %v after a failed install", name, ents)
		}
	}
	// A zip directory larger than any wheelhouse's is refused before it
	// is read whole (archive/zip would hold every entry in memory).
	bomb := filepath.Join(t.TempDir(), "bomb.zip")
	os.WriteFile(bomb, testkit.EmptyEntriesZip(200_000), 0o644)
	if _, err := s.Ensure(context.Background(), Spec{Wheels: bomb}, childInstall(t)); !errors.Is(err, ErrWheels) || !strings.Contains(err.Error(), "too large") {
		t.Errorf("a zip of 200,000 entries: %v", err)
	}
	// A wheelhouse must hold distributions only, and no name twice.
	for name, house := range map[string]map[string][]byte{
		"script":  {"run.sh": []byte("#!/bin/sh")},
		"dotfile": {".greeter-1.0-py3-none-any.whl": []byte("x")},
		"twice":   {"a/greeter-1.0.tar.gz": []byte("x"), "b/greeter-1.0.tar.gz": []byte("y")},
	} {
		_, err := s.Ensure(context.Background(), Spec{Wheels: wheelhouse(t, house)}, childInstall(t))
		if !errors.Is(err, ErrWheels) {
			t.Errorf("%s: err = %v, want ErrWheels", name, err)
		}
		if ents, _ := os.ReadDir(s.Dir); len(ents) != 0 {
			t.Errorf("%s: envs_dir holds %v", name, ents)
		}
	}
}

func exec(python, code string) (string, error) {
	out, err := osexec(python, "-c", code)
	return strings.TrimSpace(out), err
}

func osexec(name string, args ...string) (string, error) {
	out, err := osExec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// TestRebuildOnAnotherNode: a node that fetched a version builds its
// environment from the same spec under the same id; one whose settings make
// another id says so, and what it built is no version's (Collect removes it).
func TestRebuildOnAnotherNode(t *testing.T) {
	testkit.RequireScrapy(t)
	spec := Spec{Requirements: []byte("greeter==1.0\n"), Wheels: wheelhouse(t, map[string][]byte{testkit.WheelName("greeter", "1.0"): greeter(t, "1.0", "'hello'")})}
	uploader := &Store{Dir: t.TempDir()}
	env, err := uploader.Ensure(context.Background(), spec, childInstall(t))
	if err != nil {
		t.Fatal(err)
	}
	env.Release()
	other := &Store{Dir: t.TempDir()}
	if other.Has(env.ID) {
		t.Fatal("Has before any build")
	}
	if err := other.Rebuild(context.Background(), env.ID, spec, childInstall(t)); err != nil || !other.Has(env.ID) {
		t.Fatalf("Rebuild = %v, Has = %v", err, other.Has(env.ID))
	}
	third := &Store{Dir: t.TempDir()}
	err = third.Rebuild(context.Background(), "0123456789abcdef", spec, childInstall(t))
	if err == nil || !strings.Contains(err.Error(), "not 0123456789abcdef") || !strings.Contains(err.Error(), "pip_index_url") {
		t.Fatalf("Rebuild under settings that make another id: %v", err)
	}
	if removed := third.Collect(func() (map[string]bool, error) { return map[string]bool{"0123456789abcdef": true}, nil }, false); len(removed) != 1 {
		t.Fatalf("Collect removed %v, want the environment no version names", removed)
	}
}
