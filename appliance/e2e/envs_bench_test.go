package e2e

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// BenchmarkUploadEnv: the time addversion.json takes to accept an upload
// (egg checked, `scrapy list` run), against the real binary: without
// requirements, with requirements whose environment must be built (venv,
// pip install from the uploaded wheel, packages listed), and with a set
// already installed (reused: no install).
func BenchmarkUploadEnv(b *testing.B) {
	testkit.RequireScrapy(b)
	d := testkit.StartDaemon(b, testkit.Options{})
	egg := greetProject(b)
	plain := spiderProject(b, "import scrapy\n\n\nclass Greet(scrapy.Spider):\n    name = 'greet'\n")
	house := func(v string) []byte {
		return testkit.Wheelhouse(b, map[string][]byte{testkit.WheelName("greeter", v): greeterWheel(b, v, "hello "+v)})
	}
	accept := func(r map[string]any) {
		if r["status"] != "ok" {
			b.Fatal(r)
		}
	}
	n := 0
	b.Run("none", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			n++
			accept(d.Upload(b, "plain", fmt.Sprint(n), plain))
		}
	})
	b.Run("new-env", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			n++
			v := fmt.Sprintf("1.%d", n) // a new set each time
			accept(uploadWith(b, d, "fresh", fmt.Sprint(n), egg, "greeter=="+v+"\n", house(v)))
		}
	})
	same := house("9.0")
	accept(uploadWith(b, d, "reused", "0", egg, "greeter==9.0\n", same))
	b.Run("reused-env", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			n++
			accept(uploadWith(b, d, "reused", fmt.Sprint(n), egg, "greeter==9.0\n", same))
		}
	})
}

// BenchmarkCrawlStartEnv: from schedule.json to a one-item crawl's end
// (Python's and Scrapy's start-up dominate), with the configured python
// and with a version's environment (its bin/python, greeter imported from
// it). The state is polled every 50 ms, which both sides pay alike.
func BenchmarkCrawlStartEnv(b *testing.B) {
	testkit.RequireScrapy(b)
	d := testkit.StartDaemon(b, testkit.Options{})
	plain := spiderProject(b, "import scrapy\n\n\nclass Greet(scrapy.Spider):\n    name = 'greet'\n    start_urls = ['data:,hi']\n\n    def parse(self, response):\n        yield {'greeting': 'hello'}\n")
	if r := d.Upload(b, "system", "1", plain); r["status"] != "ok" {
		b.Fatal(r)
	}
	house := testkit.Wheelhouse(b, map[string][]byte{testkit.WheelName("greeter", "1.0"): greeterWheel(b, "1.0", "hello")})
	if r := uploadWith(b, d, "env", "1", greetProject(b), "greeter==1.0\n", house); r["status"] != "ok" {
		b.Fatal(r)
	}
	for _, project := range []string{"system", "env"} {
		b.Run(project, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				id := schedule(b, d, url.Values{"project": {project}, "spider": {"greet"}})
				if m := waitState(b, d, id, "finished"); m["outcome"] != "finished" {
					b.Fatal(m)
				}
			}
		})
	}
}
