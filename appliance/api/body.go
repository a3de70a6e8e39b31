package api

import (
	"io"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// errTooLarge is the answer to a body over upload_limit.
var errTooLarge = &service.Error{Message: "the request body is larger than upload_limit"}

// bodyKey is the fiber local holding a streamed upload's *body.
const bodyKey = "api.body"

// bodies bounds what any request body can cost. fasthttp streams bodies
// (Config.StreamRequestBody), so nothing is read before this runs:
//   - a Content-Encoding is refused before a byte is decoded: fasthttp and
//     fiber would gunzip a body without bound (a 300 KB request once took
//     the daemon to 1.9 GB). Scrapyd never decoded request bodies either;
//   - a body over limit is refused from its Content-Length, or as soon as a
//     chunked body passes it;
//   - a multipart addversion.json body is left to the handler, which
//     streams the egg to the egg store's staging area, so an upload is
//     never held in memory;
//   - any other body is read here, bounded, and set as the request's body
//     for the handlers that parse it (the web pages, the crawl web service).
//
// A body left unread is drained (up to limit) before the answer, so that a
// client still sending it reads our answer rather than a reset connection.
func bodies(limit int) fiber.Handler {
	return func(c *fiber.Ctx) error {
		req := c.Request()
		n := req.Header.ContentLength() // -1: chunked; -2: none (GET, HEAD)
		if n == 0 || n == -2 || req.BodyStream() == nil {
			return c.Next()
		}
		if n > limit {
			// Not read at all: answered at once, then the connection closes.
			c.Context().SetConnectionClose()
			return errTooLarge
		}
		b := &body{r: req.BodyStream(), left: int64(limit)}
		defer b.drain(c)
		if coding := contentCoding(c); coding != "" {
			return &service.Error{Message: "Content-Encoding " + coding + " is not supported: send the request body uncompressed"}
		}
		if c.Method() == fiber.MethodPost && c.Path() == "/addversion.json" && len(req.Header.MultipartFormBoundary()) > 0 {
			c.Locals(bodyKey, b)
			return c.Next()
		}
		data, err := b.readAll(n)
		if err != nil {
			return err
		}
		req.SetBodyRaw(data)
		return c.Next()
	}
}

// contentCoding is the first coding a request's Content-Encoding names
// other than identity, or "".
func contentCoding(c *fiber.Ctx) string {
	coding := ""
	c.Request().Header.VisitAll(func(k, v []byte) {
		if coding != "" || !strings.EqualFold(string(k), fiber.HeaderContentEncoding) {
			return
		}
		for _, s := range strings.Split(string(v), ",") {
			if s = strings.TrimSpace(s); s != "" && !strings.EqualFold(s, "identity") {
				coding = s
				return
			}
		}
	})
	return coding
}

// body is a request body read from the connection, at most left bytes.
type body struct {
	r    io.Reader
	left int64
	eof  bool
	err  error // the first read error, io.EOF excepted
}

func (b *body) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	// One byte more than allowed tells a body over the limit.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	switch {
	case b.left < 0:
		b.err = errTooLarge
		return n, b.err
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.err = err
	}
	return n, err
}

// readAll reads the whole body, n bytes when its length is known.
func (b *body) readAll(n int) ([]byte, error) {
	if n < 0 {
		return io.ReadAll(b)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(b, data); err != nil {
		return nil, err
	}
	// fasthttp's stream ends at Content-Length; it may not have said EOF.
	b.eof = true
	return data, nil
}

// drain reads what is left of the body and throws it away; a body that is
// broken or over the limit closes the connection instead.
func (b *body) drain(c *fiber.Ctx) {
	if b.eof {
		return
	}
	if _, err := io.Copy(io.Discard, b); err != nil || !b.eof {
		c.Context().SetConnectionClose()
	}
}
