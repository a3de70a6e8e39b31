package logscan

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sample has one record of each kind, a multi-line traceback, a retry
// given up on, and a line too long for the buffer.
var sample = strings.Join([]string{
	"2026-01-01 00:00:01 [scrapy.utils.log] INFO: Scrapy 2.8.0 started (bot: demo)",
	"2026-01-01 00:00:02 [scrapy.downloadermiddlewares.redirect] DEBUG: Redirecting (302) to <GET http://a/b> from <GET http://a/>",
	"2026-01-01 00:00:03 [scrapy.downloadermiddlewares.retry] DEBUG: Retrying <GET http://a/c> (failed 1 times): 500 Internal Server Error",
	"2026-01-01 00:00:04 [scrapy.downloadermiddlewares.retry] ERROR: Gave up retrying <GET http://a/c> (failed 3 times): 500 Internal Server Error",
	"2026-01-01 00:00:05 [scrapy.spidermiddlewares.httperror] INFO: Ignoring response <404 http://a/d>: HTTP status code is not handled or not allowed",
	"2026-01-01 00:00:06 [scrapy.core.scraper] ERROR: Spider error processing <GET http://a/e> (referer: None)",
	"Traceback (most recent call last):",
	"2026-01-01 00:00:06 is not a record start here] ERROR: but LogParser would count it too",
	"  ValueError: boom",
	"2026-01-01 00:00:07 [demo] WARNING: careful " + strings.Repeat("x", 200<<10),
	"2026-01-01 00:00:08 [demo] CRITICAL: down",
	"2026-01-01 00:00:09 [scrapy.core.engine] INFO: Closing spider (finished)",
}, "\n") + "\n"

func TestScanCountsLikeLogParser(t *testing.T) {
	got, err := Scan(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{Critical: 1, Error: 3, Warning: 1, Redirect: 1, Retry: 1, Ignore: 1}
	if got != want {
		t.Errorf("Scan = %+v, want %+v", got, want)
	}
}

// LogParser's own expressions, copied from logparser/common.py and
// logparser/scrapylogparser.py (my8100/logparser), run on the same log
// under Debian's Python: the counts must agree.
const logparserCounts = `
import json, re, sys
DATETIME_PATTERN = r'\d{4}-\d{2}-\d{2}[ ]\d{2}:\d{2}:\d{2}'
LOG_CATEGORIES_PATTERN_DICT = dict(
    critical_logs=r'\][ ]CRITICAL:',            # [test] CRITICAL:
    error_logs=r'\][ ]ERROR:',                  # [test] ERROR:
    warning_logs=r'\][ ]WARNING:',              # [test] WARNING:
    redirect_logs=r':[ ]Redirecting[ ]\(',      # DEBUG: Redirecting (302) to <GET
    retry_logs=r'[ ][Rr]etrying[ ]<',           # DEBUG: Retrying <GET      DEBUG: Gave up retrying <GET
    ignore_logs=r':[ ]Ignoring[ ]response[ ]<'  # INFO: Ignoring response <404
)
for k, v in LOG_CATEGORIES_PATTERN_DICT.items():
    p = re.compile(r"""\n
                    ({time_}[ ][^\n]+?{pattern}.*?)                                  # first line (and its details)
                    (?=\r?\n{time_}[ ][^\n]+?(?:DEBUG|INFO|WARNING|ERROR|CRITICAL))  # ?=: Would not consume strings
                   """.format(time_=DATETIME_PATTERN, pattern=v), re.VERBOSE | re.DOTALL)
    LOG_CATEGORIES_PATTERN_DICT[k] = p
text = open(sys.argv[1], encoding='utf-8').read().strip()
text = '\n%s\n2019-01-01 00:00:01 [] DEBUG' % text
out = {}
for level, pattern in LOG_CATEGORIES_PATTERN_DICT.items():
    matches = re.findall(pattern, text)
    # DEBUG: Gave up retrying <GET
    if level == 'retry_logs' and matches:
        count = len([i for i in matches if 'Gave up retrying <' not in i])
    else:
        count = len(matches)
    out[level] = count
print(json.dumps(out))
`

func TestScanAgreesWithLogParsersExpressions(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	path := filepath.Join(t.TempDir(), "job.log")
	if err := os.WriteFile(path, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/usr/bin/python3", "-c", logparserCounts, path).Output()
	if err != nil {
		t.Fatal(err)
	}
	var lp map[string]int
	if err := json.Unmarshal(out, &lp); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	got, _ := Scan(strings.NewReader(sample))
	mine := map[string]int{"critical_logs": got.Critical, "error_logs": got.Error, "warning_logs": got.Warning,
		"redirect_logs": got.Redirect, "retry_logs": got.Retry, "ignore_logs": got.Ignore}
	for k, n := range lp {
		if mine[k] != n {
			t.Errorf("%s: Scan counts %d, LogParser %d", k, mine[k], n)
		}
	}
	if len(lp) != 6 {
		t.Errorf("LogParser categories: %v", lp)
	}
}

func BenchmarkScan(b *testing.B) {
	data := []byte(strings.Repeat(sample, 1000))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		Scan(strings.NewReader(string(data)))
	}
}
