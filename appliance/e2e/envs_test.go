package e2e

import (
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/eggbuild"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// greetProject writes a Scrapy project whose only spider imports the
// made-up package greeter and yields one item with greeter.greet(): what
// the item says is what the environment installed. It fetches a data: URL,
// so crawls need no network.
func greetProject(t testing.TB) []byte {
	return spiderProject(t, "import scrapy\nimport greeter\n\n\nclass Greet(scrapy.Spider):\n    name = 'greet'\n    start_urls = ['data:,hi']\n\n    def parse(self, response):\n        yield {'greeting': greeter.greet(), 'version': greeter.__version__}\n")
}

// spiderProject is a project whose one spider module is spider.
func spiderProject(t testing.TB, spider string) []byte {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"scrapy.cfg":                   "[settings]\ndefault = greetbot.settings\n",
		"greetbot/__init__.py":         "",
		"greetbot/settings.py":         "BOT_NAME = 'greetbot'\nSPIDER_MODULES = ['greetbot.spiders']\n",
		"greetbot/spiders/__init__.py": "",
		"greetbot/spiders/greet.py":    spider,
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	egg, err := eggbuild.Build(eggbuild.Options{Dir: dir, Settings: "greetbot.settings"})
	if err != nil {
		t.Fatal(err)
	}
	return egg
}

// greeterWheel is version v of greeter, greeting as it says.
func greeterWheel(t testing.TB, v, greeting string) []byte {
	return testkit.Wheel(t, "greeter", v, map[string]string{
		"greeter/__init__.py": "__version__ = '" + v + "'\n\n\ndef greet():\n    return '" + greeting + "'\n",
	})
}

// uploadWith posts an egg with a requirements file and a wheelhouse (each
// left out when empty), as `scrapydctl deploy --wheels` sends them.
func uploadWith(t testing.TB, d *testkit.Daemon, project, version string, egg []byte, requirements string, wheels []byte) map[string]any {
	t.Helper()
	return d.UploadFiles(t, project, version, map[string][]byte{"egg": egg, "requirements": []byte(requirements), "wheels": wheels})
}

// envDirs lists the environments in envs_dir (hidden build and staging
// entries left out: there must be none once an upload has answered).
func envDirs(t testing.TB, d *testkit.Daemon) (envs, hidden []string) {
	t.Helper()
	ents, err := os.ReadDir(d.Path("var/lib/scrapyd/envs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			hidden = append(hidden, e.Name())
		} else {
			envs = append(envs, e.Name())
		}
	}
	return envs, hidden
}

// TestEnvironmentsPerRequirements is issue 18's demonstration, offline,
// with the real daemon and Debian's Scrapy: two projects need two versions
// of the same package; each crawls with its own; an upload that cannot be
// installed or imported is refused and leaves nothing; the same set is
// installed once; environments go when no version uses them.
func TestEnvironmentsPerRequirements(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{})
	egg := greetProject(t)
	v1, v2 := greeterWheel(t, "1.0", "hello from one"), greeterWheel(t, "2.0", "HELLO FROM TWO")
	house1 := testkit.Wheelhouse(t, map[string][]byte{testkit.WheelName("greeter", "1.0"): v1})
	house2 := testkit.Wheelhouse(t, map[string][]byte{testkit.WheelName("greeter", "2.0"): v2})

	nothingStored := func(what string) {
		t.Helper()
		if l := d.Get(t, "listprojects.json", nil); len(l["projects"].([]any)) != 0 {
			t.Errorf("%s: projects %v stored", what, l["projects"])
		}
		if envs, hidden := envDirs(t, d); len(envs)+len(hidden) != 0 {
			t.Errorf("%s: envs_dir holds %v %v", what, envs, hidden)
		}
	}
	// Without its dependency the spider cannot be imported: refused with
	// Python's ImportError, as any failing `scrapy list` is.
	r := d.Upload(t, "a", "1", egg)
	if r["status"] != "error" || !strings.Contains(r["message"].(string), "No module named 'greeter'") {
		t.Fatalf("upload without greeter: %v", r)
	}
	nothingStored("without greeter")
	// Asking for it without wheels and without an index: pip, offline,
	// says it cannot find it.
	r = uploadWith(t, d, "a", "1", egg, "greeter==1.0\n", nil)
	if msg, _ := r["message"].(string); r["status"] != "error" || !strings.Contains(msg, "No matching distribution found for greeter==1.0") {
		t.Fatalf("upload with requirements but no wheels or index: %v", r)
	}
	nothingStored("requirements without wheels")

	// With their wheels both are accepted, each with its own environment.
	for _, u := range []struct {
		project, req string
		house        []byte
	}{{"a", "greeter==1.0\n", house1}, {"b", "greeter==2.0\n", house2}} {
		if r := uploadWith(t, d, u.project, "1", egg, u.req, u.house); r["status"] != "ok" || r["spiders"] != 1.0 {
			t.Fatalf("upload %s with its wheels: %v", u.project, r)
		}
	}
	envs, hidden := envDirs(t, d)
	if len(envs) != 2 || len(hidden) != 0 {
		t.Fatalf("envs_dir after two uploads: %v %v", envs, hidden)
	}
	if l := d.Get(t, "listversions.json", url.Values{"project": {"a"}}); len(l) != 3 || len(l["versions"].([]any)) != 1 {
		t.Errorf("listversions.json changed shape: %v", l)
	}

	// Each crawls with its own greeter.
	idA := schedule(t, d, url.Values{"project": {"a"}, "spider": {"greet"}})
	idB := schedule(t, d, url.Values{"project": {"b"}, "spider": {"greet"}})
	envOf := map[string]string{}
	for _, c := range []struct{ project, id, greeting, version string }{
		{"a", idA, "hello from one", "1.0"}, {"b", idB, "HELLO FROM TWO", "2.0"},
	} {
		m := waitState(t, d, c.id, "finished")
		if m["outcome"] != "finished" {
			t.Fatalf("job %s: %v\n%s", c.id, m, readFile(d.Path("var/log/scrapyd", c.project, "greet", c.id+".log")))
		}
		items := readItems(t, d.Path("var/lib/scrapyd/items", c.project, "greet", c.id+".jl"))
		if len(items) != 1 || items[0]["greeting"] != c.greeting || items[0]["version"] != c.version {
			t.Errorf("project %s's items: %v, want greeter %s's %q", c.project, items, c.version, c.greeting)
		}
		env, _ := m["env"].(string)
		if env == "" || !contains(envs, env) {
			t.Errorf("listjobs.json entry of %s names env %q, want one of %v", c.id, m["env"], envs)
		}
		envOf[c.project] = env
	}
	if envOf["a"] == envOf["b"] {
		t.Errorf("a and b share environment %s", envOf["a"])
	}

	// The pages say which environment and what is in it.
	page := func(path string) string {
		t.Helper()
		resp, err := d.Client.Get(d.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for _, c := range []struct{ path, env, pkg string }{
		{"/projects/a", envOf["a"], "<tr><th>greeter</th><td>1.0</td></tr>"},
		{"/jobs/b/" + idB, envOf["b"], "<tr><th>greeter</th><td>2.0</td></tr>"},
	} {
		if html := page(c.path); !strings.Contains(html, `id="env-`+c.env+`"`) || !strings.Contains(html, c.pkg) {
			t.Errorf("%s does not show environment %s with %s", c.path, c.env, c.pkg)
		}
	}

	// The same set again (another project, requirements written
	// differently): A's environment, not a second install.
	info := filepath.Join(d.Path("var/lib/scrapyd/envs"), envOf["a"], "scrapyd-env.json")
	before, err := os.Stat(info)
	if err != nil {
		t.Fatal(err)
	}
	if r := uploadWith(t, d, "c", "1", egg, "# the same\ngreeter==1.0\n", house1); r["status"] != "ok" {
		t.Fatalf("third upload: %v", r)
	}
	after, _ := os.Stat(info)
	if again, _ := envDirs(t, d); len(again) != 2 || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the same requirements installed again: envs %v, info file %v → %v", again, before.ModTime(), after.ModTime())
	}

	// A wheel pip cannot install is refused with pip's word, and nothing
	// of it stays.
	broken := testkit.Wheelhouse(t, map[string][]byte{testkit.WheelName("greeter", "3.0"): []byte("not a wheel")})
	r = uploadWith(t, d, "a", "2", egg, "greeter==3.0\n", broken)
	if msg, _ := r["message"].(string); r["status"] != "error" || !strings.Contains(msg, "pip install failed") || !strings.Contains(msg, "greeter") {
		t.Fatalf("broken wheel: %v", r)
	}
	if envs, hidden := envDirs(t, d); len(envs) != 2 || len(hidden) != 0 {
		t.Errorf("after the broken wheel envs_dir holds %v %v", envs, hidden)
	}
	if l := d.Get(t, "listversions.json", url.Values{"project": {"a"}}); len(l["versions"].([]any)) != 1 {
		t.Errorf("broken upload stored a version: %v", l)
	}

	// An environment that installs but whose spiders do not import
	// (ImportError in `scrapy list`) is refused and removed too.
	v5 := testkit.Wheelhouse(t, map[string][]byte{testkit.WheelName("greeter", "5.0"): greeterWheel(t, "5.0", "five")})
	noImport := spiderProject(t, "import scrapy\nimport greeter\nimport greeter_plugins\n\n\nclass Greet(scrapy.Spider):\n    name = 'greet'\n")
	r = uploadWith(t, d, "x", "1", noImport, "greeter==5.0\n", v5)
	if msg, _ := r["message"].(string); r["status"] != "error" || !strings.Contains(msg, "No module named 'greeter_plugins'") {
		t.Fatalf("spiders that do not import in their environment: %v", r)
	}
	if envs, hidden := envDirs(t, d); len(envs) != 2 || len(hidden) != 0 {
		t.Errorf("after the import error envs_dir holds %v %v", envs, hidden)
	}

	// Environments go when no version uses them any more: A's stays while
	// C uses it.
	for _, p := range []string{"a", "b"} {
		if r := d.Post(t, "delproject.json", url.Values{"project": {p}}); r["status"] != "ok" {
			t.Fatal(r)
		}
	}
	if envs, _ := envDirs(t, d); len(envs) != 1 || envs[0] != envOf["a"] {
		t.Errorf("after deleting a and b: %v, want only %s (c uses it)", envs, envOf["a"])
	}
	if r := d.Post(t, "delversion.json", url.Values{"project": {"c"}, "version": {"1"}}); r["status"] != "ok" {
		t.Fatal(r)
	}
	if envs, _ := envDirs(t, d); len(envs) != 0 {
		t.Errorf("after deleting every version: %v", envs)
	}

	// At start, what no version uses goes: an environment left by a crash
	// between a delete and its collection, and a half-built one.
	d.Stop()
	for _, dir := range []string{"0123456789abcdef/bin", ".build-42/lib"} {
		os.MkdirAll(filepath.Join(d.Path("var/lib/scrapyd/envs"), dir), 0o755)
	}
	d = testkit.StartDaemon(t, testkit.Options{Root: d.Root})
	if envs, hidden := envDirs(t, d); len(envs)+len(hidden) != 0 {
		t.Errorf("after a restart envs_dir holds %v %v", envs, hidden)
	}
}
