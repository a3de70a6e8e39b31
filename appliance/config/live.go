package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
)

// Changed lists the [scrapyd] options whose effective values differ between
// a and b, sorted, plus "[settings]" when that section differs.
func Changed(a, b *Config) []string {
	var out []string
	for _, k := range Names() {
		if !reflect.DeepEqual(options[k].ptr(a), options[k].ptr(b)) {
			out = append(out, k)
		}
	}
	if !maps.Equal(a.Settings, b.Settings) {
		out = append(out, "[settings]")
	}
	if !maps.Equal(a.Caps, b.Caps) {
		out = append(out, "[project:*]")
	}
	return append(out, changedWebhooks(a, b)...)
}

// derived are the options whose default derive computes from another.
var derived = map[string]bool{"crawl_dir": true, "envs_dir": true}

// RestartOnly reports whether a change of the option needs a restart, and why.
func RestartOnly(key string) (why string, ok bool) {
	why = options[key].restart
	return why, why != ""
}

// Live returns the snapshot a running daemon switches to when its files now
// load as loaded: loaded, except that every restart-only option keeps its
// running value (and source), so that the snapshot always describes what
// the daemon really does. pending lists the options that keep their old
// value until a restart. The combination is validated again: a live value
// may clash with a kept one (logs_dir set to the running eggs_dir).
func Live(running, loaded *Config) (next *Config, pending []string, err error) {
	n := *loaded
	n.Sources = maps.Clone(loaded.Sources)
	n.Raw = maps.Clone(loaded.Raw)
	for _, k := range Changed(running, loaded) {
		if _, ok := RestartOnly(k); !ok {
			continue
		}
		if derived[k] && running.Raw[k] == "" && loaded.Raw[k] == "" {
			continue // its default moved with another option; derive follows the kept one
		}
		reflect.ValueOf(options[k].ptr(&n)).Elem().Set(reflect.ValueOf(options[k].ptr(running)).Elem())
		n.Sources[k] = running.Sources[k]
		n.Raw[k] = running.Raw[k]
		pending = append(pending, k)
	}
	// A default derived from a kept value follows the kept value.
	n.derive()
	if err := n.validate(); err != nil {
		return nil, nil, fmt.Errorf("%w (with the running %v, which needs a restart to change)", err, pending)
	}
	return &n, slices.Clip(pending), nil
}
