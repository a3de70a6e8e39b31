package forward

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
)

// app is a node whose local routes answer "local"; jobs elsewhere are on
// node2 at url.
func app(t *testing.T, url string) *fiber.App {
	f := New(Options{Self: "node1", Secret: "s3cret", Log: slog.New(slog.DiscardHandler),
		Locate: func(_ context.Context, project, id string) (Place, error) {
			if id == "here" {
				return Place{Node: "node1", Running: true}, nil
			}
			return Place{Node: "node2", URL: url, Running: true}, nil
		}})
	a := fiber.New()
	a.Use(func(c *fiber.Ctx) error {
		if _, forged := f.Peer(c); forged {
			return c.SendStatus(http.StatusUnauthorized)
		}
		return c.Next()
	})
	f.Register(a)
	a.Get("/items/*", func(c *fiber.Ctx) error { return c.SendString("local") })
	a.Get("/schedule.json", func(c *fiber.Ctx) error {
		if c.Locals(peerKey) != nil {
			return c.SendString("peer")
		}
		return c.SendString("user")
	})
	a.All("/webservice/*", func(c *fiber.Ctx) error { return c.SendString("local") })
	return a
}

func call(t *testing.T, a *fiber.App, req *http.Request) (int, string) {
	t.Helper()
	resp, err := a.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A request about another node's crawl goes there once, with the secret
// and not the user's credentials; a request carrying the secret is served
// where it arrives, never forwarded again; a wrong secret is refused.
func TestForwardOnce(t *testing.T) {
	var got []*http.Request
	node2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "node2:"+r.Method+":"+r.URL.RequestURI()+":"+string(body))
	}))
	defer node2.Close()
	a := app(t, node2.URL)

	req := httptest.NewRequest("POST", "/webservice/j1/stats?x=1", strings.NewReader(`{"id": 1}`))
	req.Header.Set("Authorization", "Basic dTpw")
	if code, body := call(t, a, req); code != http.StatusTeapot || body != `node2:POST:/webservice/j1/stats?x=1:{"id": 1}` {
		t.Fatalf("forwarded call: %d %q", code, body)
	}
	if len(got) != 1 || got[0].Header.Get(Header) != "s3cret" || got[0].Header.Get("Authorization") != "" {
		t.Fatalf("node 2 was asked %d times, headers %v", len(got), got[0].Header)
	}
	if code, body := call(t, a, httptest.NewRequest("GET", "/items/p/s/j%201.jl", nil)); code != http.StatusTeapot || body != "node2:GET:/items/p/s/j%201.jl:" {
		t.Fatalf("forwarded items: %d %q", code, body)
	}
	for _, c := range []struct {
		path, secret string
		want         int
	}{
		{"/items/p/s/j1.jl", "s3cret", http.StatusOK}, // forwarded to us: served here
		{"/items/p/s/here.jl", "", http.StatusOK},     // our own crawl
		{"/items/p/s/", "", http.StatusOK},            // a listing is always local
		{"/items/p/s/j1.jl", "s3crex", http.StatusUnauthorized},
	} {
		req := httptest.NewRequest("GET", c.path, nil)
		if c.secret != "" {
			req.Header.Set(Header, c.secret)
		}
		if code, body := call(t, a, req); code != c.want || (code == http.StatusOK && body != "local") {
			t.Errorf("%s with secret %q: %d %q", c.path, c.secret, code, body)
		}
	}
	if len(got) != 2 {
		t.Fatalf("node 2 was asked %d times, want 2", len(got))
	}
	// Elsewhere the secret makes no peer: the API keeps its credentials.
	req = httptest.NewRequest("GET", "/schedule.json", nil)
	req.Header.Set(Header, "s3cret")
	if code, body := call(t, a, req); code != http.StatusOK || body != "user" {
		t.Fatalf("the secret on /schedule.json: %d %q", code, body)
	}
}

// A node that cannot be reached, or has no advertise_url, is named in the
// answer: Twisted's error page for items, the web service's own envelope
// for calls.
func TestForwardFails(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	url := down.URL
	down.Close()
	for _, c := range []struct {
		url, path, want string
	}{
		{url, "/items/p/s/j1.jl", "<h1>Bad Gateway</h1>\n    <p>The items of job j1 are on node node2, which cannot be reached at " + url},
		{"", "/items/p/s/j1.jl", "The items of job j1 are on node node2, which has no advertise_url."},
		{url, "/webservice/j1/stats", `"code":-32005,"message":"job \"j1\" runs on node node2, which cannot be reached at ` + url},
	} {
		code, body := call(t, app(t, c.url), httptest.NewRequest("GET", c.path, nil))
		if code != http.StatusBadGateway || !strings.Contains(body, c.want) {
			t.Errorf("%s with node 2 at %q: %d %s", c.path, c.url, code, body)
		}
	}
}
