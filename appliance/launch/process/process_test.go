package process_test

import (
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/launchtest"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/process"
)

// TestContract runs the launcher contract with real processes; every
// goroutine the launchers started is gone once they are closed.
func TestContract(t *testing.T) {
	launchtest.NoLeaks(t)
	owner := t.TempDir()
	launchtest.Run(t, launchtest.Setup{
		New: func(*testing.T) launch.Launcher {
			l := process.New()
			l.Owner = owner
			return l
		},
		Dir:       func(t *testing.T) string { return t.TempDir() },
		Processes: true,
	})
}
