package api

import (
	"fmt"
	"io"
	"mime/multipart"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// params are a request's arguments as Twisted's request.args merges them:
// the query string for any method, then (for POST) the urlencoded or
// multipart body, a body key replacing the query's values for that key.
// Keys keep their first-appearance order, so spider arguments reach Scrapy
// in the order the client sent them.
type params struct {
	keys   []string
	values map[string][]string
	files  map[string]*multipart.FileHeader
}

func readParams(c *fiber.Ctx) (*params, error) {
	p := &params{values: map[string][]string{}}
	query := map[string][]string{}
	var qkeys []string
	c.Request().URI().QueryArgs().VisitAll(func(k, v []byte) {
		key := string(k)
		if _, seen := query[key]; !seen {
			qkeys = append(qkeys, key)
		}
		query[key] = append(query[key], string(v))
	})
	for _, k := range qkeys {
		p.set(k, query[k])
	}
	if c.Method() != fiber.MethodPost {
		return p, nil
	}
	ct := strings.ToLower(string(c.Request().Header.ContentType()))
	switch {
	case strings.HasPrefix(ct, "multipart/form-data"):
		form, err := c.MultipartForm()
		if err != nil {
			return nil, &service.Error{Message: "the multipart body could not be read: " + err.Error()}
		}
		// Go's maps lose the body's key order; multipart clients send the
		// fixed fields (project, version, egg) where order does not matter.
		for k, vs := range form.Value {
			p.set(k, vs)
		}
		p.files = map[string]*multipart.FileHeader{}
		for k, fs := range form.File {
			if len(fs) > 0 {
				p.files[k] = fs[0]
				if _, ok := p.values[k]; !ok {
					p.keys = append(p.keys, k)
				}
			}
		}
	case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
		body := map[string][]string{}
		var bkeys []string
		c.Request().PostArgs().VisitAll(func(k, v []byte) {
			key := string(k)
			if _, seen := body[key]; !seen {
				bkeys = append(bkeys, key)
			}
			body[key] = append(body[key], string(v))
		})
		for _, k := range bkeys {
			p.set(k, body[k])
		}
	}
	return p, nil
}

func (p *params) set(k string, vs []string) {
	if _, ok := p.values[k]; !ok {
		p.keys = append(p.keys, k)
	}
	p.values[k] = vs
}

// get returns the first value of a parameter, checked to be UTF-8.
func (p *params) get(name string) (string, bool, error) {
	vs, ok := p.values[name]
	if !ok || len(vs) == 0 {
		return "", false, nil
	}
	if err := checkUTF8(name, vs[0]); err != nil {
		return "", false, err
	}
	return vs[0], true, nil
}

func (p *params) required(name string) (string, error) {
	v, ok, err := p.get(name)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", service.Required(name)
	}
	return v, nil
}

// requiredAll returns the first value of each named parameter, or the
// error for the first one missing.
func (p *params) requiredAll(names ...string) ([]string, error) {
	out := make([]string, len(names))
	for i, n := range names {
		v, err := p.required(n)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (p *params) optional(name string) (string, error) {
	v, _, err := p.get(name)
	return v, err
}

// all returns every value of a multi-valued parameter (only `setting`).
func (p *params) all(name string) ([]string, error) {
	for _, v := range p.values[name] {
		if err := checkUTF8(name, v); err != nil {
			return nil, err
		}
	}
	return p.values[name], nil
}

// file returns an uploaded file's bytes, or a form value's bytes (curl's
// `-F egg=path` sends the path as text; the zip check then explains).
func (p *params) file(name string) ([]byte, bool, error) {
	if fh, ok := p.files[name]; ok {
		f, err := fh.Open()
		if err != nil {
			return nil, false, err
		}
		defer f.Close()
		// One allocation of the known size: io.ReadAll's doubling would hold
		// up to twice an upload (64 MiB by default) in garbage meanwhile.
		data := make([]byte, fh.Size)
		_, err = io.ReadFull(f, data)
		return data, true, err
	}
	if vs, ok := p.values[name]; ok && len(vs) > 0 {
		return []byte(vs[0]), true, nil
	}
	return nil, false, nil
}

// checkUTF8 words a decoding failure as Python's UnicodeDecodeError does,
// which is what Scrapyd answers.
func checkUTF8(name, s string) error {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError || size > 1 {
			i += size
			continue
		}
		reason := "invalid start byte"
		c := s[i]
		switch {
		case c >= 0xc2 && c <= 0xf4:
			reason = "invalid continuation byte"
			if need := seqLen(c); i+need > len(s) && allContinuation(s[i+1:]) {
				reason = "unexpected end of data"
			}
		}
		return service.Invalid(name, fmt.Sprintf("'utf-8' codec can't decode byte 0x%02x in position %d: %s", c, i, reason))
	}
	return nil
}

func seqLen(c byte) int {
	switch {
	case c >= 0xf0:
		return 4
	case c >= 0xe0:
		return 3
	}
	return 2
}

func allContinuation(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i]&0xc0 != 0x80 {
			return false
		}
	}
	return true
}
