package api

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
)

type observed struct {
	route string
	code  int
}

// With auth on, an open path answers without credentials and every other
// path asks for them; each answer is observed under its route's pattern,
// never its raw path (a job id would make a series per job), and a
// handler's error under the status the client got.
func TestOpenPathsAndObservedRoutes(t *testing.T) {
	h := newHarness(t, "username = u\npassword = p\n")
	var got []observed
	app := New(Options{Config: h.svc.Config, Service: h.svc, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), BodyLimit: 1 << 20,
		Open:    func(p string) bool { return p == "/healthz" },
		Observe: func(route string, code int, _ time.Duration) { got = append(got, observed{route, code}) },
		Routes: []func(fiber.Router){func(r fiber.Router) {
			r.Get("/healthz", func(c *fiber.Ctx) error { return c.SendString("ok") })
			r.Get("/jobs/:id", func(c *fiber.Ctx) error { return c.SendString(c.Params("id")) })
			r.Get("/private", func(c *fiber.Ctx) error { return c.SendString("secret") })
		}},
	})
	for _, c := range []struct {
		path  string
		auth  bool
		code  int
		route string
	}{
		{"/healthz", false, 200, "/healthz"},
		{"//healthz", false, 200, "/healthz"},
		{"/private", false, 401, "other"},
		{"/listprojects.json", false, 401, "other"},
		{"/jobs/0123456789abcdef", false, 401, "other"},
		{"/jobs/0123456789abcdef", true, 200, "/jobs/:id"},
		{"/daemonstatus.json", true, 200, "/daemonstatus.json"},
		{"/cancel.json", true, 200, "/cancel.json"}, // missing parameters: Scrapyd's error envelope, HTTP 200
		{"/nowhere", true, 404, "other"},
	} {
		got = nil
		req := httptest.NewRequest("GET", c.path, nil)
		if c.auth {
			req.SetBasicAuth("u", "p")
		}
		resp, err := app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("GET %s (credentials %v) = %d, want %d", c.path, c.auth, resp.StatusCode, c.code)
		}
		if want := []observed{{c.route, c.code}}; !slices.Equal(got, want) {
			t.Errorf("GET %s observed as %v, want %v", c.path, got, want)
		}
	}
}
