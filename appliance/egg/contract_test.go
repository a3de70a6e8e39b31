package egg_test

import (
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/egg/eggtest"
)

func TestContract(t *testing.T) {
	eggtest.Run(t, func(t *testing.T) eggtest.Store { return &egg.Store{Dir: t.TempDir()} })
}
