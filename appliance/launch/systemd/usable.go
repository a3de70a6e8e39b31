package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// ErrUnusable is wrapped by every reason Usable gives.
var ErrUnusable = errors.New("systemd launcher unusable")

// Usable tells whether crawls can run as system units here, for
// `launcher = auto`: systemd is the init system, the daemon is root (systemd
// 252 refuses StartTransientUnit to other users unless polkit grants every
// unit), and the service manager answers on the system bus.
func Usable(ctx context.Context) error {
	// sd_booted(3): this directory exists only when systemd is PID 1.
	if fi, err := os.Stat("/run/systemd/system"); err != nil || !fi.IsDir() {
		return fmt.Errorf("%w: systemd is not the init system", ErrUnusable)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root (only root may start system transient units)", ErrUnusable)
	}
	conn, err := sddbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return fmt.Errorf("%w: system bus: %w", ErrUnusable, err)
	}
	defer conn.Close()
	if _, err := conn.SystemStateContext(ctx); err != nil {
		return fmt.Errorf("%w: service manager: %w", ErrUnusable, err)
	}
	return nil
}
