package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// tree makes a root with the given files (paths relative to it), moves the
// test into it with an empty home, and returns it.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	// As root, `config check` checks that the crawl user reaches the data.
	root := testkit.TraversableTempDir(t)
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(root)
	t.Setenv("HOME", filepath.Join(root, "home"))
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "SCRAPYD_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	return root
}

// scrapyd runs the command line; $ROOT in args and in the output stands
// for root.
func scrapyd(t *testing.T, root string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "$ROOT", root)
	}
	var out, errOut bytes.Buffer
	code = run(append([]string{"scrapyd"}, args...), &out, &errOut)
	return strings.ReplaceAll(out.String(), root, "$ROOT"), strings.ReplaceAll(errOut.String(), root, "$ROOT"), code
}

func TestConfigCheck(t *testing.T) {
	good := map[string]string{
		"etc/scrapyd/scrapyd.conf":            "[scrapyd]\nbind_address = 0.0.0.0\n",
		"etc/scrapyd/conf.d/20-limits.conf":   "[scrapyd]\nmax_proc = 16\n",
		"etc/scrapyd/conf.d/30-typo.conf.bak": "[scrapyd]\nmax_porc = 4\n",
	}
	bad := map[string]string{
		"etc/scrapyd/scrapyd.conf":          "[scrapyd]\nbind_address = 0.0.0.0\n",
		"etc/scrapyd/conf.d/20-limits.conf": "[scrapyd]\nmax_proc = x\n",
	}
	for _, c := range []struct {
		name           string
		files          map[string]string
		args           []string
		stdout, stderr string
		code           int
	}{
		{"valid, flags before the command", good, []string{"--root", "$ROOT", "config", "check"},
			"configuration OK (3 files read)\n",
			"scrapyd: warning: $ROOT/etc/scrapyd/conf.d/30-typo.conf.bak:2: unknown option \"max_porc\" ignored\n", 0},
		{"invalid, flags after the command", bad, []string{"config", "check", "--root", "$ROOT"},
			"", "scrapyd: $ROOT/etc/scrapyd/conf.d/20-limits.conf:2: max_proc: \"x\" is not a whole number\n", 1},
		{"invalid, the alias", bad, []string{"check-config", "--root=$ROOT"},
			"", "scrapyd: $ROOT/etc/scrapyd/conf.d/20-limits.conf:2: max_proc: \"x\" is not a whole number\n", 1},
		{"--config before the command is read too", map[string]string{"extra.conf": "[scrapyd]\nusername = admin\n"},
			[]string{"-c", "$ROOT/extra.conf", "config", "check", "--root", "$ROOT"},
			"", "scrapyd: $ROOT/extra.conf:2: username: username and password must be set together (with only one, authentication would silently stay off)\n", 1},
		{"--config after the command", map[string]string{"extra.conf": "[scrapyd]\nhttp_port = 1\n"},
			[]string{"config", "check", "--root", "$ROOT", "--config", "$ROOT/extra.conf"},
			"configuration OK (1 files read)\n", "", 0},
		{"a missing --config file", nil, []string{"config", "check", "--root", "$ROOT", "--config", "$ROOT/nope.conf"},
			"", "scrapyd: --config $ROOT/nope.conf: open $ROOT/nope.conf: no such file or directory\n", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := tree(t, c.files)
			stdout, stderr, code := scrapyd(t, root, c.args...)
			if stdout != c.stdout || stderr != c.stderr || code != c.code {
				t.Errorf("scrapyd %s\n got  %d %q %q\n want %d %q %q", strings.Join(c.args, " "), code, stdout, stderr, c.code, c.stdout, c.stderr)
			}
		})
	}
}

// TestConfigShow compares `scrapyd config show` with testdata/show.golden
// (go test -update rewrites it).
func TestConfigShow(t *testing.T) {
	root := tree(t, map[string]string{
		"etc/scrapyd/scrapyd.conf":          "[scrapyd]\nbind_address = 0.0.0.0\nnode_name = node1\n",
		"etc/scrapyd/conf.d/20-limits.conf": "[scrapyd]\n# per the capacity plan\nmax_proc = 16\nwebservice_resources = crawler,\n  stats\n",
		"etc/scrapyd/conf.d/30-auth.conf":   "[scrapyd]\nusername = admin\npassword = s3cret\n\n[settings]\nlegacy = legacy.settings\n",
	})
	t.Setenv("SCRAPYD_HTTP_PORT", "7000")
	// Paths are shown absolute, so column widths depend on the temporary
	// directory's name: the comparison ignores padding.
	for _, args := range [][]string{{"config", "show", "--root", "."}, {"--root", ".", "show-config"}} {
		stdout, stderr, code := scrapyd(t, root, args...)
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if strings.Contains(stdout, "s3cret") {
			t.Fatal("config show printed the password")
		}
		golden := filepath.Join(testdataDir, "show.golden")
		if *update {
			if err := os.WriteFile(golden, []byte(stdout), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if unpadded(stdout) != unpadded(string(want)) {
			t.Errorf("scrapyd %s:\n%s\nwant (%s):\n%s", strings.Join(args, " "), stdout, golden, want)
		}
	}
}

// unpadded collapses each line's runs of spaces to one.
func unpadded(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

// testdataDir is absolute: the tests change directory.
var testdataDir = func() string { d, _ := filepath.Abs("testdata"); return d }()

// TestFlagsWin: --bind and --port win over the files and the environment,
// before or after the command, and `config show` names the flag.
func TestFlagsWin(t *testing.T) {
	root := tree(t, map[string]string{"etc/scrapyd/scrapyd.conf": "[scrapyd]\nbind_address = 0.0.0.0\nhttp_port = 6900\n"})
	t.Setenv("SCRAPYD_HTTP_PORT", "7000")
	for _, args := range [][]string{
		{"--root", ".", "--bind", "127.0.0.2", "--port", "7100", "config", "show"},
		{"config", "show", "--root", ".", "--port=7100", "--bind=127.0.0.2"},
		{"--port", "1", "--bind", "127.0.0.9", "config", "show", "--root", ".", "--port", "7100", "--bind", "127.0.0.2"}, // the command's own wins
	} {
		stdout, stderr, code := scrapyd(t, root, args...)
		if code != 0 || stderr != "" {
			t.Fatalf("scrapyd %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
		for _, want := range []string{"bind_address 127.0.0.2 restart (flag --bind)", "http_port 7100 restart (flag --port)"} {
			if !strings.Contains(unpadded(stdout), want) {
				t.Errorf("scrapyd %s: no %q in\n%s", strings.Join(args, " "), want, stdout)
			}
		}
	}
	if _, stderr, code := scrapyd(t, root, "--port", "x", "config", "check", "--root", "."); code != 1 ||
		stderr != "scrapyd: (flag --port): http_port: \"x\" is not a whole number\n" {
		t.Errorf("a bad --port: exit %d, %q", code, stderr)
	}
}

// TestClusterImportNeeds: `scrapyd cluster import` refuses, changing
// nothing, without a database to import into or a store to import
// (TestClusterImport in appliance/e2e imports one).
func TestClusterImportNeeds(t *testing.T) {
	for _, c := range []struct {
		name, conf, stderr string
	}{
		{"no database option", "", "scrapyd: cluster import: set the database option to the cluster's PostgreSQL URL first (the import writes there)\n"},
		{"no store", "database = postgresql://nowhere.invalid/scrapyd\n",
			"scrapyd: cluster import: no single-node store to import: stat $ROOT/var/lib/scrapyd/dbs/scrapyd.db: no such file or directory\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := tree(t, map[string]string{"etc/scrapyd/scrapyd.conf": "[scrapyd]\nhttp_port = 1\n" + c.conf})
			stdout, stderr, code := scrapyd(t, root, "--root", "$ROOT", "cluster", "import")
			if stdout != "" || stderr != c.stderr || code != 1 {
				t.Errorf("got %d %q %q, want 1 %q", code, stdout, stderr, c.stderr)
			}
			if _, err := os.Stat(filepath.Join(root, "var/lib/scrapyd/dbs")); err == nil {
				t.Error("the refused import made a store")
			}
		})
	}
}
