package launchtest_test

import (
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/launchtest"
)

func TestFakeContract(t *testing.T) {
	for _, plan := range []bool{false, true} {
		m := launchtest.NewMachine()
		m.Plan = plan
		launchtest.Run(t, launchtest.Setup{
			New:              func(*testing.T) launch.Launcher { return m.Launcher() },
			Dir:              func(t *testing.T) string { return t.TempDir() },
			ExitAfterRecover: true,
		})
	}
}
