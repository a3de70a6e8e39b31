package journal

import (
	"context"
	"log/slog"
	"maps"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

type sent struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

func capture(level slog.Level) (*slog.Logger, *[]sent) {
	var got []sent
	h := New(func(m string, p journal.Priority, v map[string]string) error {
		got = append(got, sent{m, p, maps.Clone(v)})
		return nil
	}, level)
	return slog.New(h), &got
}

// The keys style.md asks every log line about a job to use become the
// fields `journalctl SCRAPYD_JOB=...` selects on, from the logger's With
// as from the call; the level becomes PRIORITY; the message keeps every
// attribute, as scrapyd.log shows it.
func TestFieldsAndPriority(t *testing.T) {
	log, got := capture(slog.LevelDebug)
	log.With("project", "books", "spider", "toscrape").Info("crawl ended", "job", "0123abcd", "outcome", "finished", "finish_reason", "closed spider")
	log.Warn("configuration change needs a restart", "option", "http_port")
	log.Error("cannot record the crawl's end", "job", "j2", "err", "disk full")
	log.Debug("configuration unchanged")
	want := []sent{
		{`crawl ended project=books spider=toscrape job=0123abcd outcome=finished finish_reason="closed spider"`, journal.PriInfo,
			map[string]string{"SYSLOG_IDENTIFIER": "scrapyd", "SCRAPYD_PROJECT": "books", "SCRAPYD_SPIDER": "toscrape", "SCRAPYD_JOB": "0123abcd"}},
		{`configuration change needs a restart option=http_port`, journal.PriWarning, map[string]string{"SYSLOG_IDENTIFIER": "scrapyd"}},
		{`cannot record the crawl's end job=j2 err="disk full"`, journal.PriErr, map[string]string{"SYSLOG_IDENTIFIER": "scrapyd", "SCRAPYD_JOB": "j2"}},
		{`configuration unchanged`, journal.PriDebug, map[string]string{"SYSLOG_IDENTIFIER": "scrapyd"}},
	}
	if len(*got) != len(want) {
		t.Fatalf("sent %d entries, want %d: %+v", len(*got), len(want), *got)
	}
	for i, w := range want {
		g := (*got)[i]
		if g.msg != w.msg || g.pri != w.pri || !maps.Equal(g.vars, w.vars) {
			t.Errorf("entry %d = %q priority %d %v;\nwant %q priority %d %v", i, g.msg, g.pri, g.vars, w.msg, w.pri, w.vars)
		}
	}
}

// A grouped "job" is some other thing's, not the crawl's: it is no field.
func TestGroupsAreNotFields(t *testing.T) {
	log, got := capture(slog.LevelInfo)
	log.WithGroup("peer").Info("hello", "job", "x")
	log.Info("nested", slog.Group("req", "job", "y"))
	for _, g := range *got {
		if _, ok := g.vars["SCRAPYD_JOB"]; ok {
			t.Errorf("%q: a grouped job became SCRAPYD_JOB=%s", g.msg, g.vars["SCRAPYD_JOB"])
		}
	}
	if (*got)[0].msg != "hello peer.job=x" || (*got)[1].msg != "nested req.job=y" {
		t.Errorf("messages = %q, %q", (*got)[0].msg, (*got)[1].msg)
	}
}

// The level is the daemon's (debug on or off), as for scrapyd.log.
func TestLevel(t *testing.T) {
	var lv slog.LevelVar
	h := New(func(string, journal.Priority, map[string]string) error { return nil }, &lv)
	if h.Enabled(context.Background(), slog.LevelDebug) {
		t.Fatal("debug enabled at info")
	}
	lv.Set(slog.LevelDebug)
	if !h.Enabled(context.Background(), slog.LevelDebug) {
		t.Fatal("debug disabled at debug")
	}
}

func TestUnderSystemd(t *testing.T) {
	none := func(string) string { return "" }
	if UnderSystemd(none) {
		t.Fatal("under systemd without INVOCATION_ID or JOURNAL_STREAM")
	}
}
