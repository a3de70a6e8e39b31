package crawlrpc

import (
	"encoding/json"
	"slices"
	"strings"
)

// resource is one path under /webservice/<job>/. The original served any
// attribute of the crawler by getattr (webservice-jsonrpc.md §5.3); this
// table is the whole surface instead. The Go handler checks it, and it is
// written into the extension's directory as whitelist.json so the crawl
// checks the very same list.
type resource struct {
	path    string
	rpc     bool     // a JSON-RPC resource (POST); otherwise read-only JSON (GET)
	methods []string // the JSON-RPC methods callable on it
}

var resources = []resource{
	{path: "crawler", rpc: true},
	{path: "crawler/engine", rpc: true, methods: []string{"close_spider", "pause", "unpause"}},
	{path: "crawler/engine/open_spiders"},
	{path: "crawler/spiders", rpc: true, methods: []string{"list"}},
	{path: "enginestatus"},
	{path: "stats", rpc: true, methods: []string{
		"clear_stats", "get_stats", "get_value", "inc_value", "max_value", "min_value", "set_value",
	}},
}

// TopResources are the names webservice_resources may list: the original's
// WEBSERVICE_RESOURCES_BASE (crawler, enginestatus, stats).
var TopResources = []string{"crawler", "enginestatus", "stats"}

func findResource(path string) (resource, bool) {
	i := slices.IndexFunc(resources, func(r resource) bool { return r.path == path })
	if i < 0 {
		return resource{}, false
	}
	return resources[i], true
}

// children names the resources directly below path ("" is the root).
func children(path string) []string {
	var names []string
	for _, r := range resources {
		rest, ok := strings.CutPrefix(r.path, path+"/")
		if path == "" {
			rest, ok = r.path, true
		}
		if ok && rest != "" && !strings.Contains(rest, "/") {
			names = append(names, rest)
		}
	}
	return names
}

// whitelistJSON is the table as the extension reads it:
// {"call": {path: [methods]}, "get": [paths]}.
func whitelistJSON() []byte {
	w := struct {
		Call map[string][]string `json:"call"`
		Get  []string            `json:"get"`
	}{Call: map[string][]string{}}
	for _, r := range resources {
		if r.rpc {
			w.Call[r.path] = append([]string{}, r.methods...)
		} else {
			w.Get = append(w.Get, r.path)
		}
	}
	b, err := json.Marshal(w)
	if err != nil {
		panic("crawlrpc: whitelist: " + err.Error()) // static data: cannot fail
	}
	return b
}
