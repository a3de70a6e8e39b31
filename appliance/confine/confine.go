// Package confine runs one short command of uploaded code to its end and
// returns what it printed: `scrapy list`, and the install of a Python
// environment (whose packages' setup.py is uploaded code too). It runs as
// the crawl user, and through the launcher where one confines (a transient
// unit with the crawl's sandbox), else as a child of the daemon.
package confine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/scrapyd-debian/scrapyd/appliance/launch"
)

// Runner runs commands; the zero value runs them as children of the
// daemon, as the daemon's user.
type Runner struct {
	// Credential, when set, runs a child as that user: uploaded code never
	// runs as root.
	Credential *syscall.Credential
	// Launcher, when set, runs the command as a crawl is run (a transient
	// unit, confined by its Sandbox and Limits) instead of as a child.
	// Output goes through files in OutputDir, which the launcher opens.
	Launcher  launch.Launcher
	OutputDir string
}

// Run runs cmd until it ends or ctx does (then it is killed, with every
// process it started). cmd.Job is a prefix of the run's name; cmd.Stdout
// and cmd.Stderr are ignored: the output is returned. err is non-nil when
// the command did not exit with status 0.
func (r Runner) Run(ctx context.Context, cmd launch.Command) (stdout, stderr string, err error) {
	if r.Launcher != nil {
		return r.runLaunched(ctx, cmd)
	}
	return r.runChild(ctx, cmd)
}

// runChild runs the command as a child process of the daemon, in its own
// process group so that a timeout kills what it started too (pip's build
// of an sdist runs setup.py in a grandchild). A root daemon also gives a
// NoNetwork command a network namespace of its own: loopback only.
func (r Runner) runChild(ctx context.Context, c launch.Command) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.Env = c.Env
	cmd.Dir = c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.Credential, Setpgid: true}
	if c.Sandbox.NoNetwork && os.Geteuid() == 0 {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = launch.StartError(c.Dir, cmd.Run())
	return out.String(), errOut.String(), err
}

// runLaunched runs the command through the launcher, under its sandbox.
func (r Runner) runLaunched(ctx context.Context, c launch.Command) (stdout, stderr string, err error) {
	id := make([]byte, 12)
	rand.Read(id)
	c.Job += "-" + hex.EncodeToString(id)
	if err := os.MkdirAll(r.OutputDir, 0o700); err != nil {
		return "", "", err
	}
	c.Stdout, c.Stderr = filepath.Join(r.OutputDir, c.Job+".out"), filepath.Join(r.OutputDir, c.Job+".err")
	defer os.Remove(c.Stdout)
	defer os.Remove(c.Stderr)
	h, w, err := r.Launcher.Start(ctx, c)
	if err != nil {
		return "", "", err
	}
	select {
	case <-w.Done():
	case <-ctx.Done():
		r.Launcher.Signal(context.WithoutCancel(ctx), h, syscall.SIGKILL)
		<-w.Done()
	}
	out, _ := os.ReadFile(c.Stdout)
	errOut, _ := os.ReadFile(c.Stderr)
	if e := w.Exit(); !e.Known || e.Code == nil || *e.Code != 0 {
		err = errors.New(e.String())
		if ctx.Err() != nil {
			err = ctx.Err()
		}
	}
	return string(out), string(errOut), err
}
