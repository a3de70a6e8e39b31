package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// scrapydctl runs the CLI in-process and returns its output.
func scrapydctl(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = run(context.Background(), append([]string{"scrapydctl"}, args...), &out, &errb)
	return out.String(), errb.String(), err
}

// copyProject copies the sample project into a temp dir, so that tests can
// add a scrapy.cfg target, a setup.py or a repository to it.
func copyProject(t *testing.T) string {
	t.Helper()
	src, dst := testkit.SampleProject(), t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "__pycache__" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sh runs a command in dir and fails the test if it fails.
func sh(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HGPLAIN=1", "HGUSER=test <test@example.net>",
		"GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.net",
		"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.net")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// needTool skips a test when a program is missing, except in CI, where
// packaging/test-deps.sh must have installed it.
func needTool(t *testing.T, name string, args ...string) {
	t.Helper()
	if err := exec.Command(name, args...).Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s %v: %v (run packaging/test-deps.sh)", name, args, err)
		}
		t.Skipf("%s %v: %v (install it, see packaging/test-deps.sh)", name, args, err)
	}
}
