package web

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/jobfiles"
)

// logsRoot and itemsRoot pick the served directory from a config snapshot
// ("" when not served: /logs/ only with a logs_dir, /items/ only with a
// local items_dir, as in Scrapyd).
func logsRoot(cfg *config.Config) string  { return cfg.LogsDir }
func itemsRoot(cfg *config.Config) string { return jobfiles.LocalItemsDir(cfg) }

// files serves a directory the way Scrapyd's Twisted static.File does:
// listings with a Last modified column, files with Range support, and
// .gz/.bz2 with their Content-Encoding. Every path is opened through
// os.Root, so neither `..` nor a symlink can reach outside the directory.
// A file the directory does not have is asked of elsewhere (the shared
// database's crawl logs), when given.
func (h *handlers) files(dirOf func(*config.Config) string, elsewhere func(c *fiber.Ctx, rel string) error) fiber.Handler {
	return func(c *fiber.Ctx) error {
		dir := dirOf(h.o.Config())
		if dir == "" {
			return fiber.ErrNotFound
		}
		raw := c.Path()
		top, rest, slash := strings.Cut(strings.TrimPrefix(raw, "/"), "/")
		if !slash {
			return redirectToDir(c, top)
		}
		rel, ok := cleanRel(rest)
		if !ok {
			return fiber.ErrNotFound
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			return fiber.ErrNotFound
		}
		defer root.Close()
		info, err := root.Stat(rel)
		if err != nil {
			// A finished crawl's log or items compressed after its end
			// stay at their plain URL (issue 17 point 5).
			if gz, err := root.Stat(rel + ".gz"); err == nil && gz.Mode().IsRegular() && !strings.HasSuffix(raw, "/") {
				return serveCompressed(c, root, rel, gz)
			}
			if elsewhere != nil && !strings.HasSuffix(raw, "/") {
				return elsewhere(c, rel)
			}
			return fiber.ErrNotFound
		}
		if info.IsDir() {
			if rel != "." && !strings.HasSuffix(raw, "/") {
				return redirectToDir(c, path.Base(raw))
			}
			return h.listing(c, root, rel, raw)
		}
		if strings.HasSuffix(raw, "/") || !info.Mode().IsRegular() {
			return fiber.ErrNotFound
		}
		return serveFile(c, root, rel, info)
	}
}

// sharedLogFile serves logs_dir's P/S/ID.log from the shared database when
// this node does not have it (cluster mode: the crawl ran on another
// node), with the headers, ranges and conditions of a local file.
func (h *handlers) sharedLogFile(c *fiber.Ctx, rel string) error {
	parts := strings.Split(rel, "/")
	if h.o.SharedLogs == nil || len(parts) != 3 {
		return fiber.ErrNotFound
	}
	id, ok := strings.CutSuffix(parts[2], jobfiles.LogExt)
	if !ok || id == "" {
		return fiber.ErrNotFound
	}
	l, ok, err := h.o.SharedLogs(c.UserContext(), parts[0], parts[1], id)
	if err != nil {
		return fmt.Errorf("the crawl log cannot be read from the database: %w", err)
	}
	if !ok {
		return fiber.ErrNotFound
	}
	ctype, _ := contentType(rel)
	return serve(c, ctype, "", l.ModTime(), l.Size(), func(start, n int64) (io.ReadCloser, error) {
		return io.NopCloser(io.NewSectionReader(l, start, n)), nil
	})
}

// redirectToDir answers a directory asked for without its trailing slash
// with a relative Location, as Twisted does, so it also works behind a
// proxy that mounts us under a prefix.
func redirectToDir(c *fiber.Ctx, last string) error {
	c.Set(fiber.HeaderLocation, last+"/")
	return c.SendStatus(fiber.StatusMovedPermanently)
}

// cleanRel turns the raw (still percent-encoded) path below the served
// directory into a relative path, refusing anything that could name a file
// elsewhere: `.` or `..` segments, encoded slashes or backslashes, NUL.
func cleanRel(raw string) (string, bool) {
	if raw == "" || raw == "/" {
		return ".", true
	}
	var parts []string
	for _, seg := range strings.Split(strings.TrimSuffix(raw, "/"), "/") {
		name, err := url.PathUnescape(seg)
		if err != nil || name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
			return "", false
		}
		parts = append(parts, name)
	}
	return strings.Join(parts, "/"), true
}

// contentType is Twisted's type and encoding guess, narrowed: what crawls
// write (logs, items feeds, LogParser's JSON) keeps its type, anything else
// is text/plain (Scrapyd's defaultType). The encoding comes from a .gz or
// .bz2 suffix, the type from the name without it.
func contentType(name string) (ctype, encoding string) {
	switch {
	case strings.HasSuffix(name, ".gz"):
		encoding, name = "gzip", strings.TrimSuffix(name, ".gz")
	case strings.HasSuffix(name, ".bz2"):
		encoding, name = "bzip2", strings.TrimSuffix(name, ".bz2")
	}
	switch path.Ext(name) {
	case ".json":
		return "application/json", encoding
	case ".csv":
		return "text/csv", encoding
	case ".xml":
		return "text/xml", encoding
	}
	return "text/plain", encoding
}

func serveFile(c *fiber.Ctx, root *os.Root, rel string, info fs.FileInfo) error {
	ctype, encoding := contentType(rel)
	return serve(c, ctype, encoding, info.ModTime(), info.Size(), func(start, n int64) (io.ReadCloser, error) {
		f, err := root.Open(rel)
		if err != nil {
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{io.NewSectionReader(f, start, n), f}, nil
	})
}

// serveCompressed answers a request for rel, of which only rel.gz exists:
// the compressed bytes with Content-Encoding: gzip to a client that
// accepts gzip and asks for no range, else the plain content, decompressed
// as it is sent (a range too: the part before it is read and dropped, so
// memory stays bounded whatever the file's size).
func serveCompressed(c *fiber.Ctx, root *os.Root, rel string, gz fs.FileInfo) error {
	c.Vary(fiber.HeaderAcceptEncoding)
	if c.Get(fiber.HeaderRange) == "" && acceptsGzip(c.Get(fiber.HeaderAcceptEncoding)) {
		return serveFile(c, root, rel+".gz", gz)
	}
	f, err := root.Open(rel + ".gz")
	if err != nil {
		return fiber.ErrNotFound
	}
	size, err := gzipSize(f, gz.Size())
	f.Close()
	if err != nil {
		return fiber.ErrNotFound
	}
	ctype, _ := contentType(rel)
	return serve(c, ctype, "", gz.ModTime(), size, func(start, n int64) (io.ReadCloser, error) {
		f, err := root.Open(rel + ".gz")
		if err != nil {
			return nil, err
		}
		zr, err := gzip.NewReader(bufio.NewReaderSize(f, 64<<10))
		if err == nil {
			_, err = io.CopyN(io.Discard, zr, start)
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{io.LimitReader(zr, n), f}, nil
	})
}

// acceptsGzip reads Accept-Encoding: gzip (or *) unless its q is 0.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "gzip" && name != "x-gzip" && name != "*" {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}

// gzipSize is a gzip file's decompressed size: the size the archiver
// wrote into the header's comment (jobfiles.SizeComment), else the
// trailer's ISIZE (RFC 1952) when the file is too small to inflate past
// 4 GiB (ISIZE is the size modulo 2^32; deflate shrinks at most about
// 1032:1), else the file is read through.
func gzipSize(f *os.File, size int64) (int64, error) {
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 64<<10))
	if err != nil {
		return 0, err
	}
	if n, ok := jobfiles.ParseSizeComment(zr.Comment); ok {
		return n, nil
	}
	if size < 4_000_000 {
		var tail [4]byte
		if _, err := f.ReadAt(tail[:], size-4); err != nil {
			return 0, err
		}
		return int64(binary.LittleEndian.Uint32(tail[:])), nil
	}
	return io.Copy(io.Discard, zr)
}

// serve answers a file of size bytes whose content body opens from an
// offset: Last-Modified and If-Modified-Since, a single byte Range, HEAD.
func serve(c *fiber.Ctx, ctype, encoding string, mtime time.Time, size int64, body func(start, n int64) (io.ReadCloser, error)) error {
	c.Set(fiber.HeaderContentType, ctype)
	if encoding != "" {
		c.Set(fiber.HeaderContentEncoding, encoding)
	}
	c.Set(fiber.HeaderAcceptRanges, "bytes")
	c.Set(fiber.HeaderLastModified, mtime.UTC().Format(http.TimeFormat))
	// Crawled content must not run as a page of ours: no sniffing, and a
	// sandbox in case a feed is XML or a log holds markup.
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderContentSecurityPolicy, "sandbox")
	if since, err := http.ParseTime(c.Get(fiber.HeaderIfModifiedSince)); err == nil && !mtime.Truncate(time.Second).After(since) {
		return c.SendStatus(fiber.StatusNotModified)
	}
	start, n, status := int64(0), size, fiber.StatusOK
	if spec := c.Get(fiber.HeaderRange); spec != "" {
		s, l, ok, satisfiable := parseRange(spec, size)
		switch {
		case !satisfiable:
			c.Set(fiber.HeaderContentRange, fmt.Sprintf("bytes */%d", size))
			return c.SendStatus(fiber.StatusRequestedRangeNotSatisfiable)
		case ok:
			start, n, status = s, l, fiber.StatusPartialContent
			c.Set(fiber.HeaderContentRange, fmt.Sprintf("bytes %d-%d/%d", s, s+l-1, size))
		}
	}
	c.Status(status)
	if c.Method() == fiber.MethodHead {
		c.Context().Response.Header.SetContentLength(int(n))
		c.Context().Response.SkipBody = true
		return nil
	}
	r, err := body(start, n)
	if err != nil {
		return fiber.ErrNotFound
	}
	// fasthttp closes the stream once the response is written.
	c.Context().SetBodyStream(r, int(n))
	return nil
}

// parseRange reads a single byte range ("a-b", "a-", "-suffix"). ok is
// false when the header should be ignored (not bytes, several ranges, or
// malformed: RFC 9110 lets us send the whole file); satisfiable is false
// when the range lies wholly past the end (416).
func parseRange(spec string, size int64) (start, n int64, ok, satisfiable bool) {
	r, found := strings.CutPrefix(strings.TrimSpace(spec), "bytes=")
	if !found || strings.Contains(r, ",") {
		return 0, 0, false, true
	}
	a, b, found := strings.Cut(strings.TrimSpace(r), "-")
	if !found {
		return 0, 0, false, true
	}
	if a == "" {
		suffix, err := strconv.ParseInt(b, 10, 64)
		if err != nil || suffix < 0 {
			return 0, 0, false, true
		}
		if suffix == 0 {
			return 0, 0, false, false
		}
		suffix = min(suffix, size)
		return size - suffix, suffix, size > 0, size > 0
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 {
		return 0, 0, false, true
	}
	if first >= size {
		return 0, 0, false, false
	}
	last := size - 1
	if b != "" {
		l, err := strconv.ParseInt(b, 10, 64)
		if err != nil || l < first {
			return 0, 0, false, true
		}
		last = min(l, size-1)
	}
	return first, last - first + 1, true, true
}

// entry is one listing row; the fields are Twisted's.
type entry struct {
	Class, Href, Text, Size, Modified, Type, Encoding string
}

func (h *handlers) listing(c *fiber.Ctx, root *os.Root, rel, raw string) error {
	d, err := root.Open(rel)
	if err != nil {
		return fiber.ErrNotFound
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return fiber.ErrNotFound
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	var dirs, files []entry
	for _, e := range ents {
		// Stat through the root: it follows symlinks that stay inside and
		// fails on those that leave, which are then not listed.
		info, err := root.Stat(path.Join(rel, e.Name()))
		if err != nil {
			continue
		}
		// Escape ':' too (as Twisted's quote does), or a name like "a:b"
		// would read as a URL scheme.
		x := entry{Href: strings.ReplaceAll(url.PathEscape(e.Name()), ":", "%3A"), Text: e.Name(), Modified: info.ModTime().Format("2006-01-02 15:04")}
		if info.IsDir() {
			x.Href, x.Text, x.Type = x.Href+"/", x.Text+"/", "[Directory]"
			dirs = append(dirs, x)
			continue
		}
		ctype, encoding := contentType(e.Name())
		x.Size, x.Type = fileSize(info.Size()), "["+ctype+"]"
		if encoding != "" {
			x.Encoding = "[" + encoding + "]"
		}
		files = append(files, x)
	}
	rows := append(dirs, files...)
	for i := range rows {
		rows[i].Class = []string{"odd", "even"}[i%2]
	}
	header, err := url.PathUnescape(raw)
	if err != nil {
		header = raw
	}
	return render(c, fiber.StatusOK, "listing.html", struct {
		Header string
		Rows   []entry
	}{"Directory listing for " + header, rows})
}

// fileSize is Twisted's formatFileSize.
func fileSize(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%dB", n)
	case n < 1<<20:
		return fmt.Sprintf("%dK", n>>10)
	case n < 1<<30:
		return fmt.Sprintf("%dM", n>>20)
	}
	return fmt.Sprintf("%dG", n>>30)
}
