package crawlrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"time"
)

const (
	// callTimeout bounds one web service call: the crawl answers from its
	// reactor thread, which a busy callback can hold up.
	callTimeout = 10 * time.Second
	// statsTimeout bounds LiveStats, which listjobs.json calls per running
	// job: a stuck crawl must not stall the listing.
	statsTimeout = time.Second
	// maxReply bounds what is read from a crawl.
	maxReply = 16 << 20
	// maxRequest bounds a JSON-RPC request; the crawl drops lines over
	// 4 MiB (extension.py _Channel.MAX_LENGTH).
	maxRequest = 1 << 20
)

// channelRequest is one line to the extension (see extension.py).
type channelRequest struct {
	Op     string          `json:"op"` // "call" or "get"
	Path   string          `json:"path"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
}

// channelReply is the extension's answer: a result or an error.
type channelReply struct {
	Result json.RawMessage `json:"result"`
	Error  *rpcError       `json:"error"`
}

// exchange sends one request to the job's crawl and reads its reply; one
// connection per request keeps both sides trivial.
func (s *Service) exchange(ctx context.Context, jobID string, req channelRequest, timeout time.Duration) (channelReply, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", s.socketPath(jobID))
	if err != nil {
		return channelReply{}, fmt.Errorf("crawlrpc: job %s: %w: %w", jobID, ErrUnavailable, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return channelReply{}, fmt.Errorf("crawlrpc: job %s: %w", jobID, err)
	}
	line, err := json.Marshal(req)
	if err != nil {
		return channelReply{}, fmt.Errorf("crawlrpc: job %s: %w", jobID, err)
	}
	if _, err := conn.Write(append(line, '\n')); err != nil {
		return channelReply{}, fmt.Errorf("crawlrpc: job %s: %w: %w", jobID, ErrUnavailable, err)
	}
	body, err := io.ReadAll(io.LimitReader(conn, maxReply))
	if err != nil {
		return channelReply{}, fmt.Errorf("crawlrpc: job %s: %w: %w", jobID, ErrUnavailable, err)
	}
	var reply channelReply
	if err := json.Unmarshal(bytes.TrimSpace(body), &reply); err != nil || (reply.Error == nil && reply.Result == nil) {
		// An empty reply: the crawl closed the connection while stopping.
		return channelReply{}, fmt.Errorf("crawlrpc: job %s: %w: bad reply %.80q", jobID, ErrUnavailable, body)
	}
	return reply, nil
}

// LiveStats returns a running crawl's stats (its stats collector's
// get_stats()) as a JSON object, within one second. ErrUnavailable (wrapped)
// means the crawl's engine is not running; the caller shows no stats then.
// It does not depend on webservice_enabled or webservice_resources.
func (s *Service) LiveStats(ctx context.Context, jobID string) (json.RawMessage, error) {
	reply, err := s.exchange(ctx, jobID, channelRequest{Op: "call", Path: "stats", Method: "get_stats"}, statsTimeout)
	if err != nil {
		return nil, err
	}
	if reply.Error != nil {
		return nil, fmt.Errorf("crawlrpc: job %s: get_stats: %s", jobID, reply.Error.Message)
	}
	return reply.Result, nil
}

// FinalStats returns the stats the crawl wrote when its engine stopped, as
// a JSON object. Call it after the crawl has ended and before Cleanup;
// ErrNoStats (wrapped) if the crawl left none.
func (s *Service) FinalStats(jobID string) (json.RawMessage, error) {
	b, err := os.ReadFile(s.statsPath(jobID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("crawlrpc: job %s: %w", jobID, ErrNoStats)
	}
	if err != nil {
		return nil, fmt.Errorf("crawlrpc: job %s: final stats: %w", jobID, err)
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("crawlrpc: job %s: %w: %s is not JSON", jobID, ErrNoStats, s.statsPath(jobID))
	}
	return b, nil
}

// Summary is the handful of stats listjobs.json and the job page show.
type Summary struct {
	ItemsScraped int64  `json:"items_scraped"`
	Requests     int64  `json:"requests"`
	Responses    int64  `json:"responses"`
	Errors       int64  `json:"errors"`                  // lines logged at ERROR level
	FinishReason string `json:"finish_reason,omitempty"` // only in final stats
}

// Summarize picks the Summary out of stats from LiveStats or FinalStats.
func Summarize(stats []byte) (Summary, error) {
	var raw struct {
		Items        int64  `json:"item_scraped_count"`
		Requests     int64  `json:"downloader/request_count"`
		Responses    int64  `json:"response_received_count"`
		Errors       int64  `json:"log_count/ERROR"`
		FinishReason string `json:"finish_reason"`
	}
	if err := json.Unmarshal(stats, &raw); err != nil {
		return Summary{}, fmt.Errorf("crawlrpc: summarize stats: %w", err)
	}
	return Summary{raw.Items, raw.Requests, raw.Responses, raw.Errors, raw.FinishReason}, nil
}
