package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Webhook is one [webhook:NAME] section: a receiver every job event is
// POSTed to, and the secret that signs each body (issue 17 point 3).
// Several sections give several receivers, each with its own secret;
// a change applies live.
type Webhook struct {
	Name   string // the section's NAME
	URL    string
	Secret string
}

const webhookPrefix = "webhook:"

func webhookKey(name, key string) string { return "[" + webhookPrefix + name + "] " + key }

// setWebhook applies one option of a [webhook:NAME] section.
func (c *Config) setWebhook(e entry) error {
	name := strings.TrimSpace(strings.TrimPrefix(e.section, webhookPrefix))
	if name == "" {
		return fmt.Errorf("%s: [%s]: a webhook section needs a name: [webhook:NAME]", e.source, e.section)
	}
	i := slices.IndexFunc(c.Webhooks, func(w Webhook) bool { return w.Name == name })
	if i < 0 {
		c.Webhooks = append(c.Webhooks, Webhook{Name: name})
		i = len(c.Webhooks) - 1
	}
	w := &c.Webhooks[i]
	switch e.key {
	case "url":
		w.URL = e.value
	case "secret":
		w.Secret = e.value
	default:
		return fmt.Errorf("%s: [%s]: unknown option %q (a webhook has url and secret)", e.source, e.section, e.key)
	}
	c.Sources[webhookKey(name, e.key)] = e.source
	return nil
}

// validateWebhooks refuses a webhook that could never be delivered or
// verified, and sorts them by name.
func (c *Config) validateWebhooks() error {
	slices.SortFunc(c.Webhooks, func(a, b Webhook) int { return strings.Compare(a.Name, b.Name) })
	for i, w := range c.Webhooks {
		fail := func(key, format string, a ...any) error {
			src := c.Sources[webhookKey(w.Name, key)]
			if src.File == "" {
				src = c.Sources[webhookKey(w.Name, "url")]
				if src.File == "" {
					src = c.Sources[webhookKey(w.Name, "secret")]
				}
			}
			return fmt.Errorf("%s: [%s%s] %s: %s", src, webhookPrefix, w.Name, key, fmt.Sprintf(format, a...))
		}
		u, err := url.Parse(w.URL)
		if w.URL == "" {
			return fail("url", "missing: the receiver's http:// or https:// URL")
		}
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fail("url", "%q is not an http:// or https:// URL", w.URL)
		}
		// The receiver checks each body's signature: without a secret it
		// could not tell our events from anyone's.
		if w.Secret == "" {
			return fail("secret", "missing: each webhook signs its bodies with its own secret")
		}
		if j := slices.IndexFunc(c.Webhooks[:i], func(o Webhook) bool { return o.URL == w.URL }); j >= 0 {
			return fail("url", "%s is also [%s%s]'s: each receiver gets every event once", w.URL, webhookPrefix, c.Webhooks[j].Name)
		}
	}
	return nil
}

// changedWebhooks names the [webhook:NAME] sections that differ.
func changedWebhooks(a, b *Config) []string {
	var out []string
	names := map[string]bool{}
	for _, w := range append(slices.Clone(a.Webhooks), b.Webhooks...) {
		names[w.Name] = true
	}
	find := func(c *Config, name string) Webhook {
		for _, w := range c.Webhooks {
			if w.Name == name {
				return w
			}
		}
		return Webhook{}
	}
	for name := range names {
		if find(a, name) != find(b, name) {
			out = append(out, "["+webhookPrefix+name+"]")
		}
	}
	slices.Sort(out)
	return out
}
