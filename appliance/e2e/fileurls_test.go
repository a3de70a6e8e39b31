package e2e

import (
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestFileURLsEscaped: a project and a job id with a space, `%`, `#` and
// `?` (names Scrapyd accepts) still give a log_url and items_url that,
// followed as listjobs.json gives them, serve the crawl's own files
// (issue 13 point 10).
func TestFileURLsEscaped(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{})
	const project, id = "my shop #1", "run 100% done?#x"
	if r := d.Upload(t, project, "1.0", testkit.SampleEgg(t)); r["status"] != "ok" {
		t.Fatalf("addversion: %v", r)
	}
	site := testkit.Site(t, 2)
	schedule(t, d, url.Values{"project": {project}, "spider": {"catalog"}, "url": {site}, "jobid": {id}})
	fin := waitState(t, d, id, "finished")
	if fin["outcome"] != "finished" {
		t.Fatalf("crawl ended %v\n%s", fin, d.Logs())
	}
	for key, want := range map[string]string{"log_url": "Spider closed (finished)", "items_url": `"sku": "SKU-00001"`} {
		link, _ := fin[key].(string)
		if !strings.HasPrefix(link, "/") {
			t.Fatalf("%s = %v\n%s", key, fin[key], d.Logs())
		}
		resp, err := d.Client.Get(d.URL + link)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s (%s): HTTP %d, want a body with %q, got %.300q", link, key, resp.StatusCode, want, body)
		}
	}
}
