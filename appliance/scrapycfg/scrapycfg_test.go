package scrapycfg

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTargets(t *testing.T) {
	t.Setenv("SCRAPYCFG_TEST_HOST", "example.net")
	t.Setenv("SCRAPYCFG_TEST_PASS", "s3cret")
	tests := []struct {
		name string
		cfg  string
		want []Target
	}{{
		name: "deploy with url is the default target",
		cfg:  "[deploy]\nurl = http://localhost:6800/\nproject = sample\n",
		want: []Target{{Name: "default", URL: "http://localhost:6800/", Project: "sample"}},
	}, {
		name: "named targets inherit from [deploy] and override",
		cfg: `[settings]
default = sample.settings

[deploy]
project = sample
username = john
password = secret

[deploy:prod]
url = http://prod:6800/
version = GIT

[deploy:staging]
URL: http://staging:6800/
project = other
username = jane
`,
		want: []Target{
			{Name: "prod", URL: "http://prod:6800/", Project: "sample", Version: "GIT", Username: "john", Password: "secret"},
			{Name: "staging", URL: "http://staging:6800/", Project: "other", Username: "jane", Password: "secret"},
		},
	}, {
		name: "environment variables are expanded, unknown ones kept",
		cfg: `[deploy]
url = http://${SCRAPYCFG_TEST_HOST}:6800/
password = $SCRAPYCFG_TEST_PASS
username = $SCRAPYCFG_TEST_UNSET_USER
`,
		want: []Target{{Name: "default", URL: "http://example.net:6800/", Username: "$SCRAPYCFG_TEST_UNSET_USER", Password: "s3cret"}},
	}, {
		name: "percent interpolation, DEFAULT section and comments",
		cfg: `# a comment
[DEFAULT]
host = h1
[deploy:a]
; another comment
url = http://%(host)s:6800/%%20
project = p
`,
		want: []Target{{Name: "a", URL: "http://h1:6800/%20", Project: "p"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tt.cfg), "scrapy.cfg")
			if err != nil {
				t.Fatal(err)
			}
			got := c.Targets()
			if len(got) != len(tt.want) {
				t.Fatalf("Targets() = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("target %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestTargetUnknown(t *testing.T) {
	c, err := Parse(strings.NewReader("[deploy:a]\nurl=http://a/\n"), "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Target("b"); !errors.Is(err, ErrUnknownTarget) {
		t.Fatalf("Target(b) error = %v, want ErrUnknownTarget", err)
	}
	if _, err := c.Target("default"); !errors.Is(err, ErrUnknownTarget) {
		t.Fatalf("[deploy] without url must not be a target, got %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, cfg, want string }{
		{"key outside section", "url = x\n", `x.cfg:1: "url = x" is outside any [section]`},
		{"no separator", "[deploy]\nurl\n", `x.cfg:2: expected key = value, got "url"`},
		{"empty header", "[]\n", `x.cfg:1: bad section header "[]"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.cfg), "x.cfg")
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error = %v, want %s", err, tt.want)
			}
		})
	}
}

func TestLoadMergesLaterFilesOver(t *testing.T) {
	dir := t.TempDir()
	user := writeFile(t, filepath.Join(dir, "home", ".scrapy.cfg"),
		"[deploy:shared]\nurl = http://user:6800/\nusername = u\n")
	proj := writeFile(t, filepath.Join(dir, "proj", "scrapy.cfg"),
		"[settings]\ndefault = sample.settings\n[deploy:shared]\nurl = http://proj:6800/\n")
	c, err := Load(filepath.Join(dir, "missing.cfg"), user, proj)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Target("shared")
	if err != nil {
		t.Fatal(err)
	}
	want := Target{Name: "shared", URL: "http://proj:6800/", Username: "u"}
	if got != want {
		t.Fatalf("Target = %+v, want %+v", got, want)
	}
	if s, err := c.Settings(); err != nil || s != "sample.settings" {
		t.Fatalf("Settings() = %q, %v", s, err)
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "proj", FileName), "[settings]\ndefault = p.settings\n")
	deep := filepath.Join(dir, "proj", "p", "spiders")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		from string
		want string
		err  error
	}{
		{from: filepath.Join(dir, "proj"), want: cfg},
		{from: deep, want: cfg},
		{from: dir, err: ErrNoProject},
	}
	for _, tt := range tests {
		got, err := Find(tt.from)
		if !errors.Is(err, tt.err) || got != tt.want {
			t.Errorf("Find(%s) = %q, %v; want %q, %v", tt.from, got, err, tt.want, tt.err)
		}
	}
}

func TestNetrc(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, filepath.Join(dir, ".netrc"), `# credentials
machine scrapyd.example.net login john password "se cret"
machine other.example.net
  login jane
  password pw2
macdef init
  cd /pub
  bin

default login anon password anonpw
`)
	n, err := ReadNetrc(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		target Target
		want   Target
	}{{
		name:   "machine entry with quoted password",
		target: Target{URL: "http://scrapyd.example.net:6800/"},
		want:   Target{URL: "http://scrapyd.example.net:6800/", Username: "john", Password: "se cret"},
	}, {
		name:   "multi-line entry",
		target: Target{URL: "https://other.example.net/api/"},
		want:   Target{URL: "https://other.example.net/api/", Username: "jane", Password: "pw2"},
	}, {
		name:   "default entry for other hosts",
		target: Target{URL: "http://localhost:6800/"},
		want:   Target{URL: "http://localhost:6800/", Username: "anon", Password: "anonpw"},
	}, {
		name:   "the target's own username wins",
		target: Target{URL: "http://scrapyd.example.net/", Username: "cfg"},
		want:   Target{URL: "http://scrapyd.example.net/", Username: "cfg"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.target.WithNetrc(n); got != tt.want {
				t.Fatalf("WithNetrc = %+v, want %+v", got, tt.want)
			}
		})
	}

	missing, err := ReadNetrc(filepath.Join(dir, "nope"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := missing.Lookup("x"); ok {
		t.Fatal("a missing netrc must have no entries")
	}
	bad := writeFile(t, filepath.Join(dir, "bad"), "login x\n")
	if _, err := ReadNetrc(bad); err == nil {
		t.Fatal("a login outside a machine entry must be an error")
	}
}
