// Package forward sends a request about a crawl that runs, or ran, on
// another node of the cluster to that node (issue 15 point 5): its items
// file, and its crawl web service, stay on the crawl's node. The request
// goes to the node's advertise_url with the cluster's secret in Header;
// the node that receives it serves it itself and never forwards it again,
// so a request crosses at most one hop whatever the nodes believe.
package forward

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/crawlrpc"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
)

// Header carries the cluster's secret on a forwarded request.
const Header = "X-Scrapyd-Cluster-Secret"

// Place is where a job's crawl runs or ran.
type Place struct {
	Node    string // "" when no node ran it (or it is unknown)
	URL     string // the node's advertise_url, "" when it has none
	Running bool
}

// Options are fixed for the daemon's lifetime.
type Options struct {
	Self   string // this node's name
	Secret string // the cluster's secret (pgstore.ClusterSecret)
	// Locate says where the job with this id (project "": any project)
	// runs, or else where its newest run ran.
	Locate func(ctx context.Context, project, id string) (Place, error)
	Log    *slog.Logger
}

// Forwarder is safe for concurrent use.
type Forwarder struct {
	o      Options
	client *http.Client
}

// New returns a Forwarder; its routes go before the local ones.
func New(o Options) *Forwarder {
	return &Forwarder{o: o, client: &http.Client{
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			ResponseHeaderTimeout: time.Minute,
			// The bytes go through as the crawl's node sent them.
			DisableCompression:  true,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     time.Minute,
		},
		// A redirect is the client's to follow, as the node sent it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// peerKey marks a request another node forwarded (its secret checked).
const peerKey = "forward.peer"

// Peer checks a request's cluster secret: peer when it carries the right
// one on a path nodes forward (another node forwarded it: it needs no user
// credentials, that node checked them, and it is served here), forged when
// it carries a wrong one (to be refused). On any other path the right
// secret stands for nothing: a leaked secret opens items and crawl web
// services, not the API. The comparison takes the same time whatever the
// secret presented.
func (f *Forwarder) Peer(c *fiber.Ctx) (peer, forged bool) {
	got := c.Get(Header)
	if got == "" {
		return false, false
	}
	if f.o.Secret == "" || subtle.ConstantTimeCompare([]byte(got), []byte(f.o.Secret)) != 1 {
		return false, true
	}
	if p := c.Path(); !strings.HasPrefix(p, "/items/") && !strings.HasPrefix(p, "/webservice/") {
		return false, false
	}
	c.Locals(peerKey, true)
	return true, false
}

// Register mounts the forwarding routes; a request they do not forward
// goes on to the local routes registered after them.
func (f *Forwarder) Register(r fiber.Router) {
	r.Get("/items/:project/:spider/:file", f.items)
	r.All("/webservice/:job", f.webservice)
	r.All("/webservice/:job/*", f.webservice)
}

// items forwards a job's items file (J.jl) to the node that ran the job.
func (f *Forwarder) items(c *fiber.Ctx) error {
	if c.Locals(peerKey) != nil {
		return c.Next()
	}
	project, err1 := url.PathUnescape(c.Params("project"))
	file, err2 := url.PathUnescape(c.Params("file"))
	id, ok := jobfiles.FileID(file, jobfiles.ItemsExt)
	if err1 != nil || err2 != nil || !ok {
		return c.Next()
	}
	p, ok := f.locate(c, project, id)
	if !ok {
		return c.Next()
	}
	return f.forward(c, p, func(why string) error {
		return errorPage(c, fiber.StatusBadGateway, fmt.Sprintf("The items of job %s are on node %s, %s.", id, p.Node, why))
	})
}

// webservice forwards a running crawl's web service to its node.
func (f *Forwarder) webservice(c *fiber.Ctx) error {
	if c.Locals(peerKey) != nil {
		return c.Next()
	}
	id, err := url.PathUnescape(c.Params("job"))
	if err != nil {
		return c.Next()
	}
	p, ok := f.locate(c, "", id)
	if !ok || !p.Running {
		return c.Next()
	}
	return f.forward(c, p, func(why string) error {
		return crawlrpc.Unreachable(c, id, fmt.Sprintf("job %q runs on node %s, %s", id, p.Node, why))
	})
}

// locate is where the job runs or ran, when that is another node.
func (f *Forwarder) locate(c *fiber.Ctx, project, id string) (Place, bool) {
	p, err := f.o.Locate(c.UserContext(), project, id)
	if err != nil || p.Node == "" || p.Node == f.o.Self {
		return p, false
	}
	return p, true
}

// requestHeaders and responseHeaders are what crosses the hop: what a
// file or a JSON-RPC call means, never the user's credentials (the node
// takes the secret instead) nor hop-by-hop headers.
var (
	requestHeaders  = []string{"Range", "If-Range", "If-Modified-Since", "If-None-Match", "Accept", "Accept-Encoding", "Content-Type", "X-Requested-With"}
	responseHeaders = []string{"Content-Type", "Content-Encoding", "Content-Range", "Accept-Ranges", "Last-Modified", "ETag", "Vary", "Location", "Allow",
		"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers"}
)

// forward sends the request to the node at p.URL and streams its answer
// back; fail answers when it cannot be sent.
func (f *Forwarder) forward(c *fiber.Ctx, p Place, fail func(why string) error) error {
	log := f.o.Log.With("node", p.Node, "path", c.Path())
	if p.URL == "" {
		log.Warn("cannot forward a request: the node has no advertise_url")
		return fail("which has no advertise_url")
	}
	target := strings.TrimRight(p.URL, "/") + c.Path()
	if q := c.Request().URI().QueryString(); len(q) > 0 {
		target += "?" + string(q)
	}
	var body io.Reader
	if b := c.Body(); len(b) > 0 {
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(c.UserContext(), c.Method(), target, body)
	if err != nil {
		log.Warn("cannot forward a request", "err", err)
		return fail("whose advertise_url " + p.URL + " is not a URL")
	}
	for _, h := range requestHeaders {
		if v := c.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(Header, f.o.Secret)
	resp, err := f.client.Do(req)
	if err != nil {
		log.Warn("cannot forward a request: the node cannot be reached", "url", p.URL, "err", err)
		return fail("which cannot be reached at " + p.URL + " (" + reason(err) + ")")
	}
	for _, h := range responseHeaders {
		if v := resp.Header.Get(h); v != "" {
			c.Set(h, v)
		}
	}
	c.Status(resp.StatusCode)
	if c.Method() == fiber.MethodHead {
		resp.Body.Close()
		if n := resp.Header.Get(fiber.HeaderContentLength); n != "" {
			c.Set(fiber.HeaderContentLength, n)
		}
		return nil
	}
	// fasthttp closes the body once it is sent.
	c.Context().SetBodyStream(resp.Body, int(resp.ContentLength))
	return nil
}

// reason is why a node could not be reached, without the URL the message
// already names.
func reason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time"
	}
	return err.Error()
}

// errorPage is Twisted's error page, as Scrapyd's file listings answer.
func errorPage(c *fiber.Ctx, status int, msg string) error {
	c.Status(status)
	c.Set(fiber.HeaderContentType, "text/html; charset=utf-8")
	title := fmt.Sprintf("%d - %s", status, http.StatusText(status))
	return c.SendString(`<html>
  <head><title>` + title + `</title></head>
  <body>
    <h1>` + http.StatusText(status) + `</h1>
    <p>` + html.EscapeString(msg) + `</p>
  </body>
</html>
`)
}
