// Package appliance_test holds the rule of the codebase that no compiler
// checks: data flows one way, api → service → stores and dispatch → launch,
// and the lower layers know nothing of the higher ones.
package appliance_test

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/scrapyd-debian/scrapyd/"

// rules says, for every package of ours, which of our packages it may
// import itself, and which it may reach only through those (its
// transitive dependencies). A package with no rule fails the test: a new
// package states its place in the flow when it is added. Nothing but
// cmd/scrapyd reaches the daemon, and only tests reach testkit.
//
// What "through" admits is the flow, not a shortcut: api, web and service
// reach launch only because dispatch starts crawls through it and scrapy
// describes a crawl's sandbox with its types; none of them may import it.
var rules = map[string]struct{ imports, through string }{
	// Leaves: they know nothing of ours.
	"appliance/job":            {},
	"appliance/config":         {},
	"appliance/ziplimit":       {},
	"appliance/durable":        {},
	"appliance/egg":            {imports: "durable ziplimit"},
	"appliance/eggbuild":       {},
	"appliance/crawlrpc":       {},
	"appliance/listen":         {},
	"appliance/idle":           {},
	"appliance/notify":         {},
	"appliance/health":         {},
	"appliance/journal":        {},
	"appliance/reach":          {},
	"appliance/scrapycfg":      {},
	"appliance/launch":         {},
	"appliance/launch/runas":   {},
	"appliance/launch/process": {imports: "launch"},
	"appliance/launch/systemd": {imports: "launch launch/runas"},
	// Uploaded code run to its end, confined as a crawl is (`scrapy list`,
	// an environment's install), and the environments it installs.
	"appliance/confine": {imports: "launch"},
	"appliance/pyenv":   {imports: "durable launch ziplimit"},
	// Tests only: the launcher contract and a fake launcher; the restart
	// test at every crash point.
	"appliance/dispatch/dispatchtest": {imports: "config dispatch egg job launch store", through: "durable jobfiles pyenv scrapy confine ziplimit"},
	"appliance/launch/launchtest":     {imports: "launch"},

	// Stores and where files live.
	"appliance/jobfiles": {imports: "config"},
	"appliance/logscan":  {},
	"appliance/logstats": {imports: "job logscan"},
	"appliance/archive":  {imports: "config job jobfiles logscan store"},
	"appliance/store":    {imports: "job"},
	// The stores' contracts and in-memory implementations, for tests.
	"appliance/store/storetest": {imports: "job store"},
	"appliance/store/memstore":  {imports: "job store"},
	// The job store on PostgreSQL (cluster mode), and its tests' databases.
	"appliance/store/pgstore":        {imports: "egg job store", through: "durable ziplimit"},
	"appliance/store/pgstore/pgtest": {},
	"appliance/egg/eggtest":          {imports: "egg", through: "durable ziplimit"},
	"appliance/egg/memegg":           {imports: "egg", through: "durable ziplimit"},
	// The cluster's egg store: copies of the database's eggs in eggs_dir.
	"appliance/egg/eggcache": {imports: "durable egg", through: "ziplimit"},

	// Crawl logs shipped to a shared database, and read back (cluster mode).
	"appliance/logship": {imports: "config job jobfiles store"},

	// Crawls: the command line, then dispatch, which starts them.
	"appliance/scrapy":   {imports: "confine job launch"},
	"appliance/dispatch": {imports: "config egg job jobfiles launch pyenv scrapy store", through: "confine durable ziplimit"},
	// Job events out of the store: their JSON, webhooks, /events.
	"appliance/events": {imports: "config jobfiles store", through: "job"},
	// Recurring schedules queue jobs through a store they declare.
	"appliance/recur": {imports: "job"},

	// The service, and the HTTP faces over it.
	"appliance/service": {imports: "config dispatch egg job jobfiles pyenv recur scrapy store", through: "confine durable launch ziplimit"},
	"appliance/api":     {imports: "config job service", through: "confine dispatch durable egg jobfiles launch pyenv recur scrapy store ziplimit"},
	"appliance/web":     {imports: "config egg job jobfiles logstats pyenv service", through: "confine dispatch durable launch logscan recur scrapy store ziplimit"},
	// Cluster mode: a request about a crawl on another node, sent there.
	"appliance/forward": {imports: "crawlrpc jobfiles", through: "config"},
	// Metrics read the job store at each scrape and are told the rest.
	"appliance/metrics": {imports: "crawlrpc job store"},

	// Wiring: only the daemon sees every part, only cmd/scrapyd the daemon.
	"appliance/daemon": {imports: "api archive config confine crawlrpc dispatch egg egg/eggcache events forward health idle job jobfiles journal launch launch/process launch/runas launch/systemd listen logship metrics notify pyenv reach recur scrapy service store store/pgstore web", through: "durable logscan logstats ziplimit"},
	"cmd/scrapyd":      {imports: "config daemon", through: "api archive durable logscan logship logstats confine crawlrpc dispatch egg egg/eggcache events forward health idle job jobfiles journal launch launch/process launch/runas launch/systemd listen metrics notify pyenv reach recur scrapy service store store/pgstore web ziplimit"},

	// The client side shares nothing with the server but job's names.
	"appliance/client": {imports: "job"},
	"cmd/scrapydctl":   {imports: "client eggbuild job scrapycfg"},

	// Tests only.
	"appliance":         {},
	"appliance/e2e":     {},
	"appliance/testkit": {imports: "eggbuild"},
	// A TCP proxy that black-holes a daemon's database traffic.
	"appliance/testkit/faultproxy": {},
}

// pkg is what `go list -json` says of a package.
type pkg struct {
	ImportPath string
	Imports    []string // direct, without tests
	Deps       []string // transitive, without tests
}

// ours is the package path relative to the module, "" for another module's.
func ours(path string) (string, bool) {
	rel, ok := strings.CutPrefix(path, module)
	if !ok {
		return "", path+"/" == module
	}
	return rel, true
}

func TestDependenciesPointOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "../...").Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("go list: %v\n%s", err, exit.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	expand := func(list string) []string {
		var out []string
		for _, p := range strings.Fields(list) {
			if p != "cmd/scrapyd" && !strings.HasPrefix(p, "cmd/") {
				p = "appliance/" + p
			}
			out = append(out, p)
		}
		return out
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen, checked := map[string]bool{}, 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		name, _ := ours(p.ImportPath)
		seen[name] = true
		rule, ok := rules[name]
		if !ok {
			t.Errorf("%s has no rule in deps_test.go: say which of our packages it may import", name)
			continue
		}
		imports := expand(rule.imports)
		reach := append(imports, expand(rule.through)...)
		for _, imp := range p.Imports {
			if target, ok := ours(imp); ok {
				checked++
				if !slices.Contains(imports, target) {
					t.Errorf("%s imports %s (data flows api → service → stores and dispatch → launch)", name, target)
				}
			}
		}
		for _, dep := range p.Deps {
			if target, ok := ours(dep); ok && !slices.Contains(reach, target) {
				t.Errorf("%s reaches %s through its imports (data flows api → service → stores and dispatch → launch)", name, target)
			}
		}
	}
	for name := range rules {
		if !seen[name] {
			t.Errorf("deps_test.go has a rule for %s, which is not a package", name)
		}
	}
	if checked < 20 {
		t.Fatalf("only %d imports of ours checked: go list's answer is not what the test expects", checked)
	}
}
