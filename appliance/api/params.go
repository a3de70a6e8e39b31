package api

import (
	"bytes"
	"errors"
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
	// egg is addversion.json's egg, staged as it was read from the body;
	// eggData is that egg when it came before the project, so could not be.
	egg     *service.Upload
	eggData []byte
	// wheels is addversion.json's wheelhouse, staged as it was read.
	wheels *service.Wheels
}

// receiver stages addversion.json's files as they are read: a project's
// egg (service.Receive) and a wheelhouse (service.ReceiveWheels).
type receiver interface {
	Receive(project string, r io.Reader) (*service.Upload, error)
	ReceiveWheels(r io.Reader) (*service.Wheels, error)
}

// readParams reads a request's arguments. With receive set (addversion.json)
// the first "egg" part of a multipart body that comes after the project (as
// every client sends it) is staged as it is read, never held in memory; the
// caller must then close the params.
func readParams(c *fiber.Ctx, receive receiver) (*params, error) {
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
	body := map[string][]string{}
	var bkeys []string
	add := func(key, value string) {
		if _, seen := body[key]; !seen {
			bkeys = append(bkeys, key)
		}
		body[key] = append(body[key], value)
	}
	ct := strings.ToLower(string(c.Request().Header.ContentType()))
	switch {
	case strings.HasPrefix(ct, "multipart/form-data"):
		if err := p.readMultipart(c, receive, body, add); err != nil {
			p.close()
			return nil, err
		}
	case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
		c.Request().PostArgs().VisitAll(func(k, v []byte) { add(string(k), string(v)) })
	}
	for _, k := range bkeys {
		p.set(k, body[k])
	}
	return p, nil
}

// readMultipart reads a multipart body part by part: from the connection
// for a streamed upload (see bodies), else from the body already read.
// File parts count as values, as in Twisted's request.args.
func (p *params) readMultipart(c *fiber.Ctx, receive receiver, form map[string][]string, add func(key, value string)) error {
	var r io.Reader
	if b, ok := c.Locals(bodyKey).(*body); ok {
		r = b
	} else {
		r = bytes.NewReader(c.Request().Body())
	}
	mr := multipart.NewReader(r, string(c.Request().Header.MultipartFormBoundary()))
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return bodyError(err)
		}
		name := part.FormName()
		switch {
		case name == "egg" && receive != nil && (p.egg != nil || p.eggData != nil), name == "wheels" && receive != nil && p.wheels != nil:
			// Scrapyd reads the first egg only; so do we the first wheelhouse.
			_, err = io.Copy(io.Discard, part)
		case name == "egg" && receive != nil && len(form["project"]) > 0:
			// The body's first project is the one addversion.json uses.
			src := &readErr{r: part}
			if p.egg, err = receive.Receive(form["project"][0], src); err != nil && src.err == nil {
				return err // staging failed (a full disk): not the client's doing
			}
			err = src.err
		case name == "wheels" && receive != nil && p.wheels == nil:
			// A wheelhouse may be as large as the egg: staged, never held.
			src := &readErr{r: part}
			if p.wheels, err = receive.ReceiveWheels(src); err != nil && src.err == nil {
				return err
			}
			err = src.err
		case name == "egg" && receive != nil:
			// Before the project: held (bounded by upload_limit) until the
			// project is known.
			p.eggData, err = io.ReadAll(part)
		default:
			var v []byte
			if v, err = io.ReadAll(part); err == nil {
				add(name, string(v))
			}
		}
		if err != nil {
			return bodyError(err)
		}
	}
}

// bodyError words a failure to read a multipart body.
func bodyError(err error) error {
	var se *service.Error
	if errors.As(err, &se) {
		return se // over upload_limit
	}
	return &service.Error{Message: "the multipart body could not be read: " + err.Error()}
}

// readErr remembers the first error reading r other than io.EOF, to tell a
// broken body from a failure to store what was read.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// close discards a staged egg that was not stored, and a staged
// wheelhouse (an environment built from it keeps its own copy).
func (p *params) close() {
	if p.egg != nil {
		p.egg.Discard()
	}
	if p.wheels != nil {
		p.wheels.Discard()
	}
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

// upload returns addversion.json's egg for project: the part staged as it
// was read, or else the part held, or the "egg" value (curl's `-F
// egg=path` sends the path as text; the zip check then explains), staged
// now. ok is false without one.
func (p *params) upload(project string, receive receiver) (up *service.Upload, ok bool, err error) {
	if p.egg != nil {
		return p.egg, true, nil
	}
	var egg io.Reader
	if p.eggData != nil {
		egg = bytes.NewReader(p.eggData)
	} else if vs := p.values["egg"]; len(vs) > 0 {
		egg = strings.NewReader(vs[0])
	} else {
		return nil, false, nil
	}
	if p.egg, err = receive.Receive(project, egg); err != nil {
		return nil, false, err
	}
	return p.egg, true, nil
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
