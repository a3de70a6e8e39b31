package dispatch

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapy"
)

// JobPaths are where a job's files live; "" when disabled.
type JobPaths struct {
	Log      string // logs_dir/P/S/ID.log
	Items    string // items_dir/P/S/ID.jl, for a local items_dir
	ItemsURL string // the feed URI, for a remote items_dir (s3://…)
	JobDir   string // jobs_dir/P/S/ID
}

// Paths are Scrapyd's file locations for a job, so an existing Scrapyd data
// directory keeps working and tools that read them (ScrapydWeb, LogParser)
// find them.
func Paths(cfg *config.Config, project, spider, id string) JobPaths {
	var p JobPaths
	if cfg.LogsDir != "" {
		p.Log = filepath.Join(cfg.LogsDir, project, spider, id+".log")
	}
	if local := LocalItemsDir(cfg); local != "" {
		p.Items = filepath.Join(local, project, spider, id+".jl")
	} else if cfg.ItemsDir != "" {
		p.ItemsURL, _ = scrapy.URLFeed(cfg.ItemsDir, project, spider, id)
	}
	if cfg.JobsDir != "" {
		p.JobDir = filepath.Join(cfg.JobsDir, project, spider, id)
	}
	return p
}

// LocalItemsDir is items_dir when it is a local directory (a path or a
// file:// URL), "" when it is empty or a remote feed URL (s3://…).
func LocalItemsDir(cfg *config.Config) string {
	if strings.Contains(cfg.ItemsDir, "://") && !strings.HasPrefix(cfg.ItemsDir, "file://") {
		return ""
	}
	return strings.TrimPrefix(cfg.ItemsDir, "file://")
}

// Hidden are the directories uploaded code must not even read, in a crawl
// or while its spiders are listed: the egg store (other projects' code and
// settings) and the job database (every spider argument).
func Hidden(cfg *config.Config) []string { return []string{cfg.EggsDir, cfg.DbsDir} }

// CrawlDir is the crawls' working directory: the data directory, the
// `scrapy` user's home on an installed system.
func CrawlDir(cfg *config.Config) string { return filepath.Join(cfg.Root, "var", "lib", "scrapyd") }

// prune keeps the newest keep files of a per-spider directory (Scrapyd's
// jobs_to_keep, applied before a new job's file exists; 0 keeps all).
func prune(dir string, keep int) {
	if keep <= 0 {
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) <= keep {
		return
	}
	type file struct {
		name  string
		mtime int64
	}
	var files []file
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			files = append(files, file{e.Name(), info.ModTime().UnixNano()})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mtime > files[j].mtime })
	for i := keep; i < len(files); i++ {
		os.Remove(filepath.Join(dir, files[i].name))
	}
}

var finishReasonRE = regexp.MustCompile(`'finish_reason': '([a-z_]+)'`)

// finishReason reads Scrapy's finish_reason from the stats it dumps at the
// end of its log ("" if the log has none): it tells a graceful cancel
// ("shutdown", "cancelled") from a finished crawl when no exit status is
// known.
func finishReason(logFile string) string {
	if logFile == "" {
		return ""
	}
	f, err := os.Open(logFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	const tail = 16 << 10
	if info, err := f.Stat(); err == nil && info.Size() > tail {
		f.Seek(info.Size()-tail, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	m := finishReasonRE.FindAllSubmatch(data, -1)
	if len(m) == 0 {
		return ""
	}
	return string(bytes.TrimSpace(m[len(m)-1][1]))
}

func appendLine(path, line string) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return
	}
	defer f.Close()
	f.WriteString(line + "\n")
}
