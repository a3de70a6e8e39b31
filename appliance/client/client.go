// Package client is a Go client for Scrapyd's JSON API and for the crawl web
// service (JSON-RPC 2.0) the daemon serves per running job. It speaks only
// the public wire contract, so it works against today's Python Scrapyd too.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// Options configures a Client. The zero value is usable.
type Options struct {
	// Username and Password enable HTTP Basic authentication. When both are
	// empty, credentials in the base URL's userinfo are used instead.
	Username, Password string
	// HTTPClient sends the requests; nil means a client without a timeout
	// (calls are bounded by their context instead).
	HTTPClient *http.Client
	// UserAgent is sent with every request; empty means "scrapydctl".
	UserAgent string
	// OnAnswer, when set, receives the raw body of every API and JSON-RPC
	// answer before it is decoded, errors included. scrapydctl --json uses
	// it to print exactly what the server said.
	OnAnswer func(body []byte)
}

// Client talks to one Scrapyd server. It is safe for concurrent use if
// OnAnswer is.
type Client struct {
	base *url.URL // always ends with "/", without userinfo
	opts Options
	hc   *http.Client
}

// New returns a client for the server at baseURL, e.g. "http://localhost:6800/".
// A path in baseURL (a reverse-proxy prefix) is kept for every endpoint.
func New(baseURL string, opts Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("client: bad URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: bad URL %q: want http://host[:port]/", baseURL)
	}
	if u.User != nil {
		if opts.Username == "" && opts.Password == "" {
			opts.Username = u.User.Username()
			opts.Password, _ = u.User.Password()
		}
		u.User = nil
	}
	if !strings.HasSuffix(u.Path, "/") {
		// scrapyd-deploy's urljoin would drop the last path segment here;
		// keeping it is what a user who wrote ".../api/scrapyd" means.
		u.Path += "/"
	}
	u.RawQuery, u.Fragment = "", ""
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "scrapydctl"
	}
	return &Client{base: u, opts: opts, hc: hc}, nil
}

// URL returns the server's base URL, with a trailing slash.
func (c *Client) URL() string { return c.base.String() }

// APIError is Scrapyd's answer {"status": "error", "message": ...}.
type APIError struct {
	Endpoint string // e.g. "schedule.json"
	Message  string // Scrapyd's text, e.g. "spider 'x' not found"
}

func (e *APIError) Error() string { return e.Message }

// ErrUnauthorized is matched (errors.Is) by an HTTPError with status 401.
var ErrUnauthorized = errors.New("the server refused the credentials")

// ErrMalformed is wrapped when an answer is not the JSON the API promises
// (for example Scrapyd's plain-text tracebacks in debug mode).
var ErrMalformed = errors.New("malformed answer")

// HTTPError is an answer with an unexpected HTTP status.
type HTTPError struct {
	URL        string
	StatusCode int
}

func (e *HTTPError) Error() string {
	if e.StatusCode == http.StatusUnauthorized {
		return fmt.Sprintf("%v (HTTP 401)", ErrUnauthorized)
	}
	return fmt.Sprintf("%s: HTTP %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
}

// Is makes errors.Is(err, ErrUnauthorized) true for a 401.
func (e *HTTPError) Is(target error) bool {
	return target == ErrUnauthorized && e.StatusCode == http.StatusUnauthorized
}

// UnreachableError says no HTTP answer came back at all.
type UnreachableError struct {
	URL string // the server's base URL
	Err error  // the innermost cause, e.g. syscall.ECONNREFUSED
}

func (e *UnreachableError) Error() string { return fmt.Sprintf("cannot reach %s: %v", e.URL, e.Err) }
func (e *UnreachableError) Unwrap() error { return e.Err }

// resolve turns an endpoint ("listjobs.json") or a server path
// ("/logs/p/s/j.log", as in listjobs' log_url) into an absolute URL under
// the base URL, so that a proxy prefix applies to both.
func (c *Client) resolve(ref string) (*url.URL, error) {
	if u, err := url.Parse(ref); err == nil && u.IsAbs() {
		return u, nil
	}
	rel, err := url.Parse(strings.TrimPrefix(ref, "/"))
	if err != nil {
		return nil, fmt.Errorf("client: bad path %q: %w", ref, err)
	}
	return c.base.ResolveReference(rel), nil
}

// request is one HTTP exchange; send returns the response only for an
// accepted status, so callers handle just the happy path.
type request struct {
	method      string
	ref         string
	query       url.Values
	body        io.Reader
	size        int64
	contentType string
	header      http.Header
	accept      []int // statuses treated as success; default 2xx
}

func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	u, err := c.resolve(r.ref)
	if err != nil {
		return nil, err
	}
	if len(r.query) > 0 {
		u.RawQuery = r.query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), r.body)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if r.body != nil {
		req.ContentLength = r.size
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	req.Header.Set("User-Agent", c.opts.UserAgent)
	if c.opts.Username != "" || c.opts.Password != "" {
		req.SetBasicAuth(c.opts.Username, c.opts.Password)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.unreachable(err)
	}
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	for _, s := range r.accept {
		ok = ok || resp.StatusCode == s
	}
	if !ok {
		resp.Body.Close()
		return nil, &HTTPError{URL: u.String(), StatusCode: resp.StatusCode}
	}
	return resp, nil
}

func (c *Client) unreachable(err error) error {
	return &UnreachableError{URL: strings.TrimSuffix(c.base.String(), "/"), Err: innermost(err)}
}

// innermost digs out the cause a user can act on ("connection refused",
// "no such host") from net/http's nested errors.
func innermost(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// maxAnswer bounds what is read of an API answer: listjobs of a busy server
// is large, but never this large.
const maxAnswer = 64 << 20

// readAnswer reads a JSON answer and hands it to OnAnswer.
func (c *Client) readAnswer(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, c.unreachable(err)
	}
	if c.opts.OnAnswer != nil {
		c.opts.OnAnswer(body)
	}
	return body, nil
}

// envelope is the part of every Scrapyd answer that says how it went.
type envelope struct {
	Status   string `json:"status"`
	Message  string `json:"message"`
	NodeName string `json:"node_name"`
}

// call sends an API request and decodes the answer into out, turning
// {"status": "error"} into an *APIError.
func (c *Client) call(ctx context.Context, r request, out any) error {
	resp, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	body, err := c.readAnswer(resp)
	if err != nil {
		return err
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("%s: %w: %s", r.ref, ErrMalformed, snippet(body))
	}
	switch env.Status {
	case "ok":
	case "error":
		return &APIError{Endpoint: r.ref, Message: env.Message}
	default:
		return fmt.Errorf("%s: %w: status %q", r.ref, ErrMalformed, env.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s: %w: %v", r.ref, ErrMalformed, err)
	}
	return nil
}

func (c *Client) get(ctx context.Context, endpoint string, q url.Values, out any) error {
	return c.call(ctx, request{method: http.MethodGet, ref: endpoint, query: q}, out)
}

func (c *Client) post(ctx context.Context, endpoint string, form url.Values, out any) error {
	body := form.Encode()
	return c.call(ctx, request{
		method:      http.MethodPost,
		ref:         endpoint,
		body:        strings.NewReader(body),
		size:        int64(len(body)),
		contentType: "application/x-www-form-urlencoded",
	}, out)
}

func snippet(b []byte) string {
	const n = 200
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = s[:n] + "…"
	}
	return fmt.Sprintf("%q", s)
}
