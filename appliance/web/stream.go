package web

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
)

// Polling, not fsnotify: a log is one file appended by one process, and a
// short poll also notices the job's state change in the same loop.
const (
	pollEvery      = 250 * time.Millisecond
	summaryEvery   = 2 * time.Second  // runtime, items and stats while running
	heartbeatEvery = 15 * time.Second // finds clients that went away
	chunk          = 64 << 10
)

// lineCounter counts an items feed's lines (one item each, JSON lines)
// incrementally, so a live page does not re-read the whole feed.
type lineCounter struct {
	path string
	off  int64
	n    int64
	seen bool // the file existed at the last update
}

// update reads what was appended since the last call; it reports whether
// the file exists.
func (lc *lineCounter) update() bool {
	f, err := os.Open(lc.path)
	if err != nil {
		return lc.seen
	}
	defer f.Close()
	lc.seen = true
	buf := make([]byte, chunk)
	for {
		n, err := f.ReadAt(buf, lc.off)
		lc.n += int64(bytes.Count(buf[:n], []byte{'\n'}))
		lc.off += int64(n)
		if err != nil {
			return true
		}
	}
}

// readTail returns the end of a log (at most max bytes, from a line
// start) and the offset where following it continues. While the job is
// live the text stops at the last newline: the stream sends whole lines.
func readTail(path string, max int64, live bool) (text string, offset int64, truncated bool) {
	if path == "" {
		return "", 0, false
	}
	var data []byte
	var start int64
	f, err := os.Open(path)
	if err == nil {
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return "", 0, false
		}
		data, start = sectionTail(f, info.Size(), max)
	} else if data, start, err = gzipTail(jobfiles.Compressed(path), max); err != nil {
		return "", 0, false
	}
	return trimTail(data, start, live)
}

// sharedTail is readTail of a log read from the shared database.
func sharedTail(l SharedLog, max int64, live bool) (text string, offset int64, truncated bool) {
	data, start := sectionTail(l, l.Size(), max)
	return trimTail(data, start, live)
}

// sectionTail is the last max bytes of size and where they start.
func sectionTail(r io.ReaderAt, size, max int64) ([]byte, int64) {
	start := size - max
	if start < 0 {
		start = 0
	}
	data, _ := io.ReadAll(io.NewSectionReader(r, start, size-start))
	return data, start
}

// trimTail starts a log's tail read from start at a line, and, while the
// job is live, ends it at one.
func trimTail(data []byte, start int64, live bool) (text string, offset int64, truncated bool) {
	if start > 0 {
		truncated = true
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			start += int64(i + 1)
			data = data[i+1:]
		}
	}
	if live {
		data = data[:bytes.LastIndexByte(data, '\n')+1]
	}
	return string(data), start + int64(len(data)), truncated
}

// gzipTail is the last max bytes of a compressed file's content and
// where they start, read through with at most 2*max bytes held.
func gzipTail(path string, max int64) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, chunk))
	if err != nil {
		return nil, 0, err
	}
	var buf []byte
	var dropped int64
	chunkBuf := make([]byte, chunk)
	for {
		n, err := zr.Read(chunkBuf)
		buf = append(buf, chunkBuf[:n]...)
		if over := int64(len(buf)) - max; over > max {
			dropped += over
			buf = append(buf[:0], buf[over:]...)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, err
		}
	}
	if over := int64(len(buf)) - max; over > 0 {
		dropped += over
		buf = buf[over:]
	}
	return buf, dropped, nil
}

// followLog streams a job's log as server-sent events from an offset
// (?from=, or Last-Event-ID when the browser reconnects) until the job has
// finished: each complete line is one message whose id is the offset after
// it; an "update" event carries the job summary when it changes, and an
// "end" event the final one before the stream closes. The stream also ends
// when the server shuts down or the client goes away.
func (h *handlers) followLog(c *fiber.Ctx) error {
	project, id := param(c, "project"), param(c, "job")
	j, err := h.findJob(c.UserContext(), project, id)
	if err != nil || j == nil {
		return fiber.ErrNotFound
	}
	from, _ := strconv.ParseInt(c.Query("from"), 10, 64)
	if last, err := strconv.ParseInt(c.Get("Last-Event-ID"), 10, 64); err == nil {
		from = last
	}
	paths := jobfiles.Of(h.o.Config(), j.Project, j.Spider, j.ID)
	var items *lineCounter
	if paths.Items != "" {
		items = &lineCounter{path: paths.Items}
	}
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no") // nginx would otherwise hold the events back
	done := c.Context().Done()       // closed when the server shuts down
	ctx := c.UserContext()
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		f := &follower{w: w, path: paths.Log, off: max(from, 0), shared: h.sharedLogOf(ctx, j)}
		defer f.close()
		last := ""
		send := func(event string) bool {
			s := h.summarize(j, items)
			data, _ := json.Marshal(s)
			if event == "update" && string(data) == last {
				return true
			}
			last = string(data)
			return f.event(event, string(data))
		}
		tick := time.NewTicker(pollEvery)
		defer tick.Stop()
		var lastSummary, lastWrite time.Time
		for {
			if !f.lines(false) {
				return
			}
			cur, err := h.findJob(ctx, j.Project, j.ID)
			if err == nil && cur != nil {
				j = cur
			}
			if j.State == job.Finished {
				// The crawl has exited, so the log is complete: send its
				// unterminated last line too, then the outcome.
				f.lines(true)
				send("end")
				return
			}
			if time.Since(lastSummary) >= summaryEvery {
				if !send("update") {
					return
				}
				lastSummary = time.Now()
			}
			if f.wrote {
				lastWrite, f.wrote = time.Now(), false
			} else if time.Since(lastWrite) >= heartbeatEvery {
				if !f.comment() {
					return
				}
				lastWrite = time.Now()
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return nil
}

// follower writes a log's new lines as events.
type follower struct {
	w     *bufio.Writer
	path  string
	f     *os.File
	off   int64
	buf   []byte
	wrote bool
	// shared, when set, opens the log from the shared database while this
	// node has no file of it (the crawl runs on another node): opened
	// again at every poll, to see what was shipped since.
	shared func() (SharedLog, bool)
}

func (f *follower) close() {
	if f.f != nil {
		f.f.Close()
	}
}

// lines sends every complete line past the offset (and, with all, an
// unterminated last one); false means the client is gone.
func (f *follower) lines(all bool) bool {
	var r io.ReaderAt = f.f
	if f.f == nil {
		if f.path == "" {
			return true
		}
		var err error
		if f.f, err = os.Open(f.path); err == nil {
			r = f.f
		} else if l, ok := f.sharedLog(); ok {
			r = l
		} else {
			return true // not written yet: the crawl has not started
		}
	}
	if f.buf == nil {
		f.buf = make([]byte, chunk)
	}
	for {
		n, _ := r.ReadAt(f.buf, f.off)
		data := f.buf[:n]
		end := bytes.LastIndexByte(data, '\n') + 1
		if end == 0 && n == len(f.buf) {
			end = n // a line longer than a chunk goes out in pieces
		}
		if all && n < len(f.buf) {
			end = n
		}
		if end == 0 {
			return true
		}
		for rest := data[:end]; len(rest) > 0; {
			line := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				line, rest = rest[:i], rest[i+1:]
				f.off++
			} else {
				rest = nil
			}
			f.off += int64(len(line))
			// A CR would end the event's data line early (SSE treats CR,
			// LF and CRLF alike).
			f.w.WriteString("id: " + strconv.FormatInt(f.off, 10) + "\ndata: ")
			f.w.Write(bytes.ReplaceAll(line, []byte{'\r'}, nil))
			f.w.WriteString("\n\n")
		}
		f.wrote = true
		if f.w.Flush() != nil {
			return false
		}
		if n < len(f.buf) {
			return true
		}
	}
}

func (f *follower) sharedLog() (SharedLog, bool) {
	if f.shared == nil {
		return nil, false
	}
	return f.shared()
}

func (f *follower) event(name, data string) bool {
	f.w.WriteString("event: " + name + "\ndata: " + data + "\n\n")
	f.wrote = true
	return f.w.Flush() == nil
}

// comment is an SSE comment line: ignored by browsers, it fails to write
// once the client has gone.
func (f *follower) comment() bool {
	f.w.WriteString(": keep-alive\n\n")
	return f.w.Flush() == nil
}

// sharedLogOf opens a job's log from the shared database (nil on a single
// node): for a page of a crawl another node runs.
func (h *handlers) sharedLogOf(ctx context.Context, j *job.Job) func() (SharedLog, bool) {
	if h.o.SharedLogs == nil {
		return nil
	}
	project, spider, id := j.Project, j.Spider, j.ID
	return func() (SharedLog, bool) {
		l, ok, err := h.o.SharedLogs(ctx, project, spider, id)
		return l, ok && err == nil
	}
}

// jobTail is readTail of a job's log: its file on this node, else the log
// shipped to the shared database.
func (h *handlers) jobTail(ctx context.Context, j *job.Job, path string, live bool) (text string, offset int64, truncated bool) {
	if path != "" && !exists(path) && !exists(jobfiles.Compressed(path)) {
		if open := h.sharedLogOf(ctx, j); open != nil {
			if l, ok := open(); ok {
				return sharedTail(l, logTail, live)
			}
		}
	}
	return readTail(path, logTail, live)
}
