package pgstore_test

import (
	"context"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore/pgtest"
	"github.com/scrapyd-debian/scrapyd/appliance/store/storetest"
)

// open opens a store on a fresh database.
func open(t *testing.T, opts pgstore.Options) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), pgtest.DB(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return open(t, pgstore.Options{}) })
}
