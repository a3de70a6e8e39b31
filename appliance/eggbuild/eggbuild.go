// Package eggbuild builds a Scrapy project's egg in Go, without setuptools:
// the project's top-level package (the one holding its settings module),
// its package data, and the EGG-INFO metadata Scrapyd's runner and ours read.
// The same input always gives the same bytes.
package eggbuild

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Options says what to build.
type Options struct {
	Dir      string // the project directory (where scrapy.cfg is)
	Settings string // the settings module, e.g. "sample.settings"
	Name     string // distribution name in PKG-INFO; default "project" as scrapyd-deploy's template
	Version  string // distribution version in PKG-INFO; default "1.0"
}

// fixedTime makes builds reproducible: zip cannot store dates before 1980.
var fixedTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// Build returns the egg's bytes.
func Build(o Options) ([]byte, error) {
	if o.Name == "" {
		o.Name = "project"
	}
	if o.Version == "" {
		o.Version = "1.0"
	}
	if strings.ContainsAny(o.Name+o.Version, "\r\n") {
		return nil, fmt.Errorf("eggbuild: name and version must be one line: %q %q", o.Name, o.Version)
	}
	top, _, _ := strings.Cut(o.Settings, ".")
	if top == "" || strings.ContainsAny(o.Settings, `/\`) || !strings.Contains(o.Settings, ".") {
		return nil, fmt.Errorf("eggbuild: settings module %q names no module inside a package", o.Settings)
	}
	pkgDir := filepath.Join(o.Dir, top)
	if _, err := os.Stat(filepath.Join(pkgDir, "__init__.py")); err != nil {
		return nil, fmt.Errorf("eggbuild: %s is not a Python package: %w", pkgDir, err)
	}
	if err := checkModule(o.Dir, o.Settings); err != nil {
		return nil, err
	}
	files, err := packageFiles(o.Dir, pkgDir)
	if err != nil {
		return nil, err
	}
	sources := append([]string(nil), files...)
	meta := map[string]string{
		"PKG-INFO":             fmt.Sprintf("Metadata-Version: 2.1\nName: %s\nVersion: %s\n", o.Name, o.Version),
		"SOURCES.txt":          strings.Join(sources, "\n") + "\n",
		"dependency_links.txt": "\n",
		"entry_points.txt":     fmt.Sprintf("[scrapy]\nsettings = %s\n\n", o.Settings),
		"top_level.txt":        top + "\n",
		"zip-safe":             "\n",
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name string, data []byte) error {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: fixedTime}
		// A fixed mode, so that the bytes do not depend on the builder's umask.
		h.SetMode(0o644)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	for _, rel := range files {
		data, err := os.ReadFile(filepath.Join(o.Dir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("eggbuild: %w", err)
		}
		if err := add(rel, data); err != nil {
			return nil, fmt.Errorf("eggbuild: %w", err)
		}
	}
	names := make([]string, 0, len(meta))
	for n := range meta {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := add(path.Join("EGG-INFO", n), []byte(meta[n])); err != nil {
			return nil, fmt.Errorf("eggbuild: %w", err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("eggbuild: %w", err)
	}
	return buf.Bytes(), nil
}

// checkModule fails early when the settings module is missing: an egg
// without it uploads fine but every crawl of it fails.
func checkModule(dir, module string) error {
	rel := filepath.Join(strings.Split(module, ".")...)
	for _, p := range []string{rel + ".py", filepath.Join(rel, "__init__.py")} {
		if st, err := os.Stat(filepath.Join(dir, p)); err == nil && st.Mode().IsRegular() {
			return nil
		}
	}
	return fmt.Errorf("eggbuild: settings module %s not found (no %s.py in %s)", module, rel, dir)
}

// packageFiles lists the package's files relative to dir, slash-separated and
// sorted: modules and package data alike, as pkgutil.get_data needs the
// latter. Byte-code caches are left out: Python rebuilds them, and they
// would make the egg depend on who last ran the project. So are hidden
// files (editor and VCS state). A symlink to a file counts as the file.
func packageFiles(dir, pkgDir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(pkgDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "__pycache__" || strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".pyc") || strings.HasSuffix(p, ".pyo") || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			return nil // a dangling link, a socket, a fifo: nothing to pack
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("eggbuild: %w", err)
	}
	sort.Strings(files)
	return files, nil
}
