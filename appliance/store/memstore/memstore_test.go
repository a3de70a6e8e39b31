package memstore_test

import (
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/store/memstore"
	"github.com/scrapyd-debian/scrapyd/appliance/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) storetest.Store { return memstore.New() })
}
