// Package appliance_test holds the rule of the codebase that no compiler
// checks: data flows one way, api → service → stores and dispatch → launch,
// and the lower layers know nothing of the higher ones.
package appliance_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/scrapyd-debian/scrapyd/"

// forbidden lists, per package, which of our packages it must not import
// (by prefix). "*" forbids every package of ours.
var forbidden = map[string][]string{
	"appliance/job":      {"*"},
	"appliance/config":   {"*"},
	"appliance/jobfiles": {"appliance/job", "appliance/egg", "appliance/store", "appliance/scrapy", "appliance/launch", "appliance/dispatch", "appliance/service", "appliance/api", "appliance/web", "appliance/daemon", "appliance/crawlrpc"},
	"appliance/launch":   {"appliance/store", "appliance/dispatch", "appliance/service", "appliance/api", "appliance/web", "appliance/daemon", "appliance/crawlrpc", "appliance/config"},
	"appliance/egg":      {"*"},
	"appliance/store":    {"appliance/egg", "appliance/scrapy", "appliance/launch", "appliance/dispatch", "appliance/service", "appliance/api", "appliance/web", "appliance/daemon", "appliance/config"},
	"appliance/scrapy":   {"appliance/store", "appliance/dispatch", "appliance/service", "appliance/api", "appliance/web", "appliance/daemon", "appliance/config"},
	"appliance/dispatch": {"appliance/service", "appliance/api", "appliance/web", "appliance/daemon", "appliance/crawlrpc", "appliance/launch/"},
	"appliance/service":  {"appliance/api", "appliance/web", "appliance/daemon", "appliance/crawlrpc", "appliance/launch"},
	"appliance/api":      {"appliance/store", "appliance/dispatch", "appliance/launch", "appliance/egg", "appliance/scrapy", "appliance/daemon", "appliance/web", "appliance/crawlrpc"},
	"appliance/web":      {"appliance/store", "appliance/launch", "appliance/scrapy", "appliance/daemon", "appliance/crawlrpc"},
	"appliance/crawlrpc": {"appliance/store", "appliance/dispatch", "appliance/service", "appliance/api", "appliance/web", "appliance/daemon", "appliance/launch"},
	"appliance/client":   {"appliance/store", "appliance/dispatch", "appliance/service", "appliance/api", "appliance/web", "appliance/daemon", "appliance/launch", "appliance/egg", "appliance/config"},
}

func TestDependenciesPointOneWay(t *testing.T) {
	root, _ := filepath.Abs("..")
	checked := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			target := strings.Trim(imp.Path.Value, `"`)
			if !strings.HasPrefix(target, module) {
				continue
			}
			target = strings.TrimPrefix(target, module)
			checked++
			// Only cmd/scrapyd wires the daemon; tests' helpers stay in tests.
			if target == "appliance/daemon" && rel != "cmd/scrapyd" || target == "appliance/testkit" {
				t.Errorf("%s imports %s", rel, target)
			}
			for pkg, rules := range forbidden {
				if rel != pkg && !strings.HasPrefix(rel, pkg+"/") {
					continue
				}
				for _, r := range rules {
					if r == "*" || target == r || strings.HasPrefix(target, r) && (strings.HasSuffix(r, "/") || strings.HasPrefix(target, r+"/")) {
						if target != rel && !strings.HasPrefix(target, pkg+"/") {
							t.Errorf("%s must not import %s (data flows api → service → stores and dispatch → launch)", rel, target)
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Fatalf("only %d imports of ours checked: the walk is broken", checked)
	}
}
