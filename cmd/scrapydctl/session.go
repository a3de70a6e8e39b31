package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/scrapyd-debian/scrapyd/appliance/client"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapycfg"
	"github.com/urfave/cli/v2"
)

// defaultURL is Scrapyd's own default, used when nothing names a server.
const defaultURL = "http://localhost:6800/"

// serverFlags address the server and authenticate; every command that
// talks to one has them, so they may follow the command's arguments.
func serverFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "target", Aliases: []string{"t"}, Usage: "deploy target `NAME` in scrapy.cfg"},
		&cli.StringFlag{Name: "url", Usage: "server `URL` (instead of a target)", EnvVars: []string{"SCRAPYD_URL"}},
		&cli.StringFlag{Name: "host", Aliases: []string{"H"}, Usage: "server `HOST` (instead of --url)"},
		&cli.IntFlag{Name: "port", Aliases: []string{"P"}, Usage: "server `PORT` with --host", Value: 6800},
		&cli.StringFlag{Name: "username", Aliases: []string{"u"}, Usage: "HTTP Basic user", EnvVars: []string{"SCRAPYD_USERNAME"}},
		&cli.StringFlag{Name: "password", Usage: "HTTP Basic password", EnvVars: []string{"SCRAPYD_PASSWORD"}},
	}
}

// jsonFlag makes a command print the server's raw JSON answer.
var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print the server's raw JSON answer (for scripts)"}

// withServer is the usual flag set: server flags plus --json.
func withServer(extra ...cli.Flag) []cli.Flag {
	return append(append(extra, serverFlags()...), jsonFlag)
}

// session is one command's connection and output.
type session struct {
	c      *client.Client
	out    io.Writer
	json   bool
	answer []byte // the last raw answer, printed instead of tables with --json
}

// serverAction wraps a command that talks to a server: it connects, runs
// fn, and with --json prints the last raw answer (an error answer too).
func serverAction(fn func(*cli.Context, *session) error) cli.ActionFunc {
	return func(cCtx *cli.Context) error {
		s := &session{out: cCtx.App.Writer, json: cCtx.Bool("json")}
		c, err := connect(cCtx, func(b []byte) { s.answer = b })
		if err != nil {
			return err
		}
		s.c = c
		err = fn(cCtx, s)
		if s.json && s.answer != nil {
			s.out.Write(s.answer)
			if len(s.answer) > 0 && s.answer[len(s.answer)-1] != '\n' {
				io.WriteString(s.out, "\n")
			}
		}
		return err
	}
}

// human runs print unless --json asked for the raw answer.
func (s *session) human(print func(w io.Writer)) {
	if !s.json {
		print(s.out)
	}
}

// table writes aligned columns, without the padding tabwriter leaves after
// empty last cells.
func table(w io.Writer, rows [][]string) {
	var buf strings.Builder
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		if line != "" {
			io.WriteString(w, strings.TrimRight(line, " \n")+"\n")
		}
	}
}

// lines writes one value per line.
func lines(w io.Writer, values []string) {
	for _, v := range values {
		fmt.Fprintln(w, v)
	}
}

// connect builds the client from --url or --host, else from the scrapy.cfg
// target (-t, default "default"), else Scrapyd's default URL. Credentials:
// the flags, then the target's, then ~/.netrc, as scrapyd-deploy does.
func connect(cCtx *cli.Context, onAnswer func([]byte)) (*client.Client, error) {
	t, err := pickTarget(cCtx)
	if err != nil {
		return nil, err
	}
	if cCtx.IsSet("username") || cCtx.IsSet("password") {
		t.Username, t.Password = cCtx.String("username"), cCtx.String("password")
	}
	return newClient(t, onAnswer)
}

// newClient connects to a target, filling in ~/.netrc credentials.
func newClient(t scrapycfg.Target, onAnswer func([]byte)) (*client.Client, error) {
	netrc, err := scrapycfg.ReadNetrc(scrapycfg.NetrcPath())
	if err != nil {
		return nil, err
	}
	t = t.WithNetrc(netrc)
	return client.New(t.URL, client.Options{Username: t.Username, Password: t.Password, OnAnswer: onAnswer})
}

func pickTarget(cCtx *cli.Context) (scrapycfg.Target, error) {
	url, host := cCtx.String("url"), cCtx.String("host")
	if cCtx.IsSet("target") && (url != "" || host != "") {
		return scrapycfg.Target{}, usagef("give either --target or --url/--host, not both")
	}
	if url != "" && host != "" {
		return scrapycfg.Target{}, usagef("give either --url or --host, not both")
	}
	if host != "" {
		return scrapycfg.Target{URL: "http://" + net.JoinHostPort(host, strconv.Itoa(cCtx.Int("port"))) + "/"}, nil
	}
	if url != "" {
		return scrapycfg.Target{URL: url}, nil
	}
	cfg, _, err := loadConfig()
	if err != nil && !errors.Is(err, scrapycfg.ErrNoProject) {
		return scrapycfg.Target{}, err // a broken scrapy.cfg is worth saying
	}
	name := cCtx.String("target")
	if name == "" {
		name = "default"
		if _, err := cfg.Target(name); err != nil {
			return scrapycfg.Target{URL: defaultURL}, nil
		}
	}
	return cfg.Target(name)
}

// loadConfig reads the scrapy.cfg files that apply in the working
// directory and returns them with the project's directory. Without a
// project it still returns the user's and system's files, so that targets
// defined in ~/.scrapy.cfg work anywhere, together with ErrNoProject.
func loadConfig() (*scrapycfg.Config, string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, "", err
	}
	closest, findErr := scrapycfg.Find(wd)
	cfg, err := scrapycfg.Load(scrapycfg.Sources(closest)...)
	if err != nil {
		return nil, "", err
	}
	if findErr != nil {
		return cfg, "", findErr
	}
	return cfg, filepath.Dir(closest), nil
}

// needArgs checks the number of positional arguments.
func needArgs(cCtx *cli.Context, min, max int) error {
	if n := cCtx.NArg(); n < min || n > max {
		return wrongArgs(cCtx)
	}
	return nil
}

func wrongArgs(cCtx *cli.Context) error {
	return usagef("%s: wrong number of arguments (usage: %s %s)", cCtx.Command.Name, cCtx.Command.Name, cCtx.Command.ArgsUsage)
}

// projectFlag is the same -p/--project on every command that takes a
// project; a fresh one each time, as urfave/cli flags keep their values.
func projectFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "project", Aliases: []string{"p"}, Usage: usage}
}

// projectArg is the ArgsUsage of a command whose first argument is the
// project, which -p may give instead.
const projectArg = "[-p] PROJECT"

// projectArgs returns the project, from -p/--project or else the first
// argument, and the n arguments after it: `versions -p shop` and
// `versions shop` are the same command.
func projectArgs(cCtx *cli.Context, n int) (string, []string, error) {
	args := cCtx.Args().Slice()
	project := cCtx.String("project")
	switch {
	case project == "" && len(args) == n+1:
		return args[0], args[1:], nil
	case project != "" && len(args) == n:
		return project, args, nil
	case project != "" && len(args) == n+1:
		return "", nil, usagef("%s: the project is given twice, as -p %s and as %q (give one)", cCtx.Command.Name, project, args[0])
	}
	return "", nil, wrongArgs(cCtx)
}
