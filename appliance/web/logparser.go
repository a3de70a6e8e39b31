package web

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/logstats"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// LogParser writes stats.json and P/S/JOB.json into logs_dir, and
// ScrapydWeb fetches them from Scrapyd's /logs/ (views/api.py:
// `liststats='logs/stats'`; views/files/log.py:
// `u'http://{}/logs/{}/{}/{}.json'`). We answer both from the job store
// at those paths, unless logs_dir holds a real file there (a LogParser
// still running beside us keeps being served).

// logParserStats serves /logs/stats.json.
func (h *handlers) logParserStats(c *fiber.Ctx) error {
	cfg := h.o.Config()
	if cfg.LogsDir == "" || exists(filepath.Join(cfg.LogsDir, "stats.json")) {
		return c.Next()
	}
	l, err := h.o.Service.Jobs(c.UserContext(), service.JobsQuery{})
	if err != nil {
		return err
	}
	var jobs []logstats.Job
	for _, list := range [][]service.Entry{l.Running, l.Finished} {
		for _, e := range list {
			if e.LogURL == "" {
				continue // LogParser only knows jobs with a log file
			}
			jobs = append(jobs, h.logParserJob(c, cfg, e.Job))
		}
	}
	return sendPythonJSON(c, logstats.Stats(jobs, time.Now()))
}

// logParserJobFile serves /logs/P/S/JOB.json.
func (h *handlers) logParserJobFile(c *fiber.Ctx) error {
	cfg := h.o.Config()
	project, spider, file := param(c, "project"), param(c, "spider"), param(c, "file")
	id, ok := strings.CutSuffix(file, ".json")
	if !ok || cfg.LogsDir == "" || strings.ContainsAny(project+spider+id, "/\\\x00") ||
		exists(filepath.Join(cfg.LogsDir, project, spider, file)) {
		return c.Next()
	}
	j, err := h.o.Service.Status(c.UserContext(), id, project)
	if err != nil || j == nil || j.Spider != spider || j.State == job.Pending {
		return c.Next()
	}
	lj := h.logParserJob(c, cfg, j)
	if lj.LogPath == "" {
		return c.Next()
	}
	f := logstats.Of(lj, time.Now())
	// ScrapydWeb's Stats page shows the log's first and last lines.
	log := jobfiles.Of(cfg, j.Project, j.Spider, j.ID).Log
	f.Head = logHead(lj.LogPath, logstats.HeadLines)
	text, _, _ := readTail(log, logTail, j.State != job.Finished)
	f.Tail = lastLines(text, logstats.TailLines)
	return sendPythonJSON(c, f)
}

// logHead is the first n lines of a log (plain or gzip), from at most
// logTail bytes.
func logHead(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return ""
		}
		r = zr
	}
	data, _ := io.ReadAll(io.LimitReader(r, logTail))
	lines := strings.SplitAfterN(string(data), "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.TrimRight(strings.Join(lines, ""), "\r\n")
}

// lastLines is the last n lines of text.
func lastLines(text string, n int) string {
	text = strings.TrimRight(text, "\r\n")
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logParserJob gathers what logstats needs about one job.
func (h *handlers) logParserJob(c *fiber.Ctx, cfg *config.Config, j *job.Job) logstats.Job {
	lj := logstats.Job{Job: *j, Stats: h.stats(j), Runtime: runtime(j.Started, j.Ended)}
	log := jobfiles.Of(cfg, j.Project, j.Spider, j.ID).Log
	for _, p := range []string{log, jobfiles.Compressed(log)} {
		if info, err := os.Stat(p); err == nil && info.Mode().IsRegular() {
			lj.LogPath, lj.LogSize = p, info.Size()
			break
		}
	}
	lj.JSONURL = c.BaseURL() + h.prefix(c) + jobfiles.LogParserURL(cfg, j.Project, j.Spider, j.ID)
	return lj
}

// sendPythonJSON answers JSON the way LogParser writes it (json.dumps
// with indent=4 and ensure_ascii=False).
func sendPythonJSON(c *fiber.Ctx, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, "application/json")
	return c.Send(b.Bytes())
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
