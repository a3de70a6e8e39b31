// Package logstats writes LogParser's files, /logs/stats.json and
// /logs/P/S/JOB.json, from what the daemon already knows about a job (its
// times, its final or live Scrapy stats, the log counts stored when it
// ended), so that ScrapydWeb's Stats, Jobs and alert pages work with no
// LogParser installed. The shapes are LogParser 0.8.4's
// (my8100/logparser, logparser/logparser.py and scrapylogparser.py).
package logstats

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/logscan"
)

// Version is the logparser_version we write. ScrapydWeb ignores any file
// whose version is not the LogParser it depends on (views/files/log.py:
// `js.get('logparser_version') != self.LOGPARSER_VERSION`), and ScrapydWeb
// requires logparser>=0.8.4, the latest release.
const Version = "0.8.4"

// NA is LogParser's Common.NA.
const NA = "N/A"

// Job is one job as the daemon knows it.
type Job struct {
	job.Job
	// Stats are the crawl's live stats while it runs, else its stored
	// final stats (with the log counts logscan stored), numbers as
	// json.Number; nil when none.
	Stats   map[string]any
	Runtime string // str(timedelta) of its run so far
	LogPath string // the log file on disk (maybe .gz)
	LogSize int64
	JSONURL string // where this job's JSON is served
}

// HeadLines and TailLines are LogParser's LOG_HEAD_LINES and
// LOG_TAIL_LINES defaults (logparser/settings.py): how much of the log a
// JobFile's Head and Tail carry, which the caller fills in.
const (
	HeadLines = 100
	TailLines = 200
)

// JobFile is LogParser's per-job JSON (the data of handle_logfile after
// parse and handle_telnet), in LogParser's key order. The log's "Crawled
// N pages" history and latest matching lines are not kept by the daemon:
// they are empty, as LogParser leaves them for a log it has not parsed.
type JobFile struct {
	LogPath               string               `json:"log_path"`
	JSONPath              string               `json:"json_path"`
	JSONURL               string               `json:"json_url"`
	Size                  int64                `json:"size"`
	Position              int64                `json:"position"`
	Status                string               `json:"status"`
	Head_                 string               `json:"_head"`
	Head                  string               `json:"head"`
	Tail                  string               `json:"tail"`
	FirstLogTime          string               `json:"first_log_time"`
	LatestLogTime         string               `json:"latest_log_time"`
	Runtime               string               `json:"runtime"`
	FirstLogTimestamp     int64                `json:"first_log_timestamp"`
	LatestLogTimestamp    int64                `json:"latest_log_timestamp"`
	Datas                 [][]any              `json:"datas"`
	Pages                 any                  `json:"pages"` // int or null, as LogParser
	Items                 any                  `json:"items"` // int or null
	LatestMatches         map[string]string    `json:"latest_matches"`
	LatestCrawlTimestamp  int64                `json:"latest_crawl_timestamp"`
	LatestScrapeTimestamp int64                `json:"latest_scrape_timestamp"`
	LogCategories         map[string]*category `json:"log_categories"`
	ShutdownReason        string               `json:"shutdown_reason"`
	FinishReason          string               `json:"finish_reason"`
	CrawlerStats          orderedStats         `json:"crawler_stats"`
	LastUpdateTime        string               `json:"last_update_time"`
	LastUpdateTimestamp   int64                `json:"last_update_timestamp"`
	LogparserVersion      string               `json:"logparser_version"`
	CrawlerEngine         map[string]any       `json:"crawler_engine"`
}

type category struct {
	Count   any      `json:"count"`
	Details []string `json:"details"`
}

// Entry is a job in stats.json: LogParser's SIMPLIFIED_KEYS without _head
// (save_datas pops it "to simplify data for 'List Stats'").
type Entry struct {
	LogPath        string `json:"log_path"`
	JSONPath       string `json:"json_path"`
	JSONURL        string `json:"json_url"`
	Size           int64  `json:"size"`
	Position       int64  `json:"position"`
	Status         string `json:"status"`
	Pages          any    `json:"pages"`
	Items          any    `json:"items"`
	FirstLogTime   string `json:"first_log_time"`
	LatestLogTime  string `json:"latest_log_time"`
	Runtime        string `json:"runtime"`
	ShutdownReason string `json:"shutdown_reason"`
	FinishReason   string `json:"finish_reason"`
	LastUpdateTime string `json:"last_update_time"`
}

// StatsFile is stats.json (LogParser's get_default_stats plus datas:
// project → spider → job → Entry).
type StatsFile struct {
	Status              string                                 `json:"status"`
	Datas               map[string]map[string]map[string]Entry `json:"datas"`
	SettingsPy          string                                 `json:"settings_py"`
	Settings            map[string]any                         `json:"settings"`
	LastUpdateTimestamp int64                                  `json:"last_update_timestamp"`
	LastUpdateTime      string                                 `json:"last_update_time"`
	LogparserVersion    string                                 `json:"logparser_version"`
}

// clock is LogParser's '%Y-%m-%d %H:%M:%S' in local time.
func clock(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }

// Of is a job's JobFile at now.
func Of(j Job, now time.Time) JobFile {
	e := entry(j, now)
	f := JobFile{
		LogPath: e.LogPath, JSONPath: e.JSONPath, JSONURL: e.JSONURL, Size: e.Size, Position: e.Position, Status: e.Status,
		FirstLogTime: e.FirstLogTime, LatestLogTime: e.LatestLogTime, Runtime: e.Runtime,
		Datas: [][]any{}, LatestMatches: map[string]string{}, LogCategories: map[string]*category{},
		Pages: e.Pages, Items: e.Items, ShutdownReason: e.ShutdownReason, FinishReason: e.FinishReason, CrawlerStats: orderedStats{},
		LastUpdateTime: e.LastUpdateTime, LastUpdateTimestamp: now.Unix(),
		LogparserVersion: Version, CrawlerEngine: map[string]any{},
	}
	if !j.Started.IsZero() {
		f.FirstLogTimestamp, f.LatestLogTimestamp = j.Started.Unix(), latest(j, now).Unix()
	}
	// scrapylogparser.py extract_latest_matches: these keys, "" unmatched.
	for _, k := range []string{"scrapy_version", "telnet_console", "telnet_username", "telnet_password", "resuming_crawl",
		"latest_offsite", "latest_duplicate", "latest_crawl", "latest_stat", "latest_scrape", "latest_item"} {
		f.LatestMatches[k] = ""
	}
	f.categories(j.Stats)
	if len(j.Stats) > 0 {
		// LogParser's get_ordered_dict: source and update time first (ScrapydWeb
		// pops all three), then the stats sorted by key. 'log' marks a
		// finished crawl's dumped stats, 'telnet' live ones.
		source := "log"
		if j.State == job.Running {
			source = "telnet"
		}
		f.CrawlerStats = orderedStats{{"source", source}, {"last_update_time", f.LastUpdateTime}, {"last_update_timestamp", f.LastUpdateTimestamp}}
		keys := make([]string, 0, len(j.Stats))
		for k := range j.Stats {
			if !strings.HasPrefix(k, countPrefix) {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			f.CrawlerStats = append(f.CrawlerStats, kv{k, j.Stats[k]})
		}
	}
	return f
}

// countPrefix starts the keys logscan.Counts are stored under.
const countPrefix = "scrapyd/log_count/"

// categories fills log_categories from the stored log counts, each
// replaced by the crawl's own stat when that is above zero, as LogParser's
// update_data_with_crawler_stats does once Scrapy dumped its stats:
//
//	STATS_DUMPED_CATEGORIES_DICT = dict(
//	    critical_logs='log_count/CRITICAL',
//	    error_logs='log_count/ERROR',
//	    warning_logs='log_count/WARNING',
//	    # redirect_logs= ,
//	    retry_logs='retry/count',
//	    ignore_logs='httperror/response_ignored_count',
//	)
//
// and redirect_logs is the sum of downloader/response_status_count/3xx.
func (f *JobFile) categories(stats map[string]any) {
	var c logscan.Counts
	if raw, err := json.Marshal(stats); err == nil {
		json.Unmarshal(raw, &c) // picks the scrapyd/log_count/* keys
	}
	redirects := int64(0)
	for k, v := range stats {
		if strings.HasPrefix(k, "downloader/response_status_count/3") {
			if n, ok := asInt(v); ok {
				redirects += n
			}
		}
	}
	for _, x := range []struct {
		name, stat string
		count      int
	}{
		{"critical_logs", "log_count/CRITICAL", c.Critical},
		{"error_logs", "log_count/ERROR", c.Error},
		{"warning_logs", "log_count/WARNING", c.Warning},
		{"redirect_logs", "", c.Redirect},
		{"retry_logs", "retry/count", c.Retry},
		{"ignore_logs", "httperror/response_ignored_count", c.Ignore},
	} {
		n := int64(x.count)
		if x.stat == "" && redirects > 0 {
			n = redirects
		} else if s, ok := asInt(stats[x.stat]); ok && s > 0 {
			n = s
		}
		f.LogCategories[x.name] = &category{Count: n, Details: []string{}}
	}
}

// entry is the job's stats.json entry, the part of its JobFile that
// stats.json keeps, made without the rest (log categories, ordered stats)
// that a listing of every job would throw away.
func entry(j Job, now time.Time) Entry {
	e := Entry{
		LogPath: j.LogPath, JSONPath: jsonPath(j.LogPath), JSONURL: j.JSONURL,
		Size: j.LogSize, Position: j.LogSize, Status: "ok",
		FirstLogTime: NA, LatestLogTime: NA, Runtime: NA,
		ShutdownReason: NA, FinishReason: NA, LastUpdateTime: clock(now),
	}
	if !j.Started.IsZero() {
		e.FirstLogTime, e.LatestLogTime, e.Runtime = clock(j.Started), clock(latest(j, now)), j.Runtime
	}
	// update_data_with_crawler_stats: pages and items from the stats, else None.
	e.Pages, e.Items = intOrNil(j.Stats["response_received_count"]), intOrNil(j.Stats["item_scraped_count"])
	if r, ok := j.Stats["finish_reason"].(string); ok && r != "" {
		e.FinishReason = r
	}
	return e
}

// latest is the time of a started job's last log line: its end, or now
// while it runs.
func latest(j Job, now time.Time) time.Time {
	if j.Ended.IsZero() {
		return now
	}
	return j.Ended
}

// Stats is stats.json for jobs at now.
func Stats(jobs []Job, now time.Time) StatsFile {
	s := StatsFile{
		Status: "ok", Datas: map[string]map[string]map[string]Entry{}, Settings: map[string]any{},
		LastUpdateTimestamp: now.Unix(), LastUpdateTime: clock(now), LogparserVersion: Version,
	}
	for _, j := range jobs {
		if s.Datas[j.Project] == nil {
			s.Datas[j.Project] = map[string]map[string]Entry{}
		}
		if s.Datas[j.Project][j.Spider] == nil {
			s.Datas[j.Project][j.Spider] = map[string]Entry{}
		}
		s.Datas[j.Project][j.Spider][j.ID] = entry(j, now)
	}
	return s
}

// jsonPath is where LogParser would write the job's JSON: beside its log.
func jsonPath(logPath string) string {
	if logPath == "" {
		return ""
	}
	p := strings.TrimSuffix(logPath, ".gz")
	if i := strings.LastIndexByte(p, '.'); i > strings.LastIndexByte(p, '/') {
		p = p[:i]
	}
	return p + ".json"
}

func asInt(v any) (int64, bool) {
	switch v := v.(type) {
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	case float64:
		return int64(v), v == float64(int64(v))
	case int:
		return int64(v), true
	case int64:
		return v, true
	}
	return 0, false
}

func intOrNil(v any) any {
	if n, ok := asInt(v); ok {
		return n
	}
	return nil
}

// orderedStats is a JSON object that keeps its keys' order.
type orderedStats []kv

type kv struct {
	k string
	v any
}

func (o orderedStats) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, x := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(x.k)
		v, err := json.Marshal(x.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}
