// Package journal is a log/slog handler that writes to systemd's journal
// with structured fields (issue 17 point 7): a line about a job carries
// SCRAPYD_JOB, SCRAPYD_PROJECT and SCRAPYD_SPIDER, and its level becomes
// the journal's PRIORITY, so that `journalctl SCRAPYD_JOB=<id>` finds every
// line of the daemon about that job and `journalctl -p warning` its
// warnings.
package journal

import (
	"bytes"
	"context"
	"log/slog"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
)

// fields are the log keys (style.md's) that become journal fields.
var fields = map[string]string{"job": "SCRAPYD_JOB", "project": "SCRAPYD_PROJECT", "spider": "SCRAPYD_SPIDER"}

// Identifier is the journal's SYSLOG_IDENTIFIER of the daemon's lines.
const Identifier = "scrapyd"

// UnderSystemd reports whether the daemon runs as a systemd service with
// a journal to write to: systemd sets INVOCATION_ID for every unit it
// starts and JOURNAL_STREAM when stdout or stderr goes to the journal.
func UnderSystemd(getenv func(string) string) bool {
	return (getenv("INVOCATION_ID") != "" || getenv("JOURNAL_STREAM") != "") && journal.Enabled()
}

// Send is journal.Send's signature: a test gives its own.
type Send func(message string, priority journal.Priority, vars map[string]string) error

// Handler is safe for concurrent use.
type Handler struct {
	send  Send
	level slog.Leveler
	attrs []slog.Attr // from WithAttrs, already prefixed with their groups
	group string      // the open groups, "a.b."
}

// New returns a handler that sends through send (journal.Send when nil)
// the records at level or above.
func New(send Send, level slog.Leveler) *Handler {
	if send == nil {
		send = journal.Send
	}
	return &Handler{send: send, level: level}
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), prefixed(h.group, as)...)
	return &c
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group = h.group + name + "."
	return &c
}

func prefixed(group string, as []slog.Attr) []slog.Attr {
	if group == "" {
		return as
	}
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = slog.Attr{Key: group + a.Key, Value: a.Value}
	}
	return out
}

// Handle implements slog.Handler. The message keeps every attribute as
// key=value, as scrapyd.log shows it, so that `journalctl -u scrapyd`
// reads the same; job, project and spider are journal fields too.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	vars := map[string]string{"SYSLOG_IDENTIFIER": Identifier}
	var msg bytes.Buffer
	// The text handler writes the attributes, quoted where they need it;
	// time and level are the journal's own fields.
	text := slog.NewTextHandler(&msg, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
			return slog.Attr{}
		}
		return a
	}})
	all := append([]slog.Attr(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		all = append(all, prefixed(h.group, []slog.Attr{a})...)
		return true
	})
	for _, a := range all {
		if f, ok := fields[a.Key]; ok {
			vars[f] = a.Value.Resolve().String()
		}
	}
	plain := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	plain.AddAttrs(all...)
	if err := text.Handle(context.Background(), plain); err != nil {
		return err
	}
	line := r.Message
	if rest := strings.TrimSuffix(msg.String(), "\n"); rest != "" {
		line += " " + rest
	}
	return h.send(line, Priority(r.Level), vars)
}

// Priority is the journal's priority (syslog's) of a slog level.
func Priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	default:
		return journal.PriDebug
	}
}
