package config

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

func settingsKey(name string) string { return "[settings] " + name }

// Show writes c for `scrapyd config show`: the files read, then every option
// with its effective value, whether a change applies live, and where it was
// set (a file and line, an environment variable, "(built-in)", or
// "(default, …)" for a path the layout or another option decided). The
// password is never printed.
func Show(w io.Writer, c *Config) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "# files read, in order:")
	for _, f := range c.Files {
		fmt.Fprintf(tw, "#   %s\n", f)
	}
	fmt.Fprintln(tw, "[scrapyd]\tVALUE\tAPPLIES\tSET BY")
	for _, k := range Names() {
		applies := "live"
		if _, ok := RestartOnly(k); ok {
			applies = "restart"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k, shown(c, k), applies, c.Sources[k])
	}
	if len(c.Settings) > 0 {
		fmt.Fprintln(tw, "[settings]\tVALUE\tAPPLIES\tSET BY")
		names := make([]string, 0, len(c.Settings))
		for n := range c.Settings {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(tw, "%s\t%s\tlive\t%s\n", n, c.Settings[n], c.Sources[settingsKey(n)])
		}
	}
	// A webhook's secret, like the password, is never printed.
	for _, w := range c.Webhooks {
		fmt.Fprintf(tw, "[%s%s]\tVALUE\tAPPLIES\tSET BY\n", webhookPrefix, w.Name)
		fmt.Fprintf(tw, "url\t%s\tlive\t%s\n", w.URL, c.Sources[webhookKey(w.Name, "url")])
		fmt.Fprintf(tw, "secret\t(set)\tlive\t%s\n", c.Sources[webhookKey(w.Name, "secret")])
	}
	return tw.Flush()
}

// shown is an option's value as written, on one line. An empty string
// option shows the value the daemon derived from it (node_name's host
// name), and "" when there is none, so that no column is blank.
func shown(c *Config, key string) string {
	v := c.Raw[key]
	if key == "password" {
		if v != "" {
			return "(set)"
		}
		return "(not set)"
	}
	if s, ok := options[key].ptr(c).(*string); ok && v == "" {
		v = *s
	}
	if v == "" {
		return `""`
	}
	return strings.ReplaceAll(v, "\n", " ")
}
