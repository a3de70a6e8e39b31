package egg

import (
	"archive/zip"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func zipOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	zw.Close()
	return buf.Bytes()
}

func TestSettingsModule(t *testing.T) {
	for _, tc := range []struct {
		name    string
		data    []byte
		want    string
		wantErr error
	}{
		{"egg", zipOf(t, map[string]string{"EGG-INFO/entry_points.txt": "[scrapy]\nsettings = mybot.settings\n"}), "mybot.settings", nil},
		{"attr form", zipOf(t, map[string]string{"EGG-INFO/entry_points.txt": "[console]\nx = y\n[scrapy]\nsettings=bot.settings:obj\n"}), "bot.settings", nil},
		{"not a zip", []byte("random bytes"), "", ErrNotZip},
		{"zip without entry points", zipOf(t, map[string]string{"index.html": "<html>"}), "", ErrNoEntryPoint},
		{"other section only", zipOf(t, map[string]string{"EGG-INFO/entry_points.txt": "[other]\nsettings = a.b\n"}), "", ErrNoEntryPoint},
		{"not a module", zipOf(t, map[string]string{"EGG-INFO/entry_points.txt": "[scrapy]\nsettings = ../evil\n"}), "", ErrNoEntryPoint},
	} {
		got, err := SettingsModule(tc.data)
		if got != tc.want || !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: SettingsModule = %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestEggAtScrapydsPath: a version is the file Scrapyd would have written
// (the rest of the store's behaviour is the contract, eggtest).
func TestEggAtScrapydsPath(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	st, err := s.Stage("p", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit("1.0"); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Find("p", "1.0"); err != nil || v.Path != filepath.Join(s.Dir, "p", "1_0.egg") {
		t.Fatalf("1.0 = %+v, %v; want the egg at p/1_0.egg", v, err)
	}
}

func TestAbortedUploadLeavesNothing(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	st, err := s.Stage("p", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	if ps, _ := s.Projects(); len(ps) != 0 {
		t.Fatalf("a staged upload must not show as a project: %q", ps)
	}
	st.Abort()
	s.CleanStaging()
	ents, _ := os.ReadDir(s.Dir)
	if len(ents) != 0 {
		t.Fatalf("eggs_dir not empty after an aborted upload: %v", ents)
	}
}

func TestExistingScrapydEggsDirWorksAsIs(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	os.MkdirAll(filepath.Join(s.Dir, "old"), 0o755)
	os.WriteFile(filepath.Join(s.Dir, "old", "1_1.egg"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(s.Dir, "old", "1_0.egg"), []byte("x"), 0o644)
	vs, _ := s.Versions("old")
	if len(vs) != 2 || vs[0].Name != "1_0" || vs[1].Name != "1_1" {
		t.Fatalf("versions of a Scrapyd eggs dir = %+v", vs)
	}
}

// FuzzSettingsModule: any upload, zip or not, gives a module name or an
// error, never a panic; a name it gives is a dotted Python identifier.
func FuzzSettingsModule(f *testing.F) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("EGG-INFO/entry_points.txt")
	w.Write([]byte("[scrapy]\nsettings = sample.settings\n"))
	zw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte("PK\x03\x04 not really"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		mod, err := SettingsModule(data)
		if err == nil && !validModule(mod) {
			t.Fatalf("accepted settings module %q", mod)
		}
	})
}

func TestSettingsModuleOfAStoredEgg(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.egg")
	os.WriteFile(good, zipOf(t, map[string]string{"EGG-INFO/entry_points.txt": "[scrapy]\nsettings = mybot.settings\n"}), 0o644)
	bad := filepath.Join(dir, "bad.egg")
	os.WriteFile(bad, []byte("not a zip"), 0o644)
	if mod, err := SettingsModuleOf(good); mod != "mybot.settings" || err != nil {
		t.Errorf("SettingsModuleOf(good) = %q, %v", mod, err)
	}
	if _, err := SettingsModuleOf(bad); !errors.Is(err, ErrNotZip) {
		t.Errorf("SettingsModuleOf(not a zip) = %v, want ErrNotZip", err)
	}
	if _, err := SettingsModuleOf(filepath.Join(dir, "missing.egg")); !os.IsNotExist(err) {
		t.Errorf("SettingsModuleOf(missing) = %v, want not-exist", err)
	}
}
