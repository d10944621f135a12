package sqlitedsn

import (
	"strings"
	"testing"
	"time"
)

func TestFor(t *testing.T) {
	got, err := For("/data/odd?#%name.db", 5*time.Second, "FULL")
	if err != nil {
		t.Fatal(err)
	}
	want := "file:/data/odd%3F%23%25name.db?_pragma=busy_timeout%285000%29&_pragma=journal_mode%28WAL%29&_pragma=synchronous%28FULL%29&_txlock=immediate"
	if got != want {
		t.Errorf("For = %q\nwant  %q", got, want)
	}
	if rel, _ := For("usage.db", time.Second, "NORMAL"); !strings.HasPrefix(rel, "file:/") {
		t.Errorf("a relative path is made absolute: %q", rel)
	}
}
