// Package web serves the daemon's HTML: Scrapyd's own pages in the exact
// shapes existing clients scrape (/, /jobs, the /logs/ and /items/
// listings and files), and pages for people beyond Scrapyd's (a page per
// job with its log followed live, a page per project with a schedule form,
// a filtered and paged job list). Everything is server-rendered with
// html/template from files embedded in the binary.
package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// Options are what the pages need.
type Options struct {
	Config  func() *config.Config
	Service *service.Service
	// Stats, when set, returns a running crawl's live stats (items
	// scraped, pages crawled, ...) for its job page; nil or an empty map
	// means none. Numbers should be json.Number (floats are printed in
	// full too, but lose digits past 2^53). It is the hook for the crawl
	// web service and must be fast: the job page and its live stream call it.
	Stats func(jobID string) map[string]any
	// SharedLogs, when set (cluster mode), opens a crawl log its node
	// shipped to the shared database: the /logs/ file, the job page and
	// its live log use it for a log this node does not have. ok is false
	// when the database has none.
	SharedLogs func(ctx context.Context, project, spider, id string) (log SharedLog, ok bool, err error)
}

// SharedLog is a crawl log read from the shared database, as far as it
// was shipped when it was opened (open it again to see more).
type SharedLog interface {
	io.ReaderAt
	Size() int64
	ModTime() time.Time
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"clock":     clock,
	"when":      when,
	"runtime":   runtime,
	"pathq":     url.PathEscape,
	"outcome":   outcomeClass,
	"cancels":   cancellable,
	"breakable": breakable,
}).ParseFS(templateFS, "templates/*.html"))

// Register returns the routes to add to api.Options.Routes.
func Register(o Options) func(fiber.Router) {
	h := &handlers{o: o}
	return func(r fiber.Router) {
		r.Get("/", h.home)
		r.Get("/jobs", h.jobs)
		r.Get("/browse", h.browse)
		r.Get("/dashboard", h.dashboard)
		r.Get("/jobs/:project/:job", h.jobPage)
		r.Get("/jobs/:project/:job/log", h.followLog)
		r.Post("/jobs/:project/:job/cancel", sameOrigin, h.cancel)
		r.Get("/projects/:project", h.projectPage)
		r.Post("/projects/:project/schedule", sameOrigin, h.schedule)
		r.Get("/schedules", h.schedulesPage)
		r.Get("/nodes", h.nodesPage)
		r.Post("/schedules/:project/:id/:action", sameOrigin, h.changeSchedule)
		r.Get("/assets/*", h.asset)
		r.Get("/logs/stats.json", h.logParserStats)
		r.Get("/logs/:project/:spider/:file", h.logParserJobFile)
		r.Get("/logs", h.files(logsRoot, h.sharedLogFile))
		r.Get("/logs/*", h.files(logsRoot, h.sharedLogFile))
		r.Get("/items", h.files(itemsRoot, nil))
		r.Get("/items/*", h.files(itemsRoot, nil))
	}
}

type handlers struct{ o Options }

// prefix is the path a reverse proxy mounts us under, from the
// prefix_header request header (Scrapyd 1.4.2's X-Forwarded-Prefix). It
// only changes links, never routing. A value that is not a plain path is
// ignored, so a header cannot turn links into another site's URLs.
func (h *handlers) prefix(c *fiber.Ctx) string {
	p := strings.TrimRight(c.Get(h.o.Config().PrefixHeader), "/")
	if p != "" && (!strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\"'<> ")) {
		return ""
	}
	return p
}

// base is what every page template gets.
type base struct {
	Prefix     string
	Title      string
	LocalItems bool
	HasLogs    bool
	Cluster    bool // cluster mode: the nodes page is linked from every page
}

func (h *handlers) base(c *fiber.Ctx, cfg *config.Config, title string) base {
	return base{Prefix: h.prefix(c), Title: title, LocalItems: jobfiles.LocalItemsDir(cfg) != "", HasLogs: cfg.LogsDir != "", Cluster: h.o.Service.ListNodes != nil}
}

func render(c *fiber.Ctx, status int, name string, data any) error {
	var b strings.Builder
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, "text/html; charset=utf-8")
	return c.Status(status).SendString(b.String())
}

// errorPage shows an error to a person: service.Error texts are Scrapyd's
// messages meant for users; anything else goes to the ErrorHandler.
func (h *handlers) errorPage(c *fiber.Ctx, status int, err error) error {
	var se *service.Error
	if !errors.As(err, &se) && status >= 500 {
		return err
	}
	return render(c, status, "error.html", struct {
		base
		Message string
	}{h.base(c, h.o.Config(), "Error"), err.Error()})
}

// sameOrigin refuses a form POST another site made the browser send: with
// Basic auth the browser would attach the saved credentials. Browsers send
// Origin on every POST; clients without it (curl) are not browsers.
func sameOrigin(c *fiber.Ctx) error {
	origin := c.Get(fiber.HeaderOrigin)
	if origin == "" || origin == "null" && c.Get("Sec-Fetch-Site") == "same-origin" {
		return c.Next()
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host != c.Hostname() {
		return c.Status(fiber.StatusForbidden).SendString("cross-site form posts are refused\n")
	}
	return c.Next()
}

func (h *handlers) asset(c *fiber.Ctx) error {
	name := c.Params("*")
	data, err := fs.ReadFile(assetFS, "assets/"+name) // fs paths cannot hold ".."
	if err != nil {
		return fiber.ErrNotFound
	}
	switch {
	case strings.HasSuffix(name, ".css"):
		c.Set(fiber.HeaderContentType, "text/css; charset=utf-8")
	case strings.HasSuffix(name, ".js"):
		c.Set(fiber.HeaderContentType, "text/javascript; charset=utf-8")
	}
	c.Set(fiber.HeaderCacheControl, "max-age=300")
	return c.Send(data)
}

// param is a route parameter, percent-decoded (the app does not unescape
// paths, so that /logs/ can refuse encoded slashes).
func param(c *fiber.Ctx, name string) string {
	v, err := url.PathUnescape(c.Params(name))
	if err != nil {
		return c.Params(name)
	}
	return v
}

// clock is Scrapyd's time format: local time without microseconds.
func clock(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format("2006-01-02 15:04:05")
}

// when is clock for a narrow column: the date and the time may go on two
// lines, but neither breaks at its own hyphens or colons.
func when(t time.Time) template.HTML {
	date, tod, ok := strings.Cut(clock(t), " ")
	if !ok {
		return ""
	}
	return template.HTML(`<span class="nowrap">` + date + `</span> <span class="nowrap">` + tod + `</span>`)
}

// runtime is Python's str(timedelta) without microseconds, as Scrapyd
// shows it ("0:01:05", "2 days, 3:04:05"); end zero means until now.
func runtime(start, end time.Time) string {
	if start.IsZero() {
		return ""
	}
	if end.IsZero() {
		end = time.Now()
	}
	d := end.Sub(start).Truncate(time.Second)
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	days, s := s/86400, s%86400
	out := fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	switch days {
	case 0:
		return out
	case 1:
		return "1 day, " + out
	}
	return fmt.Sprintf("%d days, %s", days, out)
}

func outcomeClass(j job.Job) string {
	if j.State != job.Finished {
		return string(j.State)
	}
	if j.Outcome == "" {
		return "finished"
	}
	return string(j.Outcome)
}

// breakable lets a long stats key (downloader/response_status_count/200)
// wrap after its slashes rather than in the middle of a word.
func breakable(key string) template.HTML {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = template.HTMLEscapeString(p)
	}
	return template.HTML(strings.Join(parts, "/<wbr>"))
}

func cancellable(j job.Job) bool { return j.State == job.Pending || j.State == job.Running }
