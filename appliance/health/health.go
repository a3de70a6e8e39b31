// Package health answers the probes of container platforms and load
// balancers (issue 17; scrapyd-k8s #18): /healthz says the process serves,
// /readyz that it can take work. Both are open to anyone, so they say
// "ok" or a short reason and nothing else: no version, no path, no error
// text.
package health

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"
)

// The probes' paths, which the API leaves open.
const (
	healthz = "/healthz"
	readyz  = "/readyz"
)

// Open reports whether path is a probe's.
func Open(path string) bool { return path == healthz || path == readyz }

// Options are what readiness checks.
type Options struct {
	// Ping reaches the job database; its error is never shown.
	Ping func(ctx context.Context) error
	// Configured reports whether a configuration is in force.
	Configured func() bool
	// Slots returns how many crawl slots the configuration in force gives.
	Slots func() int
	// Adopted reports whether the crawls a previous daemon left have been
	// found again: until then the slots in use are not known.
	Adopted func() bool
}

// Register adds the probes' routes.
func Register(o Options) func(fiber.Router) {
	return func(r fiber.Router) {
		r.Get(healthz, func(c *fiber.Ctx) error { return answer(c, "") })
		r.Get(readyz, func(c *fiber.Ctx) error { return answer(c, o.notReady(c.Context())) })
	}
}

// notReady is why the daemon cannot take work, "" when it can.
func (o Options) notReady(parent context.Context) string {
	if o.Configured != nil && !o.Configured() {
		return "no configuration in force"
	}
	if o.Slots != nil && o.Slots() < 1 {
		return "no crawl slots"
	}
	if o.Adopted != nil && !o.Adopted() {
		return "running crawls not adopted yet"
	}
	if o.Ping != nil {
		// A probe must answer in time even when the database hangs.
		ctx, cancel := context.WithTimeout(parent, 2*time.Second)
		defer cancel()
		if o.Ping(ctx) != nil {
			return "database unreachable"
		}
	}
	return ""
}

func answer(c *fiber.Ctx, reason string) error {
	c.Set(fiber.HeaderContentType, "text/plain; charset=utf-8")
	c.Set(fiber.HeaderCacheControl, "no-store")
	if reason != "" {
		return c.Status(fiber.StatusServiceUnavailable).SendString(reason + "\n")
	}
	return c.SendString("ok\n")
}
