package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/scrapyd-debian/scrapyd/appliance/eggbuild"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapycfg"
)

// defaultPython is Debian's interpreter, the one python3-scrapy and
// python3-setuptools are installed for; a python3 earlier on PATH may be
// another build without them.
const defaultPython = "/usr/bin/python3"

// buildEgg builds the project's egg: with the project's own setup.py when
// it has one (it may declare package data or dependencies we cannot read),
// else in Go, without setuptools, from [settings] default.
func buildEgg(ctx context.Context, dir string, cfg *scrapycfg.Config, python string) ([]byte, error) {
	if _, err := os.Stat(filepath.Join(dir, "setup.py")); err == nil {
		return setupPyEgg(ctx, dir, python)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	settings, err := cfg.Settings()
	if err != nil {
		return nil, err
	}
	return eggbuild.Build(eggbuild.Options{Dir: dir, Settings: settings})
}

// setupPyEgg runs `setup.py clean -a bdist_egg` as scrapyd-deploy does and
// returns the egg it wrote.
func setupPyEgg(ctx context.Context, dir, python string) ([]byte, error) {
	out, err := os.MkdirTemp("", "scrapydctl-egg-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	cmd := exec.CommandContext(ctx, python, "setup.py", "clean", "-a", "bdist_egg", "-d", out)
	cmd.Dir = dir
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s setup.py bdist_egg: %v\n%s", python, err, tail(log.String(), 20))
	}
	eggs, err := filepath.Glob(filepath.Join(out, "*.egg"))
	if err != nil || len(eggs) == 0 {
		return nil, fmt.Errorf("%s setup.py bdist_egg wrote no egg\n%s", python, tail(log.String(), 20))
	}
	sort.Strings(eggs)
	return os.ReadFile(eggs[0])
}

// tail returns the last n lines of s: where setup.py says what went wrong.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
