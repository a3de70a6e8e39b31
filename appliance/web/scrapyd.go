package web

import (
	"html"
	"html/template"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

func (h *handlers) home(c *fiber.Ctx) error {
	cfg := h.o.Config()
	projects, err := h.o.Service.Projects()
	if err != nil {
		return err
	}
	return render(c, fiber.StatusOK, "home.html", struct {
		base
		Projects    []string
		Diagnostics service.Diagnostics // what /diagnostics.json serves
		Address     string
	}{h.base(c, cfg, "Scrapyd"), projects, h.o.Service.Diagnostics(), h.address(c, cfg)})
}

// address is where the request came in (scheme, Host, the proxy's path
// prefix): the home page's curl example then works when pasted, where
// Scrapyd always writes localhost:6800. Host and scheme are read as the
// same-origin check reads them (fiber's Hostname and Protocol, which take
// X-Forwarded-Host and -Proto from a proxy); a Host that is not a plain
// host[:port] is replaced by the configured address.
func (h *handlers) address(c *fiber.Ctx, cfg *config.Config) string {
	scheme := "http"
	if c.Protocol() == "https" {
		scheme = "https"
	}
	host := c.Hostname()
	if host == "" || strings.Trim(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]_") != "" {
		bind := cfg.BindAddress
		if bind == "" || bind == "0.0.0.0" || bind == "::" {
			bind = "localhost"
		}
		host = net.JoinHostPort(bind, strconv.Itoa(cfg.HTTPPort))
	}
	return scheme + "://" + host + h.prefix(c)
}

// jobRow is one row of /jobs. Its cells are Scrapyd's, in Scrapyd's order,
// because ScrapydWeb reads them by position (JOB_PATTERN) and tells the
// states apart by which of Start and Finish are empty.
type jobRow struct {
	Project, Spider, Job   string
	PID                    string
	Start, Runtime, Finish string
	LogURL, ItemsURL       string
	Cancel                 bool
	Page                   string
}

// writeJobRow writes one /jobs row, every cell on its own line as Scrapyd
// 1.5 lays it out. It is written by hand rather than by html/template: the
// bytes must stay exactly what JOB_PATTERN reads, and a thousand finished
// jobs render several times faster (see BenchmarkJobsPage). Every value
// goes through html.EscapeString; the URLs are path-escaped already (jobfiles.URLs) and
// the prefix is checked by handlers.prefix.
func writeJobRow(w *strings.Builder, r jobRow, prefix string, itemsColumn bool) {
	cell := func(inner string) { w.WriteString("<td>" + inner + "</td>\n") }
	link := func(href, text string) string {
		if href == "" {
			return ""
		}
		return `<a href="` + html.EscapeString(prefix+href) + `">` + text + `</a>`
	}
	w.WriteString("<tr>\n")
	for _, v := range []string{r.Project, r.Spider, r.Job, r.PID, r.Start, r.Runtime, r.Finish} {
		cell(html.EscapeString(v))
	}
	cell(link(r.LogURL, "Log"))
	if itemsColumn {
		cell(link(r.ItemsURL, "Items"))
	}
	if r.Cancel {
		cell("\n<form method=\"post\" onsubmit=\"return confirm('Are you sure?');\" action=\"" + html.EscapeString(prefix) + "/cancel.json\">\n" +
			"<input type=\"hidden\" name=\"project\" value=\"" + html.EscapeString(r.Project) + "\">\n" +
			"<input type=\"hidden\" name=\"job\" value=\"" + html.EscapeString(r.Job) + "\">\n" +
			"<input type=\"submit\" value=\"Cancel\">\n</form>\n")
	} else {
		cell("")
	}
	cell(link(r.Page, "Page"))
	w.WriteString("</tr>\n")
}

func (h *handlers) jobs(c *fiber.Ctx) error {
	cfg := h.o.Config()
	l, err := h.o.Service.Jobs(c.UserContext(), service.JobsQuery{})
	if err != nil {
		return err
	}
	now := time.Now()
	b := h.base(c, cfg, "Scrapyd")
	section := func(es []service.Entry) template.HTML {
		var w strings.Builder
		w.Grow(len(es) * 700)
		for _, e := range es {
			writeJobRow(&w, scrapydRow(cfg, *e.Job, now), b.Prefix, b.LocalItems)
		}
		return template.HTML(w.String())
	}
	headers := []string{"Project", "Spider", "Job", "PID", "Start", "Runtime", "Finish", "Log"}
	if b.LocalItems {
		headers = append(headers, "Items")
	}
	headers = append(headers, "Cancel", "Page")
	return render(c, fiber.StatusOK, "jobs.html", struct {
		base
		Headers                    []string
		Pending, Running, Finished template.HTML
	}{b, headers, section(l.Pending), section(l.Running), section(l.Finished)})
}

// scrapydRow fills the cells Scrapyd fills for the job's state; the Log
// and Items links are there whenever the job has started, as in Scrapyd.
func scrapydRow(cfg *config.Config, j job.Job, now time.Time) jobRow {
	r := jobRow{Project: j.Project, Spider: j.Spider, Job: j.ID, Page: jobPath(j.Project, j.ID)}
	switch j.State {
	case job.Pending:
		r.Cancel = true
		return r
	case job.Running:
		if j.PID != 0 {
			r.PID = strconv.Itoa(j.PID)
		}
		r.Runtime = runtime(j.Started, now)
		r.Cancel = true
	case job.Finished:
		r.Runtime = runtime(j.Started, j.Ended)
		r.Finish = clock(j.Ended)
	}
	r.Start = clock(j.Started)
	r.LogURL, r.ItemsURL = jobfiles.URLs(cfg, j.Project, j.Spider, j.ID)
	return r
}

func jobPath(project, id string) string {
	return "/jobs/" + url.PathEscape(project) + "/" + url.PathEscape(id)
}
