// Package jobfiles owns where a job's files live (its log, items and
// JOBDIR, Scrapyd's layout under logs_dir, items_dir and jobs_dir) and the
// URLs the daemon serves them at. Crawls, listings and pages all ask here,
// so a path and its link cannot disagree.
package jobfiles

import (
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
)

// Paths are where a job's files live; "" when disabled.
type Paths struct {
	Log    string // logs_dir/P/S/ID.log
	Items  string // items_dir/P/S/ID.jl, for a local items_dir
	Feed   string // the feed URI, for a remote items_dir (s3://…)
	JobDir string // jobs_dir/P/S/ID
}

// Of returns Scrapyd's file locations for a job, so an existing Scrapyd
// data directory keeps working and tools that read them (ScrapydWeb,
// LogParser) find them.
func Of(cfg *config.Config, project, spider, id string) Paths {
	var p Paths
	if cfg.LogsDir != "" {
		p.Log = filepath.Join(cfg.LogsDir, project, spider, id+LogExt)
	}
	if local := LocalItemsDir(cfg); local != "" {
		p.Items = filepath.Join(local, project, spider, id+ItemsExt)
	} else if cfg.ItemsDir != "" {
		p.Feed, _ = feedURL(cfg.ItemsDir, project, spider, id)
	}
	if cfg.JobsDir != "" {
		p.JobDir = filepath.Join(cfg.JobsDir, project, spider, id)
	}
	return p
}

// LogExt and ItemsExt end a job's log and items file names (Scrapyd's).
const (
	LogExt   = ".log"
	ItemsExt = ".jl"
)

// FileID is the id of the job whose file is named name, a file of the kind
// ext ends (LogExt, ItemsExt) in a spider's directory, plain or
// Compressed; ok is false for any other file (LogParser's JSON, a
// temporary file).
func FileID(name, ext string) (id string, ok bool) {
	id, ok = strings.CutSuffix(strings.TrimSuffix(name, gzExt), ext)
	return id, ok && id != ""
}

// feedURL joins project/spider/job.jl onto a remote items_dir URL, keeping
// its scheme, host and query (Scrapyd's feed URI for a non-local items_dir).
func feedURL(base, project, spider, id string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + project + "/" + spider + "/" + id + ItemsExt
	return u.String(), nil
}

// LocalItemsDir is items_dir when it is a local directory (a path or a
// file:// URL, Scrapyd's local_items), "" when it is empty or a remote feed
// URL (s3://…). Only a local items_dir is served under /items/.
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

// CrawlDir is the working directory of crawls and listings: crawl_dir,
// whose default is the data directory (the `scrapy` user's home on an
// installed system).
func CrawlDir(cfg *config.Config) string { return cfg.CrawlDir }

// URLs are a job's /logs/ and /items/ links, whether or not the files
// exist ("" when the directory is not served, as in Scrapyd). Every name is
// percent-escaped here and nowhere else: a job id or project may hold a
// space, `%`, `#` or `?` (job.CheckName allows them), and the link must
// still reach the file.
func URLs(cfg *config.Config, project, spider, id string) (logURL, itemsURL string) {
	rel := escaped(project, spider, id)
	if cfg.LogsDir != "" {
		logURL = "/logs" + rel + LogExt
	}
	if LocalItemsDir(cfg) != "" {
		itemsURL = "/items" + rel + ItemsExt
	}
	return logURL, itemsURL
}

// HasItems says whether a job's items file exists in a local items_dir,
// plain or Compressed.
func HasItems(cfg *config.Config, project, spider, id string) bool {
	p := Of(cfg, project, spider, id).Items
	if p == "" {
		return false
	}
	for _, name := range []string{p, Compressed(p)} {
		if _, err := os.Stat(name); err == nil {
			return true
		}
	}
	return false
}

// LogParserURL is the link of LogParser's per-job JSON, beside the log
// (/logs/P/S/JOB.json, which the web pages answer from the job store);
// "" when logs are not served.
func LogParserURL(cfg *config.Config, project, spider, id string) string {
	if cfg.LogsDir == "" {
		return ""
	}
	return "/logs" + escaped(project, spider, id) + ".json"
}

// escaped is /project/spider/id, each percent-escaped.
func escaped(project, spider, id string) string {
	return "/" + url.PathEscape(project) + "/" + url.PathEscape(spider) + "/" + url.PathEscape(id)
}

// Index answers "does this job's log (items file) exist?" from one
// directory listing per project, spider and kind of file, not one stat per
// job, so that a thousand finished jobs list in a millisecond or two. It
// maps each such directory to the ids of the jobs with a file there, so a
// lookup builds no file name. An Index is for one listing: it does not see
// files created after it read a directory.
type Index map[dir]map[string]bool

// dir is base/project/spider's files ending in ext.
type dir struct{ base, project, spider, ext string }

// NewIndex returns an empty Index.
func NewIndex() Index { return Index{} }

func (ix Index) has(base, ext, project, spider, id string) bool {
	key := dir{base, project, spider, ext}
	ids, ok := ix[key]
	if !ok {
		ids = map[string]bool{}
		// Readdirnames neither sorts nor stats: only names are needed.
		if d, err := os.Open(filepath.Join(base, project, spider)); err == nil {
			names, _ := d.Readdirnames(-1)
			d.Close()
			for _, name := range names {
				// A compressed file keeps its plain URL (it is served
				// decompressed or with Content-Encoding there).
				if id, ok := FileID(name, ext); ok {
					ids[id] = true
				}
			}
		}
		ix[key] = ids
	}
	return ids[id]
}

// URLs are the job's links as URLs gives them, each "" when its file does
// not exist (listjobs.json's log_url and items_url).
func (ix Index) URLs(cfg *config.Config, project, spider, id string) (logURL, itemsURL string) {
	logURL, itemsURL = URLs(cfg, project, spider, id)
	if logURL != "" && !ix.has(cfg.LogsDir, LogExt, project, spider, id) {
		logURL = ""
	}
	if itemsURL != "" && !ix.has(LocalItemsDir(cfg), ItemsExt, project, spider, id) {
		itemsURL = ""
	}
	return logURL, itemsURL
}

// SizeComment is the gzip header comment a compressed log or items file
// carries: its decompressed size, so that it can be served by range
// without being read through (the trailer's ISIZE wraps at 4 GiB).
func SizeComment(n int64) string { return sizeCommentPrefix + strconv.FormatInt(n, 10) }

// ParseSizeComment reads SizeComment.
func ParseSizeComment(c string) (int64, bool) {
	s, ok := strings.CutPrefix(c, sizeCommentPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

const sizeCommentPrefix = "scrapyd size="

// Compressed is the name a finished crawl's file has once compressed.
func Compressed(path string) string { return path + gzExt }

const gzExt = ".gz"
