package service

import (
	"errors"
	"fmt"
	"strings"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// Error is an application error as Scrapyd reports it: HTTP 200,
// {"status": "error", "message": Message}. Every user-facing text lives in
// this file, worded as Scrapyd words it where Scrapyd has one
// (reference/scrapyd-api.md, "Complete error-message catalogue").
type Error struct{ Message string }

func (e *Error) Error() string { return e.Message }

func errorf(format string, a ...any) *Error { return &Error{Message: fmt.Sprintf(format, a...)} }

// Required is a missing parameter.
func Required(name string) *Error { return errorf("'%s' parameter is required", name) }

// Invalid is a parameter that could not be used, with Python's wording of why.
func Invalid(name, why string) *Error { return errorf("%s is invalid: %s", name, why) }

func projectNotFound(p string) *Error { return errorf("project '%s' not found", p) }
func versionNotFound(v string) *Error { return errorf("version '%s' not found", v) }
func spiderNotFound(s string) *Error  { return errorf("spider '%s' not found", s) }
func nodeNotFound(n string) *Error    { return errorf("node '%s' not found", n) }

func scheduleNotFound(project, id string) *Error {
	return errorf("schedule '%s' not found in project '%s'", id, project)
}

// notScheduled says a shared database that cannot be reached (restarting,
// or the network to it down) refused job id's schedule, and whether
// nothing was scheduled (the client may try again) or the database went
// away as it committed the job, which may then be in the queue. Other
// errors are returned as they are.
func notScheduled(id string, err error) error {
	switch {
	case errors.Is(err, store.ErrInDoubt):
		return errorf("job '%s' may or may not have been scheduled (listjobs.json says which once the database is back): %v", id, err)
	case errors.Is(err, store.ErrUnavailable):
		return errorf("nothing was scheduled: %v", err)
	}
	return err
}

func duplicateJob(id string) *Error {
	return errorf("job '%s' is already pending or running; choose another jobid", id)
}

// unsafeName refuses a name before it reaches a path or a command line.
// Traversal keeps Scrapyd's message; other reasons say what is wrong.
func unsafeName(param, value string, err error) *Error {
	if value == "." || value == ".." || strings.ContainsAny(value, `/\`) {
		return errorf("DirectoryTraversalError: %s", value)
	}
	return Invalid(param, strings.TrimPrefix(err.Error(), job.ErrUnsafeName.Error()+": "))
}

// badSetting is Python's error for `dict(s.split("=", 1) for s in settings)`
// on an element without "=", which is what Scrapyd reports.
func badSetting(i int) *Error {
	return errorf("ValueError: dictionary update sequence element #%d has length 1; 2 is required", i)
}

// badPriority is Python's float() error on the raw bytes.
func badPriority(raw string) *Error {
	return Invalid("priority", "could not convert string to float: "+pyBytesRepr(raw))
}

func badSignal(raw string) *Error {
	return Invalid("signal", fmt.Sprintf("%q is not a signal name (INT, TERM, KILL, ...) or number", raw))
}

// pyBytesRepr renders s as Python's repr of bytes: b'...'.
func pyBytesRepr(s string) string {
	var b strings.Builder
	quote := byte('\'')
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		quote = '"'
	}
	b.WriteString("b")
	b.WriteByte(quote)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == quote || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(quote)
	return b.String()
}

// Linux limits one command-line string to MAX_ARG_STRLEN (32 pages) and
// all of them with the environment to about a quarter of the stack limit.
// A crawl whose `-a`/`-s` arguments exceed them could never start (E2BIG,
// Scrapyd issue #381), so schedule.json refuses it up front.
const (
	maxArgBytes   = 128<<10 - 1
	maxTotalBytes = 1 << 20
)

func argTooLarge(kind, name string, n int) *Error {
	return errorf("%s '%s' is too large: %d bytes; one command-line argument of a crawl can hold at most %d bytes", kind, name, n, maxArgBytes)
}

func argsTooLarge(n int) *Error {
	return errorf("spider arguments and settings are too large: %d bytes in all; a crawl's command line can hold at most %d", n, maxTotalBytes)
}
