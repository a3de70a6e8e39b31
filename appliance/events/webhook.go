package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
)

// Cursors are where each webhook got to, kept in the store so that a
// restart, even kill -9, resumes each receiver after its last delivered
// event. Cursor's ok is false for a receiver never seen before.
type Cursors interface {
	Cursor(ctx context.Context, name string) (id int64, ok bool, err error)
	SetCursor(name string, id int64) error
	TrimEvents(id int64) error
}

// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body
// keyed with the webhook's secret, as GitHub signs its webhooks.
const SignatureHeader = "X-Scrapyd-Signature"

// Sign is the SignatureHeader value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// DefaultKeep is how many events stay for /events to resume from once
// every webhook has them; an event a configured webhook still lacks is
// kept however old.
const DefaultKeep = 10000

// Webhooks delivers every event to every [webhook:NAME] receiver, in
// order, one at a time per receiver, at least once: an event counts as
// delivered when the receiver answers 2xx and the cursor is stored, so a
// crash between the two sends it again (receivers dedupe by its id). A
// receiver that fails gets the same event again after a backoff that
// doubles from MinBackoff to MaxBackoff; the events behind it wait.
// Each receiver has one goroutine, so delivery never holds up dispatch,
// which only commits the event rows.
type Webhooks struct {
	Feed    *Feed
	Cursors Cursors
	Config  func() *config.Config
	Log     *slog.Logger
	// Client sends the POSTs; nil means a client with a 30 s timeout.
	Client     *http.Client
	MinBackoff time.Duration // 0 means 1 s
	MaxBackoff time.Duration // 0 means 5 min
	UserAgent  string
	Keep       int64 // events kept for /events; 0 means DefaultKeep

	// sending counts receivers with events in hand, not yet delivered.
	sending atomic.Int32

	mu      sync.Mutex
	ctx     context.Context
	early   *config.Config // applied before Run started
	running map[config.Webhook]context.CancelFunc
	wg      sync.WaitGroup
}

// Busy says some receiver has events it was not yet sent, or is in a
// backoff before sending them again: a daemon must not exit then
// (issue 19). A receiver down for long keeps it awake as long.
func (h *Webhooks) Busy() bool { return h.sending.Load() > 0 }

// Run delivers until ctx ends, to the receivers of the configuration in
// force (Apply changes them), and trims the events nobody needs. It may
// be called again once it returned (a cluster node that takes the lead
// back): each receiver resumes from its stored cursor.
func (h *Webhooks) Run(ctx context.Context) error {
	h.mu.Lock()
	h.ctx = ctx
	cfg := h.early
	h.early = nil
	h.mu.Unlock()
	if cfg == nil {
		cfg = h.Config()
	}
	h.Apply(cfg)
	tick := time.NewTicker(10 * time.Minute)
	defer tick.Stop()
	for {
		h.trim(ctx)
		select {
		case <-ctx.Done():
			// An Apply under way finishes first; later ones see ctx ended.
			h.mu.Lock()
			h.running = nil
			h.mu.Unlock()
			h.wg.Wait()
			return nil
		case <-tick.C:
		}
	}
}

// Apply starts delivering to cfg's receivers and stops delivering to
// those it no longer has (a live reload). A receiver whose secret
// changed is restarted: its next body is signed with the new secret.
// Before Run, or between two Runs, the next Run applies it when it
// starts.
func (h *Webhooks) Apply(cfg *config.Config) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ctx == nil || h.ctx.Err() != nil {
		h.early = cfg
		return
	}
	if h.running == nil {
		h.running = map[config.Webhook]context.CancelFunc{}
	}
	want := map[config.Webhook]bool{}
	for _, w := range cfg.Webhooks {
		want[w] = true
		if h.running[w] == nil {
			ctx, cancel := context.WithCancel(h.ctx)
			h.running[w] = cancel
			h.wg.Add(1)
			go func() { defer h.wg.Done(); h.deliver(ctx, w) }()
		}
	}
	for w, cancel := range h.running {
		if !want[w] {
			cancel()
			delete(h.running, w)
		}
	}
}

// trim deletes the events every configured receiver has and /events no
// longer keeps.
func (h *Webhooks) trim(ctx context.Context) {
	last, err := h.Feed.Last(ctx)
	if err != nil {
		return
	}
	keep := h.Keep
	if keep <= 0 {
		keep = DefaultKeep
	}
	floor := last - keep
	for _, w := range h.Config().Webhooks {
		if id, ok, err := h.Cursors.Cursor(ctx, w.URL); err != nil {
			return
		} else if ok && id < floor {
			floor = id
		}
	}
	if floor > 0 {
		if err := h.Cursors.TrimEvents(floor); err != nil {
			h.Log.Warn("cannot trim old job events", "err", err)
		}
	}
}

// deliver sends w every event after its cursor, in order, until ctx ends.
func (h *Webhooks) deliver(ctx context.Context, w config.Webhook) {
	// A webhook URL may itself be a secret (Slack's and others' carry a
	// token): the log names the section and the host only.
	log := h.Log.With("webhook", w.Name, "host", hostOf(w.URL))
	var cursor int64
	for attempt := 0; ; attempt++ {
		var err error
		if cursor, err = h.start(ctx, w); err == nil {
			break
		}
		log.Error("cannot read the webhook's delivery cursor", "err", err)
		if !h.sleep(ctx, attempt) {
			return
		}
	}
	for {
		es, err := h.Feed.Wait(ctx, cursor, 100)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Error("cannot read job events", "err", err)
			if !h.sleep(ctx, 0) {
				return
			}
			continue
		}
		// The cursor is stored once per batch (and before any backoff), not
		// per event: its commit would otherwise contend with dispatch's for
		// the store's one writer. A crash in a batch sends its delivered
		// part again: at least once.
		save := func() {
			if err := h.Cursors.SetCursor(w.URL, cursor); err != nil {
				log.Error("cannot record webhook deliveries", "event", cursor, "err", err)
			}
		}
		saved := cursor
		h.sending.Add(1)
		for _, e := range es {
			for attempt := 0; ; attempt++ {
				err := h.post(ctx, w, e.ID, string(e.Type), Marshal(h.Config(), e))
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					break
				}
				// The first failure and then every tenth: a receiver down
				// for a day should not fill the log.
				if attempt%10 == 0 {
					log.Warn("webhook delivery failed; retrying with backoff", "event", e.ID, "attempt", attempt+1, "err", err)
				}
				if cursor != saved {
					save()
					saved = cursor
				}
				if !h.sleep(ctx, attempt) {
					break
				}
			}
			if ctx.Err() != nil {
				break
			}
			cursor = e.ID
		}
		if cursor != saved {
			save()
		}
		h.sending.Add(-1)
		if ctx.Err() != nil {
			return
		}
	}
}

// start is where w's deliveries resume: after its cursor, or, for a
// receiver never seen before, after the newest event (it gets the events
// to come, not the whole history).
func (h *Webhooks) start(ctx context.Context, w config.Webhook) (int64, error) {
	id, ok, err := h.Cursors.Cursor(ctx, w.URL)
	if err != nil || ok {
		return id, err
	}
	if id, err = h.Feed.Last(ctx); err != nil {
		return 0, err
	}
	return id, h.Cursors.SetCursor(w.URL, id)
}

func (h *Webhooks) sleep(ctx context.Context, attempt int) bool {
	lo, hi := h.MinBackoff, h.MaxBackoff
	if lo <= 0 {
		lo = time.Second
	}
	if hi <= 0 {
		hi = 5 * time.Minute
	}
	d := lo << min(attempt, 30)
	if d > hi || d <= 0 {
		d = hi
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

var defaultClient = &http.Client{Timeout: 30 * time.Second}

// post sends one event; only a 2xx answer delivers it.
func (h *Webhooks) post(ctx context.Context, w config.Webhook, id int64, typ string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, Sign(w.Secret, body))
	req.Header.Set("X-Scrapyd-Event", typ)
	req.Header.Set("X-Scrapyd-Delivery", strconv.FormatInt(id, 10))
	if h.UserAgent != "" {
		req.Header.Set("User-Agent", h.UserAgent)
	}
	c := h.Client
	if c == nil {
		c = defaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err // without the URL, which may be a secret
		}
		return err
	}
	// Read a little of the answer so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}
