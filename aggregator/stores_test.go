package aggregator

import (
	"testing"

	"github.com/tollgate/tollgate/usage/chstore"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// The stores the aggregator writes: ClickHouse, the quota authority's,
// which also says which events it cannot hold; and a node's own SQLite
// file, which is not a QuotaStore (its aggregator is a plain loader).
var (
	_ Store        = (*chstore.Store)(nil)
	_ QuotaStore   = (*chstore.Store)(nil)
	_ EventChecker = (*chstore.Store)(nil)
	_ LostStore    = (*chstore.Store)(nil)
	_ Store        = (*sqlitestore.Store)(nil)
)

func TestSQLiteStoreIsAPlainLoaderStore(t *testing.T) {
	var s Store = (*sqlitestore.Store)(nil)
	if _, ok := s.(QuotaStore); ok {
		t.Error("sqlitestore.Store is a QuotaStore: an aggregator on it would be a quota authority")
	}
	if _, ok := s.(LostStore); ok {
		t.Error("sqlitestore.Store is a LostStore: every node's loader would read the lost-usage topic")
	}
}
