// Package egg checks, stores and orders uploaded project eggs, laid out as
// Scrapyd lays them out (eggs_dir/<project>/<sanitized version>.egg) so that
// an existing Scrapyd eggs directory is taken over as it is.
package egg

import (
	"archive/zip"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrNotZip is Scrapyd's check that the upload is a zip at all.
var ErrNotZip = errors.New("egg is not a ZIP file (if using curl, use egg=@path not egg=path)")

// ErrNoEntryPoint: without `[scrapy] settings` in EGG-INFO/entry_points.txt
// Scrapyd's runner crashes with an AttributeError; we say what is missing.
var ErrNoEntryPoint = errors.New("egg has no [scrapy] settings entry point in EGG-INFO/entry_points.txt")

// maxEntryPointsSize bounds what we read of entry_points.txt, so that a
// crafted egg cannot make the daemon inflate gigabytes.
const maxEntryPointsSize = 1 << 20

// SettingsModule returns the settings module an egg names in its
// `[scrapy] settings` entry point, or an error saying why it is not an egg.
func SettingsModule(data []byte) (string, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return "", ErrNotZip
	}
	return settingsModule(zr)
}

// SettingsModuleOf is SettingsModule for a stored egg: only the zip's
// directory and entry_points.txt are read, not the whole egg, so starting a
// crawl costs no more for a large project.
func SettingsModuleOf(path string) (string, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		if _, statErr := os.Stat(path); statErr != nil {
			return "", statErr
		}
		return "", ErrNotZip
	}
	defer zr.Close()
	return settingsModule(&zr.Reader)
}

func settingsModule(zr *zip.Reader) (string, error) {
	for _, f := range zr.File {
		if f.Name != "EGG-INFO/entry_points.txt" {
			continue
		}
		if f.UncompressedSize64 > maxEntryPointsSize {
			return "", fmt.Errorf("%w (entry_points.txt is %d bytes)", ErrNoEntryPoint, f.UncompressedSize64)
		}
		rc, err := f.Open()
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrNoEntryPoint, err)
		}
		defer rc.Close()
		return parseEntryPoints(bufio.NewScanner(rc))
	}
	return "", ErrNoEntryPoint
}

// parseEntryPoints finds `settings = module[:attr]` in the [scrapy] section.
func parseEntryPoints(sc *bufio.Scanner) (string, error) {
	section := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section != "scrapy" || strings.TrimSpace(k) != "settings" {
			continue
		}
		mod, _, _ := strings.Cut(strings.TrimSpace(v), ":")
		mod = strings.TrimSpace(mod)
		if !validModule(mod) {
			return "", fmt.Errorf("%w (%q is not a module name)", ErrNoEntryPoint, mod)
		}
		return mod, nil
	}
	return "", ErrNoEntryPoint
}

func validModule(m string) bool {
	if m == "" {
		return false
	}
	for _, part := range strings.Split(m, ".") {
		if part == "" {
			return false
		}
		for i, r := range part {
			if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
				return false
			}
		}
	}
	return true
}
