package api

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/pyenv"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapy"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// fakeEnvs stands in for pyenv.Store: it records what an upload asked for
// and answers with one environment, or fails the install.
type fakeEnvs struct {
	dir    string
	spec   pyenv.Spec
	wheels []byte // the staged wheelhouse as Ensure saw it
	fail   bool
}

func (f *fakeEnvs) Ensure(_ context.Context, spec pyenv.Spec, _ pyenv.Install) (*pyenv.Env, error) {
	f.spec = spec
	f.wheels, _ = os.ReadFile(spec.Wheels)
	if f.fail {
		return nil, &pyenv.InstallError{Output: "pip install failed: ERROR: No matching distribution found for greeter==1.0"}
	}
	return &pyenv.Env{ID: "e1", Python: "/envs/e1/bin/python"}, nil
}

func (f *fakeEnvs) StageWheels(r io.Reader) (string, error) {
	out, err := os.CreateTemp(f.dir, "wheels-*.zip")
	if err != nil {
		return "", err
	}
	defer out.Close()
	_, err = io.Copy(out, r)
	return out.Name(), err
}

func (f *fakeEnvs) Read(string) (pyenv.Info, error) { return pyenv.Info{}, os.ErrNotExist }

func (f *fakeEnvs) Collect(func() (map[string]bool, error), bool) []string { return nil }

// pythonLister records the interpreter each listing ran with.
type pythonLister struct{ pythons []string }

func (l *pythonLister) List(_ context.Context, p scrapy.Project) ([]string, error) {
	l.pythons = append(l.pythons, p.Python)
	return []string{"greet"}, nil
}

// orderedUpload is an addversion.json body with its parts in the order
// given (name, then content; "egg" and "wheels" as file parts).
func orderedUpload(parts ...string) (io.Reader, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i < len(parts); i += 2 {
		switch parts[i] {
		case "egg", "wheels", "requirements":
			fw, _ := mw.CreateFormFile(parts[i], parts[i]+".bin")
			fw.Write([]byte(parts[i+1]))
		default:
			mw.WriteField(parts[i], parts[i+1])
		}
	}
	mw.Close()
	return &buf, mw.FormDataContentType()
}

// TestAddVersionWithDependencies: the requirements and wheels parts reach
// the environment store whatever their place in the body (a wheelhouse
// before the project too), the listing runs the environment's python, the
// version records its environment, the staged wheelhouse is gone after the
// answer, and the answer has Scrapyd's keys only.
func TestAddVersionWithDependencies(t *testing.T) {
	h := newHarness(t, "")
	envs := &fakeEnvs{dir: t.TempDir()}
	lister := &pythonLister{}
	h.svc.Envs, h.svc.Install = envs, func(*config.Config) pyenv.Install { return pyenv.Install{} }
	h.svc.Lister = func(*config.Config) service.Lister { return lister }
	body, ct := orderedUpload("wheels", "WHEELS-ZIP", "project", "greet", "version", "1", "egg", string(testEgg(t, "greetbot.settings")),
		"requirements", "greeter==1.0\n", "wheels", "a second wheelhouse is ignored")
	req := httptest.NewRequest("POST", "/addversion.json", body)
	req.Header.Set("Content-Type", ct)
	resp, err := h.app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if want := `{"project": "greet", "version": "1", "spiders": 1, "status": "ok", "node_name": "vm"}` + "\n"; string(got) != want {
		t.Fatalf("answer %s, want %s", got, want)
	}
	if string(envs.spec.Requirements) != "greeter==1.0\n" || string(envs.wheels) != "WHEELS-ZIP" {
		t.Errorf("Ensure saw requirements %q and wheels %q", envs.spec.Requirements, envs.wheels)
	}
	if len(lister.pythons) != 1 || lister.pythons[0] != "/envs/e1/bin/python" {
		t.Errorf("scrapy list ran with %q, want the environment's python", lister.pythons)
	}
	if v, err := h.svc.Eggs.Find("greet", "1"); err != nil || v.Env != "e1" {
		t.Errorf("stored version %+v (%v), want environment e1", v, err)
	}
	if left, _ := filepath.Glob(filepath.Join(envs.dir, "*")); len(left) != 0 {
		t.Errorf("staged wheelhouses left: %v", left)
	}

	// A failed install: refused with pip's message, nothing stored.
	envs.fail = true
	body, ct = orderedUpload("project", "greet", "version", "2", "egg", string(testEgg(t, "greetbot.settings")), "requirements", "greeter==1.0\n")
	req = httptest.NewRequest("POST", "/addversion.json", body)
	req.Header.Set("Content-Type", ct)
	resp, _ = h.app.Test(req, -1)
	got, _ = io.ReadAll(resp.Body)
	want := `{"status": "error", "message": "the requirements could not be installed: pip install failed: ERROR: No matching distribution found for greeter==1.0", "node_name": "vm"}` + "\n"
	if string(got) != want {
		t.Errorf("failed install: %s, want %s", got, want)
	}
	if vs, _ := h.svc.Eggs.Versions("greet"); len(vs) != 1 {
		t.Errorf("versions after a failed install: %v", vs)
	}
}
