package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/pyenv"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// logTail bounds the log a job page embeds; the live stream sends the rest
// as it is written.
const logTail = 64 << 10

// pageSize is how many finished jobs one /browse page shows.
const pageSize = 50

// findJob looks a job up by project and id. A deleted project's history
// stays (as in Scrapyd), but Service.Status refuses unknown projects, so
// the lookup falls back to the id alone and checks the project itself.
func (h *handlers) findJob(ctx context.Context, project, id string) (*job.Job, error) {
	j, err := h.o.Service.Status(ctx, id, project)
	var se *service.Error
	if errors.As(err, &se) {
		j, err = h.o.Service.Status(ctx, id, "")
		if j != nil && j.Project != project {
			j = nil
		}
	}
	return j, err
}

// pair is one row of a name/value table (arguments, settings, stats). Num
// marks a number, which the page keeps on one line.
type pair struct {
	Name, Value string
	Num         bool `json:",omitempty"`
}

// summary is what the job page shows and the live stream updates.
type summary struct {
	State    string `json:"state"`
	Outcome  string `json:"outcome"`
	ExitCode string `json:"exit_code"`
	PID      string `json:"pid"`
	Started  string `json:"started"`
	Ended    string `json:"ended"`
	Runtime  string `json:"runtime"`
	Items    string `json:"items"`
	Stats    []pair `json:"stats"`
}

func (h *handlers) summarize(j *job.Job, items *lineCounter) summary {
	s := summary{State: string(j.State), Outcome: outcomeClass(*j), Started: clock(j.Started), Ended: clock(j.Ended),
		Runtime: runtime(j.Started, j.Ended)}
	if j.State != job.Finished {
		s.Outcome = ""
	}
	if j.ExitCode != nil {
		s.ExitCode = strconv.Itoa(*j.ExitCode)
	}
	if j.PID != 0 {
		s.PID = strconv.Itoa(j.PID)
	}
	stats := h.stats(j)
	// The crawl's own count first: a feed exporter buffers, so while the
	// crawl runs its file lags behind (or there is no local feed at all).
	if n, ok := stats["item_scraped_count"]; ok {
		s.Items = statValue(n)
	} else if items != nil && items.update() {
		s.Items = strconv.FormatInt(items.n, 10)
	}
	s.Stats = make([]pair, 0, len(stats))
	for k, v := range stats {
		p := pair{Name: k, Value: statValue(v)}
		switch v.(type) {
		case json.Number, float64:
			p.Num = true
		}
		s.Stats = append(s.Stats, p)
	}
	slices.SortFunc(s.Stats, func(a, b pair) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// stats are the live stats of a running crawl from the Stats hook, else
// the last stats recorded with the job; numbers are json.Number.
func (h *handlers) stats(j *job.Job) map[string]any {
	var m map[string]any
	if j.State == job.Running && h.o.Stats != nil {
		m = h.o.Stats(j.ID)
	}
	if len(m) == 0 && j.Stats != "" {
		d := json.NewDecoder(strings.NewReader(j.Stats))
		d.UseNumber()
		d.Decode(&m)
	}
	return m
}

// statValue prints a stat as a person reads it: numbers in full decimal
// (memusage/max 70578176, never 7.0578176e+07), strings as they are, and
// anything else (lists, objects) as JSON.
func statValue(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		if !strings.ContainsAny(string(v), "eE") {
			return string(v)
		}
		f, err := v.Float64()
		if err != nil {
			return string(v)
		}
		return strconv.FormatFloat(f, 'f', -1, 64)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func pairs(ps []job.Pair) []pair {
	out := make([]pair, len(ps))
	for i, p := range ps {
		out[i] = pair{Name: p.Name, Value: p.Value}
	}
	return out
}

func (h *handlers) jobPage(c *fiber.Ctx) error {
	cfg := h.o.Config()
	project, id := param(c, "project"), param(c, "job")
	j, err := h.findJob(c.UserContext(), project, id)
	if err != nil {
		return h.errorPage(c, fiber.StatusNotFound, err)
	}
	if j == nil {
		return h.errorPage(c, fiber.StatusNotFound, &service.Error{Message: fmt.Sprintf("no job %q in project %q", id, project)})
	}
	paths := jobfiles.Of(cfg, j.Project, j.Spider, j.ID)
	var items *lineCounter
	if paths.Items != "" {
		items = &lineCounter{path: paths.Items}
	}
	logText, offset, truncated := h.jobTail(c.UserContext(), j, paths.Log, j.State != job.Finished)
	logURL, itemsURL := jobfiles.URLs(cfg, j.Project, j.Spider, j.ID)
	b := h.base(c, cfg, j.Spider+" "+j.ID)
	var env *pyenv.Info
	if info, ok := h.o.Service.Env(h.o.Service.JobEnv(j.Project, j.Version)); ok {
		env = &info
	}
	return render(c, fiber.StatusOK, "job.html", struct {
		base
		Job              *job.Job
		Page             string
		Summary          summary
		Args, Settings   []pair
		LogURL, ItemsURL string
		ItemsFeed        string
		Log              string
		LogOffset        int64
		LogTruncated     bool
		HasLog           bool
		Live             bool
		Env              *pyenv.Info // the environment of the job's version; nil for the system's
	}{b, j, jobPath(j.Project, j.ID), h.summarize(j, items), pairs(j.Args), pairs(j.Settings),
		logURL, itemsURL, paths.Feed, logText, offset, truncated, paths.Log != "", j.State != job.Finished, env})
}

func (h *handlers) cancel(c *fiber.Ctx) error {
	project, id := param(c, "project"), param(c, "job")
	if _, err := h.o.Service.Cancel(c.UserContext(), project, id, ""); err != nil {
		return h.errorPage(c, fiber.StatusBadRequest, err)
	}
	return c.Redirect(h.prefix(c)+jobPath(project, id), fiber.StatusSeeOther)
}

// scheduleForm is the project page's form, kept to show it again with
// what was typed when scheduling fails.
type scheduleForm struct {
	Spider, Version, JobID, Priority, Args, Settings string
	// Repeat, when set, makes a recurring schedule: a period or a cron
	// expression.
	Repeat string
}

func (h *handlers) projectPage(c *fiber.Ctx) error {
	return h.renderProject(c, fiber.StatusOK, param(c, "project"), scheduleForm{Spider: c.Query("spider")}, "")
}

func (h *handlers) renderProject(c *fiber.Ctx, status int, project string, form scheduleForm, formErr string) error {
	cfg := h.o.Config()
	ctx := c.UserContext()
	versions, err := h.o.Service.Versions(project)
	if err != nil {
		return h.errorPage(c, fiber.StatusNotFound, err)
	}
	if _, settingsProject := cfg.Settings[project]; len(versions) == 0 && !settingsProject {
		return h.errorPage(c, fiber.StatusNotFound, &service.Error{Message: fmt.Sprintf("project %q not found", project)})
	}
	slices.Reverse(versions) // newest first
	var spidersErr string
	spiders, err := h.o.Service.Spiders(ctx, project, "")
	if err != nil {
		spidersErr = err.Error()
	}
	recent, err := h.o.Service.Jobs(ctx, service.JobsQuery{Project: project, Limit: 10})
	if err != nil {
		return err
	}
	// Each environment the versions use, once, newest version's first.
	var envs []pyenv.Info
	seen := map[string]bool{}
	for _, v := range versions {
		if info, ok := h.o.Service.Env(v.Env); ok && !seen[v.Env] {
			seen[v.Env] = true
			envs = append(envs, info)
		}
	}
	return render(c, status, "project.html", struct {
		base
		Project  string
		Versions []egg.Version
		Spiders  []string
		SpidErr  string
		Form     scheduleForm
		FormErr  string
		Jobs     []browseRow
		Envs     []pyenv.Info
	}{h.base(c, cfg, project), project, versions, spiders, spidersErr, form, formErr, browseRows(cfg, recent), envs})
}

func (h *handlers) schedule(c *fiber.Ctx) error {
	project := param(c, "project")
	form := scheduleForm{Spider: c.FormValue("spider"), Version: c.FormValue("version"), JobID: strings.TrimSpace(c.FormValue("jobid")),
		Priority: strings.TrimSpace(c.FormValue("priority")), Args: c.FormValue("args"), Settings: c.FormValue("settings"),
		Repeat: strings.TrimSpace(c.FormValue("repeat"))}
	r := service.ScheduleRequest{Project: project, Spider: form.Spider, Version: form.Version, JobID: form.JobID, Priority: form.Priority}
	args, err := lines("argument", form.Args)
	if err == nil {
		var settings []job.Pair
		settings, err = lines("setting", form.Settings)
		for _, s := range settings {
			r.Settings = append(r.Settings, s.Name+"="+s.Value)
		}
	}
	r.Args = args
	var id string
	if err == nil && form.Repeat != "" {
		err = h.addSchedule(c, r, form.Repeat)
		if err == nil {
			return c.Redirect(h.prefix(c)+"/schedules", fiber.StatusSeeOther)
		}
	} else if err == nil {
		id, err = h.o.Service.Schedule(c.UserContext(), r)
	}
	if err != nil {
		var se *service.Error
		if !errors.As(err, &se) {
			return err
		}
		return h.renderProject(c, fiber.StatusUnprocessableEntity, project, form, err.Error())
	}
	return c.Redirect(h.prefix(c)+jobPath(project, id), fiber.StatusSeeOther)
}

// lines reads NAME=VALUE lines (blank lines skipped), the textarea form of
// schedule.json's repeated parameters.
func lines(what, text string) ([]job.Pair, error) {
	var out []job.Pair
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimRight(l, "\r")
		if strings.TrimSpace(l) == "" {
			continue
		}
		name, value, ok := strings.Cut(l, "=")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, &service.Error{Message: fmt.Sprintf("%s line %d: expected NAME=VALUE, got %q", what, i+1, l)}
		}
		out = append(out, job.Pair{Name: strings.TrimSpace(name), Value: value})
	}
	return out, nil
}

// browseRow is one job of the people's job list.
type browseRow struct {
	job.Job
	Page, LogURL, ItemsURL, Runtime, Status string
}

func browseRows(cfg *config.Config, l service.Listing) []browseRow {
	var out []browseRow
	for _, es := range [][]service.Entry{l.Running, l.Pending, l.Finished} {
		for _, e := range es {
			r := browseRow{Job: *e.Job, Page: jobPath(e.Project, e.ID), Runtime: runtime(e.Started, e.Ended), Status: outcomeClass(*e.Job)}
			// Only link files that exist: this list is for people.
			r.LogURL, r.ItemsURL = e.LogURL, e.ItemsURL
			out = append(out, r)
		}
	}
	return out
}

func (h *handlers) browse(c *fiber.Ctx) error {
	cfg := h.o.Config()
	q := service.JobsQuery{Project: c.Query("project"), Spider: c.Query("spider"), State: job.State(c.Query("state"))}
	switch q.State {
	case "", job.Pending, job.Running, job.Finished:
	default:
		q.State = ""
	}
	page, _ := strconv.Atoi(c.Query("page"))
	page = max(page, 0)
	// One row more than a page says whether there is a next page without
	// counting the whole history.
	q.Limit, q.Offset = pageSize+1, page*pageSize
	l, err := h.o.Service.Jobs(c.UserContext(), q)
	if err != nil {
		return h.errorPage(c, fiber.StatusBadRequest, err)
	}
	if page > 0 {
		l.Pending, l.Running = nil, nil
	}
	more := len(l.Finished) > pageSize
	if more {
		l.Finished = l.Finished[:pageSize]
	}
	projects, err := h.o.Service.Projects()
	if err != nil {
		return err
	}
	link := func(p int) string {
		if p < 0 {
			return ""
		}
		return fmt.Sprintf("?project=%s&spider=%s&state=%s&page=%d", url.QueryEscape(q.Project), url.QueryEscape(q.Spider), url.QueryEscape(string(q.State)), p)
	}
	var prev, next string
	if page > 0 {
		prev = link(page - 1)
	}
	if more {
		next = link(page + 1)
	}
	pending, running, finished := h.o.Service.DaemonStatus()
	return render(c, fiber.StatusOK, "browse.html", struct {
		base
		Query                      service.JobsQuery
		Projects                   []string
		States                     []job.State
		Jobs                       []browseRow
		Page                       int
		Prev, Next                 string
		Pending, Running, Finished int
		Now                        string
	}{h.base(c, cfg, "Jobs"), q, projects, []job.State{job.Pending, job.Running, job.Finished}, browseRows(cfg, l),
		page + 1, prev, next, pending, running, finished, clock(time.Now())})
}
