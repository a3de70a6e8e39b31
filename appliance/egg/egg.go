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
	"io"
	"os"
	"strings"

	"github.com/scrapyd-debian/scrapyd/appliance/ziplimit"
)

// ErrNotZip is Scrapyd's check that the upload is a zip at all.
var ErrNotZip = errors.New("egg is not a ZIP file (if using curl, use egg=@path not egg=path)")

// ErrNoEntryPoint: without `[scrapy] settings` in EGG-INFO/entry_points.txt
// Scrapyd's runner crashes with an AttributeError; we say what is missing.
var ErrNoEntryPoint = errors.New("egg has no [scrapy] settings entry point in EGG-INFO/entry_points.txt")

// ErrTooManyFiles: the zip's directory is larger than any project's egg
// needs (see maxDirectorySize).
var ErrTooManyFiles = fmt.Errorf("egg has too many files (its zip directory is larger than %d MiB)", ziplimit.MaxDirectory>>20)

// maxEntryPointsSize bounds what we read of entry_points.txt, so that a
// crafted egg cannot make the daemon inflate gigabytes.
const maxEntryPointsSize = 1 << 20

// SettingsModule returns the settings module an egg names in its
// `[scrapy] settings` entry point, or an error saying why it is not an egg.
func SettingsModule(data []byte) (string, error) {
	zr, err := openZip(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return "", err
	}
	return settingsModule(zr)
}

// SettingsModuleOf is SettingsModule for a stored egg: only the zip's
// directory and entry_points.txt are read, not the whole egg, so starting a
// crawl costs no more for a large project.
func SettingsModuleOf(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	zr, err := openZip(f, fi.Size())
	if err != nil {
		return "", err
	}
	return settingsModule(zr)
}

// openZip reads a zip's directory, at most ziplimit.MaxDirectory of it.
func openZip(r io.ReaderAt, size int64) (*zip.Reader, error) {
	zr, err := ziplimit.Open(r, size)
	if errors.Is(err, ziplimit.ErrTooManyFiles) {
		return nil, ErrTooManyFiles
	}
	if err != nil {
		return nil, ErrNotZip
	}
	return zr, nil
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
