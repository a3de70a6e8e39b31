package web_test

import (
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// The patterns ScrapydWeb 1.6 reads our HTML with, verbatim from
// my8100/scrapydweb (raw strings compiled with re.X, so whitespace and
// # comments are not part of the pattern, but \n and \s are).

// directoryPattern is DIRECTORY_PATTERN (scrapydweb/vars.py): its Logs and
// Items pages find the rows of /logs/... and /items/... listings with it.
const directoryPattern = `
                                    <tr\sclass="(?P<odd_even>odd|even)">\n
                                        \s+<td>(?P<filename>.*?)</td>\n
                                        \s+<td>(?P<size>.*?)</td>\n
                                        (?:\s+<td>(?P<last_modified>.*?)</td>\n)?
                                        \s+<td>(?P<content_type>.*?)</td>\n
                                        \s+<td>(?P<content_encoding>.*?)</td>\n
                                    </tr>
                                `

// directoryKeys is DIRECTORY_KEYS, the names ScrapydWeb zips findall's
// tuples with.
var directoryKeys = []string{"odd_even", "filename", "size", "last_modified", "content_type", "content_encoding"}

// hrefNamePattern is HREF_NAME_PATTERN, applied to each row's filename cell.
const hrefNamePattern = `href="(.+?)">(.+?)<`

// jobPattern is JOB_PATTERN (scrapydweb/views/dashboard/jobs.py and
// scrapydweb/utils/poll.py): the dashboard and the poller read /jobs with it.
const jobPattern = `
                            <tr>\s*
                                <td>(?P<Project>.*?)</td>\s*
                                <td>(?P<Spider>.*?)</td>\s*
                                <td>(?P<Job>.*?)</td>\s*
                                (?:<td>(?P<PID>.*?)</td>\s*)?
                                (?:<td>(?P<Start>.*?)</td>\s*)?
                                (?:<td>(?P<Runtime>.*?)</td>\s*)?
                                (?:<td>(?P<Finish>.*?)</td>\s*)?
                                (?:<td>(?P<Log>.*?)</td>\s*)?
                                (?:<td>(?P<Items>.*?)</td>\s*)?
                                [\w\W]*?  # Temp support for Scrapyd v1.3.0 (not released)
                            </tr>
                          `

// verbose compiles a Python re.X pattern as Go: whitespace outside a
// character class and not escaped is dropped, and so is a # comment to
// the end of its line. Everything else in these patterns (\s, \n, .*?,
// (?P<name>...)) means the same in both.
func verbose(p string) *regexp.Regexp {
	var b strings.Builder
	inClass, comment := false, false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case comment:
			comment = c != '\n'
		case c == '\\' && i+1 < len(p):
			b.WriteByte(c)
			b.WriteByte(p[i+1])
			i++
		case inClass:
			inClass = c != ']'
			b.WriteByte(c)
		case c == '[':
			inClass = true
			b.WriteByte(c)
		case c == '#':
			comment = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
		default:
			b.WriteByte(c)
		}
	}
	return regexp.MustCompile(b.String())
}

var (
	directoryRe = verbose(directoryPattern)
	jobRe       = verbose(jobPattern)
)

// rows is what ScrapydWeb's code makes of a page, in Go: findall's groups
// zipped with the names.
func rows(re *regexp.Regexp, body string) []map[string]string {
	var out []map[string]string
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		out = append(out, named(re, m))
	}
	return out
}

func named(re *regexp.Regexp, m []string) map[string]string {
	out := map[string]string{}
	for i, n := range re.SubexpNames() {
		if n != "" {
			out[n] = m[i]
		}
	}
	return out
}

// pythonRows runs ScrapydWeb's own lines in Python's re over a page:
//
//	rows = [dict(zip(DIRECTORY_KEYS, row)) for row in re.findall(DIRECTORY_PATTERN, self.text)]
//	row['href'], row['filename'] = re.search(HREF_NAME_PATTERN, row['filename']).groups()
//
// so no translation of the pattern stands between the test and the claim.
func pythonRows(t *testing.T, body string) []map[string]string {
	t.Helper()
	const script = `
import json, re, sys
DIRECTORY_PATTERN = re.compile(sys.argv[1], re.X)
DIRECTORY_KEYS = json.loads(sys.argv[2])
HREF_NAME_PATTERN = re.compile(sys.argv[3])
text = sys.stdin.read()
rows = [dict(zip(DIRECTORY_KEYS, row)) for row in re.findall(DIRECTORY_PATTERN, text)]
for row in rows:
    row['href'], row['filename'] = re.search(HREF_NAME_PATTERN, row['filename']).groups()
json.dump(rows, sys.stdout)
`
	keys, _ := json.Marshal(directoryKeys)
	cmd := exec.Command(testkit.Python, "-c", script, directoryPattern, string(keys), hrefNamePattern)
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ScrapydWeb's parsing in %s: %v\n%s", testkit.Python, err, out)
	}
	var got []map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestListingsAfterCrawlsMatchScrapydWeb runs real crawls on the real
// daemon and reads every level of /logs/ and /items/ with ScrapydWeb's
// own parsing in Python: each entry on disk is one row, named as on disk.
func TestListingsAfterCrawlsMatchScrapydWeb(t *testing.T) {
	testkit.RequireScrapy(t)
	d := testkit.StartDaemon(t, testkit.Options{})
	if r := d.Upload(t, "sample", "1.0", testkit.SampleEgg(t)); r["status"] != "ok" {
		t.Fatalf("upload: %v", r)
	}
	ids := []string{"crawl-one", "crawl:two"}
	for _, id := range ids {
		r := d.Post(t, "schedule.json", url.Values{"project": {"sample"}, "spider": {"params"}, "jobid": {id}, "limit": {"3"}})
		if r["status"] != "ok" {
			t.Fatalf("schedule %s: %v", id, r)
		}
	}
	testkit.Eventually(t, 3*time.Minute, "both crawls finished", func() bool {
		r := d.Get(t, "listjobs.json", url.Values{"project": {"sample"}})
		fin, _ := r["finished"].([]any)
		return len(fin) == len(ids)
	})
	for _, top := range []struct{ url, dir string }{{"/logs/", "log"}, {"/items/", "lib"}} {
		root := d.Path("var", "log", "scrapyd")
		if top.dir == "lib" {
			root = d.Path("var", "lib", "scrapyd", "items")
		}
		for _, sub := range []string{"", "sample/", "sample/params/"} {
			page := top.url + sub
			body := fetch(t, d.URL+page)
			if !strings.Contains(body, "Directory listing for "+page) {
				t.Fatalf("%s is not a listing ScrapydWeb accepts:\n%s", page, body)
			}
			ents, err := os.ReadDir(filepath.Join(root, filepath.FromSlash(sub)))
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, e := range ents {
				name := e.Name()
				if e.IsDir() {
					name += "/"
				}
				want = append(want, name)
			}
			var got []string
			for _, row := range pythonRows(t, body) {
				got = append(got, row["filename"])
			}
			slices.Sort(want)
			slices.Sort(got)
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Errorf("%s: ScrapydWeb reads rows %q, the directory holds %q:\n%s", page, got, want, body)
			}
		}
	}
}
