// Package notify tells systemd what the daemon is doing (sd_notify: ready,
// reloading, stopping, a status line) and feeds its watchdog. Outside systemd
// (no NOTIFY_SOCKET) every call does nothing and returns nil.
package notify

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// send keeps NOTIFY_SOCKET set: the daemon notifies for its whole life.
// Crawl units do not inherit it (systemd starts them, not the daemon), and
// the daemon's own children (`scrapy list`) get an explicit environment.
func send(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

// Ready says startup (or a reload) is complete: Type=notify units count as
// started only now, so listeners must already be open.
func Ready() error { return send(daemon.SdNotifyReady) }

// Status sets the line `systemctl status scrapyd` shows.
func Status(running, pending int) error {
	return send(fmt.Sprintf("STATUS=%d running, %d pending", running, pending))
}

// Reloading says a SIGHUP reload began; call Reloaded when it ends.
// MONOTONIC_USEC lets systemd >= 253 match it to the request.
func Reloading() error {
	return send(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
}

// Reloaded ends a reload and shows its outcome in `systemctl status`: a
// failed reload keeps the old config, which is worth seeing there.
func Reloaded(err error) error {
	status := "STATUS=configuration reloaded"
	if err != nil {
		status = "STATUS=reload failed, old configuration kept: " + err.Error()
	}
	return send(daemon.SdNotifyReady + "\n" + status)
}

// Stopping says shutdown began, so that systemd does not count the time
// spent finishing requests as a hang.
func Stopping() error { return send(daemon.SdNotifyStopping) }

// Run feeds the watchdog (WatchdogSec= in scrapyd.service) at half its
// interval until ctx ends. Without a watchdog it returns nil at once.
func Run(ctx context.Context) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("notify: watchdog: %w", err)
	}
	if interval == 0 {
		return nil
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		if err := send(daemon.SdNotifyWatchdog); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
