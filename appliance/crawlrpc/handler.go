package crawlrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Register mounts the web service on r as /webservice/<job>/..., to be
// behind the daemon's auth middleware.
func (s *Service) Register(r fiber.Router) {
	r.All("/webservice/:job", s.handle)
	r.All("/webservice/:job/*", s.handle)
}

// Unreachable answers a call to a crawl on another node of the cluster
// that could not be forwarded there (appliance/forward), in the web
// service's own error envelope: msg says which node and why.
func Unreachable(c *fiber.Ctx, jobID, msg string) error {
	return errNodeUnreachable(msg).reply().send(c)
}

// reply is one answer, decided before anything is written so that it can
// be logged and sent in one place.
type reply struct {
	status int
	body   any    // sent as JSON plus "\n"
	method string // the JSON-RPC method, for the request log
	code   int    // the JSON-RPC error code, for the request log
	cause  error  // why the crawl could not be reached: logged, not sent (it names local paths)
}

func unavailable(job string, cause error) reply {
	r := errUnavailable(job).reply()
	r.cause = cause
	return r
}

// response is a JSON-RPC 2.0 response, members in the order the reference
// shows them (webservice-jsonrpc.md §5.4).
type response struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
	ID      json.RawMessage `json:"id"` // nil is sent as null
}

func resultReply(id, result json.RawMessage, method string) reply {
	return reply{status: http.StatusOK, body: response{JSONRPC: "2.0", Result: result, ID: id}, method: method}
}

// errorReply is a JSON-RPC error, HTTP 200 as in the original.
func errorReply(id json.RawMessage, e *rpcError, method string) reply {
	return reply{status: http.StatusOK, body: response{JSONRPC: "2.0", Error: e, ID: id}, method: method, code: e.Code}
}

func (e routeError) reply() reply {
	r := errorReply(nil, &e.err, "")
	r.status = e.status
	return r
}

func (s *Service) handle(c *fiber.Ctx) error {
	start := time.Now()
	st := s.state.Load()
	job := strings.Clone(c.Params("job"))
	path := strings.Trim(c.Params("*"), "/")
	httpMethod := c.Method()
	r := s.serve(c.UserContext(), st, job, path, httpMethod, c.Body())
	attrs := []slog.Attr{
		slog.String("job", job), slog.String("http_method", httpMethod), slog.String("path", "/"+path),
		slog.String("rpc_method", r.method), slog.Int("status", r.status), slog.Int("code", r.code),
		slog.String("remote", c.IP()), slog.Duration("duration", time.Since(start)),
	}
	if r.cause != nil {
		attrs = append(attrs, slog.String("cause", r.cause.Error()))
	}
	st.access.LogAttrs(c.UserContext(), slog.LevelInfo, "webservice request", attrs...)
	return r.send(c)
}

func (s *Service) serve(ctx context.Context, st *state, job, path, httpMethod string, body []byte) reply {
	if httpMethod == fiber.MethodOptions {
		return reply{status: http.StatusNoContent}
	}
	if !st.cfg.Enabled {
		return errDisabled().reply()
	}
	if !s.running(job) {
		return errNotRunning(job).reply()
	}
	get := httpMethod == fiber.MethodGet || httpMethod == fiber.MethodHead
	if path == "" {
		if !get {
			return errMethodNotAllowed(httpMethod, path).reply()
		}
		return reply{status: http.StatusOK, body: map[string][]string{"resources": slices.Sorted(maps.Keys(st.enabled))}}
	}
	top, _, _ := strings.Cut(path, "/")
	res, ok := findResource(path)
	if !ok || !st.enabled[top] {
		return errNoSuchResource("/" + path).reply()
	}
	switch {
	case get && res.rpc:
		// The original sent the wrapped Python object itself, which mostly
		// failed to encode; we describe what can be called instead.
		return reply{status: http.StatusOK, body: map[string][]string{
			"methods":   append([]string{}, res.methods...),
			"resources": append([]string{}, children(path)...),
		}}
	case get:
		return s.get(ctx, job, path)
	case httpMethod == fiber.MethodPost && res.rpc:
		return s.call(ctx, job, res, body)
	}
	return errMethodNotAllowed(httpMethod, path).reply()
}

// get serves a read-only JSON resource from the crawl.
func (s *Service) get(ctx context.Context, job, path string) reply {
	r, err := s.exchange(ctx, job, channelRequest{Op: "get", Path: path}, callTimeout)
	if err != nil {
		return unavailable(job, err)
	}
	if r.Error != nil {
		// The original answered with Twisted's 500 page here.
		out := errorReply(nil, r.Error, "")
		out.status = http.StatusInternalServerError
		return out
	}
	return reply{status: http.StatusOK, body: r.Result}
}

// call checks a JSON-RPC request as scrapy/utils/jsonrpc.py did, then has
// the crawl run it.
func (s *Service) call(ctx context.Context, job string, res resource, body []byte) reply {
	req, e := parseRequest(body)
	if e != nil {
		return errorReply(req.id, e, req.method)
	}
	if !slices.Contains(res.methods, req.method) {
		return errorReply(req.id, errMethodNotFound(), req.method)
	}
	r, err := s.exchange(ctx, job, channelRequest{Op: "call", Path: res.path, Method: req.method, Params: req.params}, callTimeout)
	if err != nil {
		return unavailable(job, err)
	}
	if r.Error != nil {
		return errorReply(req.id, r.Error, req.method)
	}
	return resultReply(req.id, r.Result, req.method)
}

type request struct {
	id     json.RawMessage
	method string
	params json.RawMessage // nil when absent or null: no arguments
}

// parseRequest follows jsonrpc_server_call: "jsonrpc" is not checked, "id"
// and "method" are required (so notifications are refused), params are an
// array or an object. A batch array is an Invalid Request: the original
// crashed on one (§5.4).
func parseRequest(body []byte) (request, *rpcError) {
	if len(body) > maxRequest {
		e := errInvalidRequest()
		e.Data = fmt.Sprintf("request larger than %d bytes", maxRequest)
		return request{}, e
	}
	if !json.Valid(body) {
		var v any
		return request{}, errParse(json.Unmarshal(body, &v))
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return request{}, errInvalidRequest() // valid JSON, but not an object
	}
	id, hasID := fields["id"]
	rawMethod, hasMethod := fields["method"]
	if !hasID || !hasMethod {
		return request{}, errInvalidRequest()
	}
	req := request{id: id}
	if err := json.Unmarshal(rawMethod, &req.method); err != nil {
		return req, errInvalidRequest()
	}
	switch p := bytes.TrimSpace(fields["params"]); {
	case len(p) == 0 || string(p) == "null":
	case p[0] == '[' || p[0] == '{':
		req.params = p
	default:
		return req, errInvalidParams()
	}
	return req, nil
}

// send writes r with the original's headers: JSON, a trailing newline and
// its CORS headers (the leading space in Allow-Headers is the original's).
func (r reply) send(c *fiber.Ctx) error {
	c.Set("Access-Control-Allow-Origin", "*")
	c.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, PUT, DELETE")
	c.Set("Access-Control-Allow-Headers", " X-Requested-With")
	if r.status == http.StatusNoContent {
		c.Set(fiber.HeaderAllow, "OPTIONS, HEAD, GET, POST")
		c.Status(r.status)
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<Request GET …>" stays readable
	if err := enc.Encode(r.body); err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(r.status).Send(buf.Bytes())
}
