package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/client"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapycfg"
	"github.com/urfave/cli/v2"
)

func deployCommand() *cli.Command {
	return &cli.Command{
		Name:  "deploy",
		Usage: "build the project's egg and upload it to a deploy target (scrapyd-deploy)",
		Description: "Targets are the [deploy] and [deploy:NAME] sections of scrapy.cfg. The egg is built\n" +
			"by the project's setup.py when it has one, else without setuptools from [settings] default.\n" +
			"--version GIT or HG names the version after the project's repository; the default is the\n" +
			"current unix time. --url uploads to that server instead of a target (the project is then\n" +
			"-p, or [deploy] project). Unlike scrapyd-deploy, a refused upload exits non-zero and prints\n" +
			"the server's message once, on stderr; an accepted one prints the server's answer on stdout.\n" +
			"The project's requirements.txt (or the file [deploy] requirements names) is sent with the egg:\n" +
			"the server installs it into the version's own Python environment. --wheels builds the wheels\n" +
			"here (PYTHON -m pip wheel) and sends them too, for a server without a package index.\n\n" +
			exitStatusHelp,
		ArgsUsage: "[TARGET]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Usage: "upload to the server at `URL` instead of a target"},
			&cli.StringFlag{Name: "username", Aliases: []string{"u"}, Usage: "HTTP Basic user (instead of the target's)", EnvVars: []string{"SCRAPYD_USERNAME"}},
			&cli.StringFlag{Name: "password", Usage: "HTTP Basic password (instead of the target's)", EnvVars: []string{"SCRAPYD_PASSWORD"}},
			&cli.StringFlag{Name: "project", Aliases: []string{"p"}, Usage: "the `PROJECT` name on the server (default: the target's)"},
			&cli.StringFlag{Name: "version", Aliases: []string{"v"}, Usage: "`VERSION` to upload, or GIT or HG"},
			&cli.BoolFlag{Name: "list-targets", Aliases: []string{"l"}, Usage: "list the targets"},
			&cli.StringFlag{Name: "list-projects", Aliases: []string{"L"}, Usage: "list the projects on `TARGET`"},
			&cli.BoolFlag{Name: "all-targets", Aliases: []string{"a"}, Usage: "deploy to every target"},
			&cli.StringFlag{Name: "egg", Usage: "upload `FILE` instead of building an egg"},
			&cli.StringFlag{Name: "build-egg", Usage: "only build the egg, into `FILE`"},
			&cli.StringFlag{Name: "python", Value: defaultPython, Usage: "the `PYTHON` that runs a project's setup.py and pip wheel"},
			&cli.BoolFlag{Name: "wheels", Usage: "build the requirements' wheels here (pip wheel) and send them with the egg"},
			&cli.BoolFlag{Name: "no-requirements", Usage: "do not send the project's requirements"},
		},
		Action: deploy,
	}
}

func deploy(cCtx *cli.Context) error {
	ctx, stdout, stderr := cCtx.Context, cCtx.App.Writer, cCtx.App.ErrWriter
	cfg, dir, cfgErr := loadConfig()
	if cfgErr != nil && !errors.Is(cfgErr, scrapycfg.ErrNoProject) {
		return cfgErr
	}
	if cCtx.NArg() > 1 {
		return usagef("deploy: too many arguments: %v", cCtx.Args().Slice())
	}
	switch {
	case cCtx.Bool("list-targets"):
		for _, t := range cfg.Targets() {
			fmt.Fprintf(stdout, "%-20s %s\n", t.Name, t.URL)
		}
		return nil
	case cCtx.IsSet("list-projects"):
		return listProjects(ctx, cfg, cCtx.String("list-projects"), stdout)
	}

	egg := lazyEgg(func() ([]byte, error) {
		if f := cCtx.String("egg"); f != "" {
			fmt.Fprintf(stderr, "Using egg: %s\n", f)
			return os.ReadFile(f)
		}
		if cfgErr != nil {
			return nil, cfgErr // building needs the project
		}
		return buildEgg(ctx, dir, cfg, cCtx.String("python"))
	})
	if out := cCtx.String("build-egg"); out != "" {
		b, err := egg()
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "Writing egg to %s\n", out)
		return os.WriteFile(out, b, 0o644)
	}

	targets, err := deployTargets(cCtx, cfg)
	if err != nil {
		return err
	}
	// One version for all targets, from the first, as scrapyd-deploy -a does.
	v := cCtx.String("version")
	if v == "" {
		v = targets[0].Version
	}
	version, err := deployVersion(ctx, dir, v, time.Now())
	if err != nil {
		return err
	}
	var deps client.Deps
	if !cCtx.Bool("no-requirements") {
		req, err := requirementsFile(dir, cfg)
		if err != nil {
			return err
		}
		if req != "" {
			fmt.Fprintf(stderr, "Sending requirements: %s\n", req)
		}
		if deps, err = deployDeps(ctx, req, cCtx.String("python"), cCtx.Bool("wheels")); err != nil {
			return err
		}
	}
	var errs []error
	for _, t := range targets {
		project := cCtx.String("project")
		if project == "" {
			project = t.Project
		}
		if project == "" {
			errs = append(errs, fmt.Errorf("target %s: missing project (give -p PROJECT or set project in scrapy.cfg)", t.Name))
			continue
		}
		if err := deployTo(ctx, t, project, version, egg, deps, stdout, stderr); err != nil {
			errs = append(errs, fmt.Errorf("target %s: %w", t.Name, err))
		}
	}
	return errors.Join(errs...)
}

// deployTargets are the targets to upload to: every target with -a, the
// server --url names, or the target named by the argument ("default").
// The credential flags override the targets' own.
func deployTargets(cCtx *cli.Context, cfg *scrapycfg.Config) ([]scrapycfg.Target, error) {
	var targets []scrapycfg.Target
	url, name := cCtx.String("url"), cCtx.Args().First()
	switch {
	case url != "" && (name != "" || cCtx.Bool("all-targets")):
		return nil, usagef("deploy: give either --url or a target, not both")
	case url != "":
		// [deploy] project still names the project: the same scrapy.cfg
		// then deploys to a test server and to production alike.
		project, _ := cfg.Get("deploy", "project")
		targets = []scrapycfg.Target{{Name: url, URL: url, Project: scrapycfg.ExpandEnv(project)}}
	case cCtx.Bool("all-targets"):
		targets = cfg.Targets()
		if len(targets) == 0 {
			return nil, errors.New("deploy: scrapy.cfg has no deploy targets")
		}
	default:
		if name == "" {
			name = "default"
		}
		t, err := cfg.Target(name)
		if err != nil {
			return nil, err
		}
		targets = []scrapycfg.Target{t}
	}
	if cCtx.IsSet("username") || cCtx.IsSet("password") {
		for i := range targets {
			targets[i].Username, targets[i].Password = cCtx.String("username"), cCtx.String("password")
		}
	}
	return targets, nil
}

// lazyEgg builds the egg on first use only: listing needs none, and -a
// uploads the same bytes everywhere.
func lazyEgg(build func() ([]byte, error)) func() ([]byte, error) {
	var (
		egg  []byte
		err  error
		done bool
	)
	return func() ([]byte, error) {
		if !done {
			egg, err = build()
			done = true
		}
		return egg, err
	}
}

func listProjects(ctx context.Context, cfg *scrapycfg.Config, name string, w io.Writer) error {
	t, err := cfg.Target(name)
	if err != nil {
		return err
	}
	c, err := newClient(t, nil)
	if err != nil {
		return err
	}
	projects, err := c.ListProjects(ctx)
	if err != nil {
		return err
	}
	lines(w, projects)
	return nil
}

// deployTo uploads the egg to one target. An accepted upload's answer is
// printed as it came, like scrapyd-deploy; a refusal is only returned, so
// that the server's message (often a traceback) is printed once, by main.
func deployTo(ctx context.Context, t scrapycfg.Target, project, version string, egg func() ([]byte, error), deps client.Deps, stdout, stderr io.Writer) error {
	if t.URL == "" {
		return errors.New("no url in scrapy.cfg")
	}
	var answer []byte
	c, err := newClient(t, func(b []byte) { answer = b })
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "Packing version %s\n", version)
	b, err := egg()
	if err != nil {
		return err
	}
	p := &progress{w: stderr, total: int64(len(b)), label: fmt.Sprintf("Deploying to project %q in %saddversion.json", project, c.URL()), tty: isTerminal(stderr)}
	_, err = c.AddVersionWith(ctx, project, version, p.reader(bytes.NewReader(b)), int64(len(b)), deps)
	p.finish()
	if err == nil && answer != nil {
		stdout.Write(answer)
		if !bytes.HasSuffix(answer, []byte("\n")) {
			io.WriteString(stdout, "\n")
		}
	}
	return err
}

// progress shows an upload's progress on one line of stderr: redrawn on a
// terminal, written once at the end otherwise (logs get no \r clutter).
type progress struct {
	w     io.Writer
	label string
	total int64
	sent  int64
	shown int // last percentage drawn
	tty   bool
}

func (p *progress) reader(r io.Reader) io.Reader { return &progressReader{r: r, p: p} }

type progressReader struct {
	r io.Reader
	p *progress
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.p.add(int64(n))
	return n, err
}

func (p *progress) add(n int64) {
	p.sent += n
	if pct := p.percent(); p.tty && pct != p.shown {
		p.shown = pct
		fmt.Fprintf(p.w, "\r%s: %3d%% of %s", p.label, pct, size(p.total))
	}
}

func (p *progress) percent() int {
	if p.total == 0 {
		return 100
	}
	return int(p.sent * 100 / p.total)
}

func (p *progress) finish() {
	if p.tty {
		fmt.Fprintf(p.w, "\r%s: %3d%% of %s\n", p.label, p.percent(), size(p.total))
		return
	}
	fmt.Fprintf(p.w, "%s: %d%% of %s\n", p.label, p.percent(), size(p.total))
}

func size(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/1024)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
