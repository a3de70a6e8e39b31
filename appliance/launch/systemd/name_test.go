package systemd

import (
	"strings"
	"testing"
)

func TestUnitName(t *testing.T) {
	// Expected values are `systemd-escape -- "$job"` (systemd 252).
	for _, tc := range []struct{ job, unit string }{
		{"0123abcd", `scrapyd-crawl-0123abcd.service`},
		{"my-job", `scrapyd-crawl-my\x2djob.service`},
		{".hidden", `scrapyd-crawl-\x2ehidden.service`},
		{"a b", `scrapyd-crawl-a\x20b.service`},
		{"ünï", `scrapyd-crawl-\xc3\xbcn\xc3\xaf.service`},
		{`x\y`, `scrapyd-crawl-x\x5cy.service`},
		{"a:b_c.d", `scrapyd-crawl-a:b_c.d.service`},
	} {
		if got := UnitName(tc.job); got != tc.unit {
			t.Errorf("UnitName(%q) = %q, want %q", tc.job, got, tc.unit)
		}
		if job, ok := JobID(tc.unit); !ok || job != tc.job {
			t.Errorf("JobID(%q) = %q, %v; want %q", tc.unit, job, ok, tc.job)
		}
	}
}

func TestUnitNameLong(t *testing.T) {
	// 200 bytes (job.MaxNameLen) of two-byte runes escape to 800 bytes.
	long := strings.Repeat("é", 100)
	u := UnitName(long)
	if len(u) > unitNameMax || !strings.HasPrefix(u, "scrapyd-crawl--") || !isCrawlUnit(u) {
		t.Fatalf("UnitName(long) = %q (%d bytes)", u, len(u))
	}
	if u != UnitName(long) || u == UnitName(long+"x") {
		t.Fatal("hashed names must be stable and distinct")
	}
	if _, ok := JobID(u); ok {
		t.Fatal("JobID of a hashed name must report false")
	}
	// Just short enough to escape: the plain scheme still applies.
	fits := strings.Repeat("a", unitNameMax-len(unitPrefix)-len(unitSuffix))
	if got := UnitName(fits); got != unitPrefix+fits+unitSuffix {
		t.Fatalf("UnitName(%d bytes) = %q", len(fits), got)
	}
}

func TestJobIDRejects(t *testing.T) {
	for _, u := range []string{
		"scrapyd.service", "scrapyd-crawl-.service", "scrapyd-crawl-a.socket",
		`scrapyd-crawl-a\x2.service`, `scrapyd-crawl-a\q20.service`, "scrapyd-crawl-a b.service",
	} {
		if job, ok := JobID(u); ok {
			t.Errorf("JobID(%q) = %q, true; want false", u, job)
		}
	}
}

func TestIsCrawlUnit(t *testing.T) {
	for u, want := range map[string]bool{
		"scrapyd-crawl-abc.service": true,
		"sshd.service":              false,
		"scrapyd-crawl-.service":    false,
		"scrapyd.service":           false,
		"scrapyd-crawl-a/b.service": false,
	} {
		if got := isCrawlUnit(u); got != want {
			t.Errorf("isCrawlUnit(%q) = %v", u, got)
		}
	}
}
