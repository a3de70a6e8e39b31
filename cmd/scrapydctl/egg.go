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
	b := pythonBuild{what: "setup.py bdist_egg", args: []string{"setup.py", "clean", "-a", "bdist_egg", "-d"}, glob: "*.egg", noun: "egg"}
	return b.run(ctx, python, dir, func(eggs []string) ([]byte, error) { return os.ReadFile(eggs[0]) })
}

// pythonBuild is a Python command that writes files into a directory
// given as its last argument.
type pythonBuild struct {
	what string   // the command in messages ("setup.py bdist_egg")
	args []string // python's arguments, but the directory
	glob string   // the files it writes ("*.egg")
	noun string   // one of them in messages ("egg")
}

// run runs b in dir with a fresh temporary directory, and returns what
// read makes of the files written there (sorted, at least one). A failure
// quotes the end of the command's output, where Python says what went
// wrong.
func (b pythonBuild) run(ctx context.Context, python, dir string, read func(files []string) ([]byte, error)) ([]byte, error) {
	out, err := os.MkdirTemp("", "scrapydctl-"+b.noun+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	cmd := exec.CommandContext(ctx, python, append(b.args, out)...)
	cmd.Dir = dir
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %v\n%s", python, b.what, err, tail(log.String(), 20))
	}
	files, err := filepath.Glob(filepath.Join(out, b.glob))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("%s %s wrote no %s\n%s", python, b.what, b.noun, tail(log.String(), 20))
	}
	sort.Strings(files)
	return read(files)
}

// tail returns the last n lines of s: where setup.py says what went wrong.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
