package health

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"testing"

	"github.com/gofiber/fiber/v2"
)

func get(t *testing.T, o Options, path string) (int, string) {
	t.Helper()
	app := fiber.New()
	Register(o)(app)
	resp, err := app.Test(httptest.NewRequest("GET", path, nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// Readiness fails with a short reason and nothing of the cause (the
// database error's text holds a path); liveness does not depend on them.
func TestProbes(t *testing.T) {
	ok := Options{Ping: func(context.Context) error { return nil }, Configured: func() bool { return true }, Slots: func() int { return 4 },
		Adopted: func() bool { return true }}
	adopting := ok
	adopting.Adopted = func() bool { return false }
	noDB := ok
	noDB.Ping = func(context.Context) error {
		return errors.New("open /var/lib/scrapyd/dbs/scrapyd.db: permission denied")
	}
	noSlots := ok
	noSlots.Slots = func() int { return 0 }
	for _, c := range []struct {
		o    Options
		path string
		code int
		body string
	}{
		{ok, "/healthz", 200, "ok\n"},
		{ok, "/readyz", 200, "ok\n"},
		{noDB, "/healthz", 200, "ok\n"},
		{noDB, "/readyz", 503, "database unreachable\n"},
		{noSlots, "/readyz", 503, "no crawl slots\n"},
		{adopting, "/healthz", 200, "ok\n"},
		{adopting, "/readyz", 503, "running crawls not adopted yet\n"},
	} {
		if code, body := get(t, c.o, c.path); code != c.code || body != c.body {
			t.Errorf("%s = %d %q, want %d %q", c.path, code, body, c.code, c.body)
		}
	}
	if !Open("/healthz") || !Open("/readyz") || Open("/healthz/") || Open("/metrics") {
		t.Error("Open is wrong")
	}
}
