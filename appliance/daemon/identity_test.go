package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/runas"
)

// TestCrawlUserReach: what the crawl user must reach, and the fix each
// refusal gives (issue 13): eggs readable, and the directories crawls
// write in already existing ones theirs.
func TestCrawlUserReach(t *testing.T) {
	root, err := os.MkdirTemp("", "reach-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	cfg, err := config.Load(config.Options{Root: root, Env: []string{}, Cwd: root, Home: "-"})
	if err != nil {
		t.Fatal(err)
	}
	egg := filepath.Join(cfg.EggsDir, "p", "1.egg")
	spider := filepath.Join(cfg.LogsDir, "p", "s")
	for _, d := range []string{filepath.Dir(egg), spider} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(egg, nil, 0o644)
	nobody := &crawlUser{runas.User{Name: "nobody", UID: 65534, GID: 65534}}

	if err := (*crawlUser)(nil).canReach(cfg); err != nil {
		t.Errorf("no crawl user (the daemon is not root): %v", err)
	}
	refused := func(what, want string) {
		t.Helper()
		if err := nobody.canReach(cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v\nwant %q", what, err, want)
		}
	}
	os.Chmod(egg, 0o600)
	refused("an unreadable egg", "cannot reach an egg "+egg+" (owner")
	os.Chmod(egg, 0o644)
	refused("a per-spider log directory not the crawl user's",
		"cannot reach a per-spider directory of logs_dir "+spider+" (owner")
	refused("its fix", "run `chown nobody: "+spider+"`")
	if os.Geteuid() != 0 {
		return // the rest gives files to nobody
	}
	os.Chown(spider, 65534, 65534)
	scrapyDir := filepath.Join(cfg.CrawlDir, ".scrapy")
	os.Mkdir(scrapyDir, 0o755)
	refused("Scrapy's data directory not the crawl user's", "cannot reach Scrapy's data directory "+scrapyDir)
	os.Chown(scrapyDir, 65534, 65534)
	if err := nobody.canReach(cfg); err != nil {
		t.Errorf("all fixed: %v", err)
	}
}
