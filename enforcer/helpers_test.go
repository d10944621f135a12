package enforcer

import (
	"testing"

	"github.com/tollgate/tollgate/catalog"
)

// testCatalog parses a YAML catalog and applies it to an empty one.
func testCatalog(t testing.TB, yaml string) *catalog.Catalog {
	t.Helper()
	f, err := catalog.ParseFile("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := catalog.Apply(&catalog.Catalog{}, f, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
