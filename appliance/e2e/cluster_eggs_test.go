package e2e

import (
	"bytes"
	"net/url"
	"os"
	"reflect"
	"syscall"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestClusterEggsFromTheDatabase: eggs are the cluster's (issue 15 point
// 4). Node 1 receives the uploads; node 2, started afterwards, never
// receives one, yet lists the same projects and versions, and runs their
// crawls (node 1's one slot is taken) from copies it fetches, building a
// version's Python environment first; a copy changed on disk is fetched
// again; a delversion on node 2 removes node 1's copy; a refused upload
// changes nothing on either node.
func TestClusterEggsFromTheDatabase(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	db := pgtest.DB(t)
	conf := "max_proc = 1\n"
	n1 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf(conf, db, "node1")})
	sample := testkit.SampleEgg(t)
	n1.Upload(t, "sample", "1.0", sample)
	n1.Upload(t, "sample", "r10", sample)
	greet := greetProject(t)
	house := testkit.Wheelhouse(t, map[string][]byte{testkit.WheelName("greeter", "1.0"): greeterWheel(t, "1.0", "hello from one")})
	if r := uploadWith(t, n1, "greet", "1", greet, "greeter==1.0\n", house); r["status"] != "ok" {
		t.Fatalf("upload with an environment: %v", r)
	}
	long := schedule(t, n1, url.Values{"project": {"sample"}, "spider": {"slow"}, "jobid": {"long"}})
	pid := int(waitState(t, n1, long, "running")["pid"].(float64))
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })

	n2 := testkit.StartDaemon(t, testkit.Options{Conf: testkit.NodeConf(conf, db, "node2")})
	same := func(what string) {
		t.Helper()
		for _, c := range []struct {
			endpoint string
			q        url.Values
		}{
			{"listprojects.json", nil},
			{"listversions.json", url.Values{"project": {"sample"}}},
			{"listversions.json", url.Values{"project": {"greet"}}},
			{"listspiders.json", url.Values{"project": {"sample"}}},
		} {
			a, b := n1.Get(t, c.endpoint, c.q), n2.Get(t, c.endpoint, c.q)
			delete(a, "node_name")
			delete(b, "node_name")
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s: %s?%s on node 1: %v, on node 2: %v", what, c.endpoint, c.q.Encode(), a, b)
			}
		}
	}
	same("after the uploads")
	if v := n2.Get(t, "listversions.json", url.Values{"project": {"sample"}})["versions"]; !reflect.DeepEqual(v, []any{"1.0", "r10"}) {
		t.Fatalf("versions on node 2 = %v", v)
	}
	copy2 := n2.Path("var/lib/scrapyd/eggs/sample/1_0.egg")
	if _, err := os.Stat(copy2); !os.IsNotExist(err) {
		t.Fatalf("node 2 holds a copy before a crawl needs it: %v", err)
	}

	// Node 1's slot is taken: node 2 runs the crawls, from its copies.
	crawlOn2 := func(project, spider, version string) map[string]any {
		t.Helper()
		form := url.Values{"project": {project}, "spider": {spider}}
		if version != "" {
			form.Set("_version", version)
		}
		id := schedule(t, n1, form)
		fin := waitState(t, n2, id, "finished")
		log := n2.Path("var/log/scrapyd", project, spider, id+".log")
		if fin["outcome"] != "finished" {
			t.Fatalf("crawl %s/%s on node 2 ended %v\n%s\n%s", project, spider, fin, readFile(log), n2.Logs())
		}
		if _, err := os.Stat(log); err != nil {
			t.Fatalf("node 2 did not run %s: %v", id, err)
		}
		fin["id"] = id
		return fin
	}
	crawlOn2("sample", "params", "1.0")
	if data, err := os.ReadFile(copy2); err != nil || !bytes.Equal(data, sample) {
		t.Fatalf("node 2's copy of sample 1.0: %v", err)
	}
	fin := crawlOn2("greet", "greet", "")
	items := readItems(t, n2.Path("var/lib/scrapyd/items/greet/greet", fin["id"].(string)+".jl"))
	if len(items) != 1 || items[0]["greeting"] != "hello from one" {
		t.Fatalf("the crawl on node 2 ran without its environment: items %v", items)
	}
	if env, _ := fin["env"].(string); env == "" {
		t.Fatalf("the job names no environment: %v", fin)
	} else if _, err := os.Stat(n2.Path("var/lib/scrapyd/envs", env, "bin/python")); err != nil {
		t.Fatalf("node 2 did not build environment %s: %v", env, err)
	}

	// A copy changed on disk is fetched again before the next crawl.
	if err := os.WriteFile(copy2, []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	crawlOn2("sample", "params", "1.0")
	if data, _ := os.ReadFile(copy2); !bytes.Equal(data, sample) {
		t.Fatalf("the tampered copy was not replaced: %q", data)
	}

	// A refused upload changes nothing anywhere.
	if r := n1.Upload(t, "sample", "2.0", []byte("not a zip")); r["status"] != "error" {
		t.Fatalf("a bad upload: %v", r)
	}
	same("after a refused upload")

	// A delversion on node 2 removes node 1's copy too.
	copy1 := n1.Path("var/lib/scrapyd/eggs/sample/1_0.egg")
	if _, err := os.Stat(copy1); err != nil {
		t.Fatalf("node 1 keeps what it received: %v", err)
	}
	if r := n2.Post(t, "delversion.json", url.Values{"project": {"sample"}, "version": {"1.0"}}); r["status"] != "ok" {
		t.Fatalf("delversion on node 2: %v", r)
	}
	testkit.Eventually(t, waitCrawl, "node 1's copy of the deleted version to go", func() bool {
		_, err := os.Stat(copy1)
		return os.IsNotExist(err)
	})
	if _, err := os.Stat(copy2); !os.IsNotExist(err) {
		t.Fatalf("node 2's copy of the deleted version: %v", err)
	}
	same("after delversion")
	if r := n1.Post(t, "delproject.json", url.Values{"project": {"greet"}}); r["status"] != "ok" {
		t.Fatalf("delproject on node 1: %v", r)
	}
	testkit.Eventually(t, waitCrawl, "node 2's copies of the deleted project to go", func() bool {
		_, err := os.Stat(n2.Path("var/lib/scrapyd/eggs/greet"))
		return os.IsNotExist(err)
	})
	same("after delproject")
	cancelled(t, n1, "sample", long)
}
