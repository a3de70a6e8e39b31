package eggbuild_test

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/eggbuild"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// project writes files (path → content) under a temp dir and returns it.
func project(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func unzip(t *testing.T, egg []byte) map[string]string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(egg), int64(len(egg)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name] = string(b)
	}
	return out
}

func TestContents(t *testing.T) {
	dir := project(t, map[string]string{
		"scrapy.cfg":                     "[settings]\ndefault = shop.settings\n",
		"setup.cfg":                      "",
		"local_settings.py":              "LOCAL = 1\n",
		"other/__init__.py":              "",
		"shop/__init__.py":               "",
		"shop/settings.py":               "BOT_NAME = 'shop'\n",
		"shop/spiders/__init__.py":       "",
		"shop/spiders/a.py":              "# spider\n",
		"shop/data/prices.csv":           "sku,price\n",
		"shop/__pycache__/settings.pyc":  "bytecode",
		"shop/spiders/a.pyc":             "bytecode",
		"shop/.hidden":                   "x",
		"shop/.git/config":               "x",
		"shop/spiders/__pycache__/a.pyc": "bytecode",
	})
	egg, err := eggbuild.Build(eggbuild.Options{Dir: dir, Settings: "shop.settings"})
	if err != nil {
		t.Fatal(err)
	}
	got := unzip(t, egg)
	sources := "shop/__init__.py\nshop/data/prices.csv\nshop/settings.py\nshop/spiders/__init__.py\nshop/spiders/a.py\n"
	want := map[string]string{
		"shop/__init__.py":              "",
		"shop/data/prices.csv":          "sku,price\n",
		"shop/settings.py":              "BOT_NAME = 'shop'\n",
		"shop/spiders/__init__.py":      "",
		"shop/spiders/a.py":             "# spider\n",
		"EGG-INFO/PKG-INFO":             "Metadata-Version: 2.1\nName: project\nVersion: 1.0\n",
		"EGG-INFO/SOURCES.txt":          sources,
		"EGG-INFO/dependency_links.txt": "\n",
		"EGG-INFO/entry_points.txt":     "[scrapy]\nsettings = shop.settings\n\n",
		"EGG-INFO/top_level.txt":        "shop\n",
		"EGG-INFO/zip-safe":             "\n",
	}
	if !reflect.DeepEqual(got, want) {
		for name := range got {
			if _, ok := want[name]; !ok {
				t.Errorf("unexpected entry %s", name)
			}
		}
		for name, content := range want {
			if got[name] != content {
				t.Errorf("%s = %q, want %q", name, got[name], content)
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	files := map[string]string{
		"p/__init__.py": "", "p/settings.py": "X = 1\n", "p/spiders/__init__.py": "", "p/spiders/s.py": "# s\n",
	}
	dirA, dirB := project(t, files), project(t, files)
	// Different modification times and directory must not change a byte.
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(dirB, "p", "settings.py"), old, old); err != nil {
		t.Fatal(err)
	}
	a, err := eggbuild.Build(eggbuild.Options{Dir: dirA, Settings: "p.settings"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := eggbuild.Build(eggbuild.Options{Dir: dirB, Settings: "p.settings"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := eggbuild.Build(eggbuild.Options{Dir: dirA, Settings: "p.settings"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || !bytes.Equal(a, again) {
		t.Fatal("the same project built twice gave different bytes")
	}
	if err := os.WriteFile(filepath.Join(dirB, "p", "spiders", "s.py"), []byte("# changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, err := eggbuild.Build(eggbuild.Options{Dir: dirB, Settings: "p.settings"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, changed) {
		t.Fatal("a changed source gave the same egg")
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		settings string
		want     string
	}{
		{"no package", map[string]string{"p/settings.py": ""}, "p.settings", "is not a Python package"},
		{"no settings module", map[string]string{"p/__init__.py": ""}, "p.settings", "settings module p.settings not found"},
		{"settings outside a package", map[string]string{"settings.py": ""}, "settings", "names no module inside a package"},
		{"path in module", map[string]string{"p/__init__.py": ""}, "../p.settings", "names no module inside a package"},
		{"empty", map[string]string{"p/__init__.py": ""}, "", "names no module inside a package"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := eggbuild.Build(eggbuild.Options{Dir: project(t, tt.files), Settings: tt.settings})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestSampleEggRunsInScrapy runs real Scrapy on the Go-built egg, the way a
// daemon can run it without pkg_resources: the egg on PYTHONPATH and the
// settings module from its entry point.
func TestSampleEggRunsInScrapy(t *testing.T) {
	testkit.RequireScrapy(t)
	egg, err := eggbuild.Build(eggbuild.Options{Dir: testkit.SampleProject(), Settings: "sample.settings"})
	if err != nil {
		t.Fatal(err)
	}
	// An empty working directory: Scrapy must find everything in the egg,
	// and nothing (no scrapy.cfg, no local_settings.py) beside it.
	work := t.TempDir()
	eggPath := filepath.Join(work, "sample.egg")
	if err := os.WriteFile(eggPath, egg, 0o644); err != nil {
		t.Fatal(err)
	}
	scrapy := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(testkit.Python, append([]string{"-m", "scrapy"}, args...)...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "PYTHONPATH="+eggPath, "SCRAPY_SETTINGS_MODULE=sample.settings")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("scrapy %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if got, want := scrapy("list"), "catalog\nfailing\nparams\nslow\n"; got != want {
		t.Errorf("scrapy list = %q, want %q", got, want)
	}
	scrapy("crawl", "params", "-a", "limit=2", "-O", "items.jl", "-s", "LOG_LEVEL=WARNING")
	items, err := os.ReadFile(filepath.Join(work, "items.jl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(items)), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 items, got %q", items)
	}
	for _, l := range lines {
		if !strings.Contains(l, `"package_data": "greetings-from-package-data"`) ||
			!strings.Contains(l, `"greeting": "hello-from-settings"`) {
			t.Errorf("item %s lacks the package data or the egg's settings", l)
		}
	}
}
