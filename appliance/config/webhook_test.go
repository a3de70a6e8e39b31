package config

import (
	"path/filepath"
	"slices"
	"testing"
)

// Several receivers, each with its own secret, sorted by name; a change of
// any is a live change (issue 17 point 3).
func TestWebhooks(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "etc/scrapyd/scrapyd.conf")
	write(t, path, "[webhook:b]\nurl = https://b.example/y\nsecret = sb\n[webhook:a]\nurl = http://127.0.0.1:9/x\nsecret = sa\n")
	c, err := Load(opts(root))
	if err != nil {
		t.Fatal(err)
	}
	want := []Webhook{{"a", "http://127.0.0.1:9/x", "sa"}, {"b", "https://b.example/y", "sb"}}
	if !slices.Equal(c.Webhooks, want) {
		t.Fatalf("webhooks = %+v, want %+v", c.Webhooks, want)
	}
	write(t, path, "[webhook:b]\nurl = https://b.example/y\nsecret = other\n")
	d, err := Load(opts(root))
	if err != nil {
		t.Fatal(err)
	}
	if got := Changed(c, d); !slices.Equal(got, []string{"[webhook:a]", "[webhook:b]"}) {
		t.Fatalf("Changed = %q", got)
	}
	next, pending, err := Live(c, d)
	if err != nil || len(pending) != 0 || !slices.Equal(next.Webhooks, d.Webhooks) {
		t.Fatalf("Live = %+v, %v, %v; webhooks apply live", next.Webhooks, pending, err)
	}
}
