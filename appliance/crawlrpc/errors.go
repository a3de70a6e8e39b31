package crawlrpc

import (
	"errors"
	"fmt"
	"net/http"
)

// JSON-RPC 2.0 error codes. The first five are the standard ones, used as
// scrapy/utils/jsonrpc.py used them (webservice-jsonrpc.md §5.4); only
// codeInvalidParams is new (the original splatted any params value).
// The -320xx codes are the range JSON-RPC 2.0 leaves to servers: they report
// what the daemon adds in front of the crawl, and come with an HTTP status
// other than 200 so that plain HTTP clients (curl -f) notice too.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeMethodNotFound = -32601
	codeInvalidParams  = -32602
	codeInternalError  = -32603

	codeNotRunning       = -32000 // HTTP 404: the job is unknown, pending or finished
	codeUnavailable      = -32001 // HTTP 503: running, but its web service is not up (starting or stopping)
	codeNoSuchResource   = -32002 // HTTP 404: not in the table, or not in webservice_resources
	codeMethodNotAllowed = -32003 // HTTP 405: e.g. POST to a read-only resource
	codeDisabled         = -32004 // HTTP 404: webservice_enabled is off
	codeNodeUnreachable  = -32005 // HTTP 502: the crawl runs on another node of the cluster, which cannot be reached
)

// rpcError is the "error" member of a JSON-RPC response. Data carries the
// crawl's Python traceback for -32603, as the original did.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data"`
}

// The daemon's own messages, in one place.
func errParse(detail error) *rpcError {
	return &rpcError{Code: codeParseError, Message: "Parse error", Data: detail.Error()}
}

func errInvalidRequest() *rpcError {
	return &rpcError{Code: codeInvalidRequest, Message: "Invalid Request"}
}

func errMethodNotFound() *rpcError {
	return &rpcError{Code: codeMethodNotFound, Message: "Method not found"}
}

func errInvalidParams() *rpcError {
	return &rpcError{Code: codeInvalidParams, Message: "Invalid params", Data: "params must be an array or an object"}
}

// routeError is a failure before any JSON-RPC call is made; it carries its
// HTTP status.
type routeError struct {
	status int
	err    rpcError
}

func errNotRunning(jobID string) routeError {
	return routeError{http.StatusNotFound, rpcError{Code: codeNotRunning, Message: fmt.Sprintf("job %q is not running", jobID)}}
}

func errUnavailable(jobID string) routeError {
	return routeError{http.StatusServiceUnavailable, rpcError{
		Code:    codeUnavailable,
		Message: fmt.Sprintf("the web service of job %q is not available (the crawl is starting or stopping)", jobID),
	}}
}

func errNoSuchResource(path string) routeError {
	return routeError{http.StatusNotFound, rpcError{Code: codeNoSuchResource, Message: fmt.Sprintf("no such resource: %q", path)}}
}

func errMethodNotAllowed(method, path string) routeError {
	return routeError{http.StatusMethodNotAllowed, rpcError{
		Code: codeMethodNotAllowed, Message: fmt.Sprintf("%s is not allowed on %q", method, "/"+path),
	}}
}

func errDisabled() routeError {
	return routeError{http.StatusNotFound, rpcError{Code: codeDisabled, Message: "the crawl web service is disabled (webservice_enabled)"}}
}

// Errors returned by the Go API (Prepare, LiveStats, FinalStats).
var (
	// ErrUnavailable: the crawl's socket cannot be reached: the crawl has not
	// started its engine yet, has stopped it, or is not running at all.
	ErrUnavailable = errors.New("crawl web service not available")
	// ErrNoStats: the crawl left no final stats (it never started its engine,
	// was killed, or was not prepared by this service).
	ErrNoStats = errors.New("no final stats")
)

func errNodeUnreachable(msg string) routeError {
	return routeError{http.StatusBadGateway, rpcError{Code: codeNodeUnreachable, Message: msg}}
}
