package api

import (
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden listjobs.json answers")

// TestListJobsGolden answers listjobs.json on a database written by the
// release before schema versions (appliance/store/testdata/unversioned.db),
// and compares every byte with the answers that release gave on it
// (testdata/listjobs.golden, written with -update at main fb300f1, when
// finished jobs were still served from memory). Reading the history from
// SQLite must not change a byte of Scrapyd's default answer, nor of the
// pages (issue 14 point 5). The golden file stays that release's answer:
// the one addition made since on purpose (running and finished entries
// carry their job's version, settings and arguments after Scrapyd's keys,
// issue 16, for scrapydctl rerun) is taken out of today's answer before
// the comparison, and nothing else is.
func TestListJobsGolden(t *testing.T) {
	// pyTime shows local time; the golden answers are in UTC.
	local := time.Local
	time.Local = time.UTC
	t.Cleanup(func() { time.Local = local })
	root := t.TempDir()
	dbs := filepath.Join(root, "var", "lib", "scrapyd", "dbs")
	os.MkdirAll(dbs, 0o700)
	db, err := os.ReadFile(filepath.Join("..", "store", "testdata", "unversioned.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dbs, "scrapyd.db"), db, 0o600); err != nil {
		t.Fatal(err)
	}
	// Logs for some finished jobs and the running one: their links show.
	for _, p := range []string{"alpha/s1/fin00", "beta/s2/fin01", "gamma/s1/fin02", "alpha/s2/fin03", "alpha/s1/run0"} {
		path := filepath.Join(root, "var", "log", "scrapyd", p+".log")
		os.MkdirAll(filepath.Dir(path), 0o755)
		os.WriteFile(path, nil, 0o644)
	}
	h := newHarnessIn(t, root, "[settings]\nalpha = a.settings\nbeta = b.settings\ngamma = g.settings\n")
	var got strings.Builder
	for _, q := range []string{"", "?state=finished", "?state=finished&limit=5&offset=3", "?state=finished&limit=100",
		"?project=beta", "?project=alpha&state=running", "?state=pending", "?limit=3&offset=38", "?project=gamma&limit=2&offset=1",
		"?offset=100", "?state=finished&offset=39"} {
		r := h.do(t, request{method: http.MethodGet, path: "/listjobs.json" + q})
		got.WriteString("GET /listjobs.json" + q + "\n" + withoutRerunKeys(r.body))
	}
	golden := filepath.Join("testdata", "listjobs.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("listjobs.json differs from the golden answers:\n got %s\nwant %s", got.String(), want)
	}
}

// rerunKeys are the members issue 16 added to running and finished
// entries, after Scrapyd's keys: a string or null, or a flat object of
// strings.
var rerunKeys = regexp.MustCompile(`, "(?:version|settings|args)": (?:null|"(?:[^"\\]|\\.)*"|\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\})`)

// withoutRerunKeys takes rerunKeys out of the running and finished entries
// of a listjobs.json answer; pending entries have carried them since
// Scrapyd 1.5 and keep them.
func withoutRerunKeys(body string) string {
	i := strings.Index(body, `"running": [`)
	if i < 0 {
		return body
	}
	return body[:i] + rerunKeys.ReplaceAllString(body[i:], "")
}
