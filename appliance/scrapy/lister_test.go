package scrapy

import (
	"context"
	"errors"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/launch"
)

// fakeLauncher runs a listing by writing its output files at once and
// ending with code, or (code < 0) by never ending until killed.
type fakeLauncher struct {
	stdout, stderr string
	code           int
	started        launch.Command
	killed         bool
	done           chan struct{}
}

type fakeWatch struct {
	done chan struct{}
	exit *launch.Exit
}

func (w fakeWatch) Done() <-chan struct{} { return w.done }
func (w fakeWatch) Exit() launch.Exit     { return *w.exit }

func (f *fakeLauncher) Name() string { return "fake" }
func (f *fakeLauncher) Start(_ context.Context, c launch.Command) (launch.Handle, launch.Watch, error) {
	f.started = c
	os.WriteFile(c.Stdout, []byte(f.stdout), 0o644)
	os.WriteFile(c.Stderr, []byte(f.stderr), 0o644)
	f.done = make(chan struct{})
	exit := &launch.Exit{Known: true}
	if f.code >= 0 {
		code := f.code
		exit.Code = &code
		close(f.done)
	} else {
		exit.Signal = syscall.SIGKILL
	}
	return launch.Handle{ID: "u"}, fakeWatch{f.done, exit}, nil
}
func (f *fakeLauncher) Recover(context.Context, launch.Handle) (launch.Watch, launch.Exit, error) {
	return nil, launch.Exit{}, launch.ErrGone
}
func (f *fakeLauncher) Signal(_ context.Context, _ launch.Handle, sig syscall.Signal) error {
	if sig == syscall.SIGKILL && !f.killed {
		f.killed = true
		close(f.done)
	}
	return nil
}
func (f *fakeLauncher) Running(context.Context) ([]launch.Handle, error) { return nil, nil }
func (f *fakeLauncher) Planned(string) (launch.Handle, bool)             { return launch.Handle{}, false }

// TestListThroughALauncher: a confined listing sees its own egg, reads its
// names from the output file, reports Scrapy's error output on failure and
// is killed at its deadline; its output files never stay behind.
func TestListThroughALauncher(t *testing.T) {
	out := t.TempDir()
	project := Project{Name: "p", Egg: "/eggs/p/1.egg", SettingsModule: "p.settings"}
	lister := func(f *fakeLauncher) Lister {
		return Lister{Python: "/usr/bin/python3", Dir: "/", Launcher: f, OutputDir: out,
			Sandbox: launch.Sandbox{Hidden: []string{"/eggs", "/dbs"}}, Timeout: 200 * time.Millisecond}
	}
	leftovers := func() {
		t.Helper()
		if ents, _ := os.ReadDir(out); len(ents) != 0 {
			t.Errorf("output files left behind: %v", ents)
		}
	}

	ok := &fakeLauncher{stdout: "quotes\nbooks\n", code: 0}
	names, err := lister(ok).List(t.Context(), project)
	if err != nil || !slices.Equal(names, []string{"quotes", "books"}) {
		t.Fatalf("List = %q, %v", names, err)
	}
	if sb := ok.started.Sandbox; !slices.Equal(sb.Exposed, []string{project.Egg}) || !slices.Equal(sb.Hidden, []string{"/eggs", "/dbs"}) {
		t.Errorf("sandbox %+v: want the egg exposed under the hidden egg store", sb)
	}
	if c := ok.started; !slices.Equal(c.Args, []string{"-m", "scrapy", "list", "-s", "LOG_STDOUT=0"}) || c.Spider != "" {
		t.Errorf("command %+v", c)
	}
	leftovers()

	failing := &fakeLauncher{stdout: "", stderr: "Traceback: ImportError: no module named x\n", code: 1}
	_, err = lister(failing).List(t.Context(), project)
	var re *RunnerError
	if !errors.As(err, &re) || re.Output != failing.stderr {
		t.Fatalf("a failing listing = %v, want a RunnerError with Scrapy's output", err)
	}
	leftovers()

	hanging := &fakeLauncher{code: -1}
	_, err = lister(hanging).List(t.Context(), project)
	if !errors.As(err, &re) || !hanging.killed {
		t.Fatalf("a hanging listing = %v (killed: %v), want a RunnerError after a kill", err, hanging.killed)
	}
	leftovers()
}
