// Package api serves Scrapyd's HTTP API with fiber: the eleven JSON
// endpoints exactly as existing clients expect them (parameter sources, the
// ordered envelope, HTTP 200 application errors, CORS, OPTIONS, HEAD), our
// own endpoints in the same envelope (diagnostics.json), Basic auth on every
// path, and the hooks other packages use to add their routes (the web
// pages, the crawl web service).
package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// Options are what the API needs.
type Options struct {
	Config  func() *config.Config
	Service *service.Service
	Log     *slog.Logger
	// BodyLimit bounds request bodies (upload_limit, read at start).
	BodyLimit int
	// Routes add more routes after the JSON API and before the 404 fallback.
	Routes []func(r fiber.Router)
	// Running adds fields (live crawl stats) to a running job's entry in
	// listjobs.json, after Scrapyd's.
	Running func(jobID string) []Field
	// Open says which paths are answered without credentials even when
	// auth is on (the health probes; /metrics under metrics_public). Their
	// routes come in Routes.
	Open func(path string) bool
	// Observe, if set, is told of every answered request: the pattern of
	// the route that answered it ("other" for an auth refusal or an
	// unknown path), its status code and how long it took.
	Observe func(route string, code int, d time.Duration)
	// Peer, in cluster mode, checks a request's cluster secret: peer when
	// another node forwarded it (it needs no user credentials: that node
	// checked them), forged when it carries a wrong secret, which is
	// refused whatever else it carries.
	Peer func(c *fiber.Ctx) (peer, forged bool)
}

// Field is one extra key of a JSON answer.
type Field struct {
	Key   string
	Value any // a string, number, bool, nil or []string
}

// New builds the fiber app.
func New(o Options) *fiber.App {
	limit := o.BodyLimit
	if limit <= 0 {
		limit = fiber.DefaultBodyLimit
	}
	app := fiber.New(fiber.Config{
		// Handlers keep strings past the request; fiber's zero-allocation
		// strings would change under them.
		Immutable:             true,
		CaseSensitive:         true,
		StrictRouting:         true,
		DisableStartupMessage: true,
		BodyLimit:             limit,
		ErrorHandler:          errorHandler(o),
		// Nothing reads a body before bodies() has bounded it: fasthttp
		// would read it whole, decode a Content-Encoding without bound, and
		// spool multipart files to /tmp beyond the limit.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
	})
	if o.Observe != nil {
		app.Use(observe(o))
	}
	app.Use(singleSlashes)
	app.Use(bodies(limit))
	app.Use(authenticate(o.Config, o.Open, o.Peer))
	a := &handlers{o: o}
	for _, e := range a.endpoints() {
		e := e
		app.All("/"+e.name, func(c *fiber.Ctx) error { return a.serve(c, e) })
	}
	for _, r := range o.Routes {
		r(app)
	}
	app.Use(notFound)
	return app
}

// singleSlashes serves a path with repeated slashes as the single-slash
// path: scrapyd-client asks for //listprojects.json when the URL in
// scrapy.cfg ends in "/", as `scrapy startproject` writes it (Scrapyd
// answers 404 there; issue 13).
func singleSlashes(c *fiber.Ctx) error {
	if p := c.Path(); strings.Contains(p, "//") {
		var b strings.Builder
		for i := 0; i < len(p); i++ {
			if p[i] != '/' || i == 0 || p[i-1] != '/' {
				b.WriteByte(p[i])
			}
		}
		c.Path(b.String())
	}
	return c.Next()
}

// unrouted marks a request answered by a middleware (auth refused, no
// such path), not by a route: its route pattern would be the
// middleware's "/", which is the home page's too.
const unrouted = "api.unrouted"

// observe measures every request. A handler's error becomes its answer
// here, through the one error handler, so that its status is the one
// counted; fiber then has no error left to handle.
func observe(o Options) fiber.Handler {
	handle := errorHandler(o)
	return func(c *fiber.Ctx) error {
		start := time.Now()
		err := c.Next()
		if err != nil {
			if err = handle(c, err); err != nil {
				return err
			}
		}
		route := c.Route().Path
		if c.Locals(unrouted) != nil {
			route = "other"
		}
		o.Observe(route, c.Response().StatusCode(), time.Since(start))
		return nil
	}
}

// notFound is Twisted's 404 page, which is what clients have always seen.
func notFound(c *fiber.Ctx) error {
	c.Locals(unrouted, true)
	c.Status(fiber.StatusNotFound)
	c.Set(fiber.HeaderContentType, "text/html; charset=utf-8")
	return c.SendString(`<html>
  <head><title>404 - No Such Resource</title></head>
  <body>
    <h1>No Such Resource</h1>
    <p>Sorry. No luck finding that resource.</p>
  </body>
</html>
`)
}

// authenticate guards every path, OPTIONS included, when both username and
// password are set (Scrapyd's rule), but those open says are open. Both
// are compared in constant time, as digests, so that neither their content
// nor their length leaks. In cluster mode a request another node forwarded
// passes on its cluster secret (peer), and one with a wrong secret is
// refused even with auth off.
func authenticate(cfg func() *config.Config, open func(path string) bool, peer func(c *fiber.Ctx) (peer, forged bool)) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if peer != nil {
			switch ok, forged := peer(c); {
			case forged:
				return unauthorized(c)
			case ok:
				return c.Next()
			}
		}
		conf := cfg()
		if !conf.AuthEnabled() || (open != nil && open(c.Path())) {
			return c.Next()
		}
		user, pass, ok := basicAuth(c.Get(fiber.HeaderAuthorization))
		if ok && equal(user, conf.Username)&equal(pass, conf.Password) == 1 {
			return c.Next()
		}
		return unauthorized(c)
	}
}

// unauthorized is Scrapyd's refusal, 401 with its challenge.
func unauthorized(c *fiber.Ctx) error {
	c.Locals(unrouted, true)
	c.Set(fiber.HeaderWWWAuthenticate, `basic realm="Scrapyd"`)
	c.Set(fiber.HeaderContentType, "text/html")
	return c.Status(fiber.StatusUnauthorized).SendString("Unauthorized")
}

func equal(a, b string) int {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:])
}

func basicAuth(h string) (user, pass string, ok bool) {
	const prefix = "basic "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[len(prefix):]))
	if err != nil {
		return "", "", false
	}
	user, pass, ok = strings.Cut(string(raw), ":")
	return user, pass, ok
}

// errorHandler turns every error into Scrapyd's envelope: HTTP 200 and
// {"status": "error", "message": ...}. With debug on, the message goes out
// as plain text, as Scrapyd's debug mode sends its traceback.
func errorHandler(o Options) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		var fe *fiber.Error
		if errors.As(err, &fe) {
			if fe.Code == fiber.StatusRequestEntityTooLarge {
				err = errTooLarge
			} else if fe.Code == fiber.StatusNotFound {
				return notFound(c)
			}
		}
		msg := err.Error()
		var se *service.Error
		if !errors.As(err, &se) {
			// Not one of ours: Scrapyd shows "<ExceptionClass>: <text>".
			o.Log.Error("request failed", "path", c.Path(), "err", err)
			msg = "Error: " + msg
		}
		if o.Config().Debug {
			c.Set(fiber.HeaderContentType, "text/plain")
			return c.Status(fiber.StatusOK).SendString(msg + "\n")
		}
		return writeJSON(c, o.Config(), allowFor(c), obj{{"status", "error"}, {"message", msg}})
	}
}
