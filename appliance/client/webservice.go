package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// WebService is the crawl web service of one running job, which the daemon
// serves at /webservice/<job>/: the resources of old Scrapy's JSON-RPC web
// service (crawler, stats, enginestatus), behind the daemon's own auth.
type WebService struct {
	c      *Client
	prefix string
}

// WebService returns the web service of the job with the given id.
func (c *Client) WebService(jobID string) *WebService {
	return &WebService{c: c, prefix: "webservice/" + url.PathEscape(jobID) + "/"}
}

// RPCError is a JSON-RPC 2.0 error object, e.g. -32601 "Method not found".
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data"` // often the crawl's traceback
}

func (e *RPCError) Error() string { return fmt.Sprintf("JSON-RPC error %d: %s", e.Code, e.Message) }

// Get decodes the JSON a read-only resource returns (path relative to the
// job's root, "" for the root itself) into out.
func (w *WebService) Get(ctx context.Context, path string, out any) error {
	ref := w.prefix + path
	body, _, err := w.exchange(ctx, request{method: http.MethodGet, ref: ref})
	if err != nil {
		return err
	}
	if err := decodeJSON(body, out); err != nil {
		return fmt.Errorf("%s: %w: %v", ref, ErrMalformed, err)
	}
	return nil
}

// Call invokes method on the JSON-RPC resource at path with params (a
// slice for positional, a map for keyword parameters, nil for none) and
// decodes the result into out (nil to ignore it).
func (w *WebService) Call(ctx context.Context, path, method string, params, out any) error {
	if params == nil {
		params = []any{}
	}
	req, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
	if err != nil {
		return fmt.Errorf("client: %s: %w", method, err)
	}
	ref := w.prefix + path
	_, result, err := w.exchange(ctx, request{
		method:      http.MethodPost,
		ref:         ref,
		body:        bytes.NewReader(req),
		size:        int64(len(req)),
		contentType: "application/json",
	})
	if err != nil || out == nil || result == nil {
		return err
	}
	if err := decodeJSON(result, out); err != nil {
		return fmt.Errorf("%s %s: %w: %v", ref, method, ErrMalformed, err)
	}
	return nil
}

// decodeJSON is json.Unmarshal keeping numbers in an any as json.Number:
// through float64 a stat like memusage/max (70578176) would print as
// 7.0578176e+07, and a counter past 2^53 would lose digits.
func decodeJSON(data []byte, out any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(out); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// exchange sends one web service request and returns the answer's body and,
// for a JSON-RPC answer, its result. The daemon explains a 404 (job not
// running, no such resource) or 405 in a JSON-RPC error object, which is
// returned as an *RPCError rather than a bare HTTP status.
func (w *WebService) exchange(ctx context.Context, r request) (body, result json.RawMessage, err error) {
	r.accept = []int{http.StatusNotFound, http.StatusMethodNotAllowed}
	resp, err := w.c.send(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	status := resp.StatusCode
	body, err = w.c.readAnswer(resp)
	if err != nil {
		return nil, nil, err
	}
	var env envelope
	if json.Unmarshal(body, &env) == nil && env.Status == "error" {
		return nil, nil, &APIError{Endpoint: r.ref, Message: env.Message}
	}
	var answer struct {
		Result json.RawMessage `json:"result"`
		Error  *RPCError       `json:"error"`
	}
	if json.Unmarshal(body, &answer) == nil && answer.Error != nil {
		return nil, nil, answer.Error
	}
	if status >= 300 {
		return nil, nil, &HTTPError{URL: w.c.base.String() + r.ref, StatusCode: status}
	}
	if r.method == http.MethodPost && !json.Valid(body) {
		return nil, nil, fmt.Errorf("%s: %w: %s", r.ref, ErrMalformed, snippet(body))
	}
	return body, answer.Result, nil
}

// Resources lists the web service's resources ("crawler", "stats", ...).
func (w *WebService) Resources(ctx context.Context) ([]string, error) {
	var out struct {
		Resources []string `json:"resources"`
	}
	err := w.Get(ctx, "", &out)
	return out.Resources, err
}

// OpenSpiders lists the crawl's running spiders as spider references
// ("spider:<id>:<name>"), which Stats and CloseSpider accept.
func (w *WebService) OpenSpiders(ctx context.Context) ([]string, error) {
	var out []string
	err := w.Get(ctx, "crawler/engine/open_spiders", &out)
	return out, err
}

// Spiders lists the spiders the crawl's project has.
func (w *WebService) Spiders(ctx context.Context) ([]string, error) {
	var out []string
	err := w.Call(ctx, "crawler/spiders", "list", nil, &out)
	return out, err
}

// CloseSpider stops a running spider (the scrapy-ws "stop" command).
func (w *WebService) CloseSpider(ctx context.Context, spider string) error {
	return w.Call(ctx, "crawler/engine", "close_spider", []any{spider}, nil)
}

// Pause pauses the crawl's engine.
func (w *WebService) Pause(ctx context.Context) error {
	return w.Call(ctx, "crawler/engine", "pause", nil, nil)
}

// Unpause resumes a paused engine.
func (w *WebService) Unpause(ctx context.Context) error {
	return w.Call(ctx, "crawler/engine", "unpause", nil, nil)
}

// Stats returns the crawl's stats: a spider's when spider is set, else the
// global ones.
func (w *WebService) Stats(ctx context.Context, spider string) (map[string]any, error) {
	var params any // nil, not a nil slice: that would be sent as null
	if spider != "" {
		params = []any{spider}
	}
	var out map[string]any
	err := w.Call(ctx, "stats", "get_stats", params, &out)
	return out, err
}

// EngineStatus returns the engine status resource as sent: Scrapy's list of
// [expression, value] pairs.
func (w *WebService) EngineStatus(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	err := w.Get(ctx, "enginestatus", &out)
	return out, err
}
