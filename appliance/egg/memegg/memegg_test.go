package memegg_test

import (
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/egg/eggtest"
	"github.com/scrapyd-debian/scrapyd/appliance/egg/memegg"
)

func TestContract(t *testing.T) {
	eggtest.Run(t, func(t *testing.T) eggtest.Store { return memegg.New(t.TempDir()) })
}
