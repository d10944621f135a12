package catalog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// AppendChange writes what Append writes of AuditEntries, byte for byte,
// over many chunks of keys; a change with nothing to log writes no file.
func TestAuditAppendChangeMatchesAppend(t *testing.T) {
	old := bigState(5000)
	tx := old.Begin()
	for i := 0; i < 5000; i += 3 {
		k := *tx.Key(fmt.Sprintf("k%08d", i))
		k.Enabled = false
		k.Tags = map[string]string{"<team>": "a&b"}
		tx.PutKey(k)
	}
	for i := 1; i < 5000; i += 7 {
		tx.DeleteKey(fmt.Sprintf("k%08d", i))
	}
	for i := range 3000 {
		id := fmt.Sprintf("n%08d", i)
		tx.PutKey(APIKey{ID: id, Name: id, ValueHash: HashKey(id), ValuePrefix: "n000", UsagePlans: []string{"plan1"}})
	}
	tx.PutPlan(UsagePlan{ID: "plan2", Name: "Paid", APIStages: []APIStage{}})
	tx.SetGateway(Gateway{UnknownRouteStatus: 404})
	ch := &Change{Old: old, New: tx.State, Delta: tx.Delta()}
	at := time.Date(2026, 11, 27, 6, 40, 0, 0, time.UTC)

	dir := t.TempDir()
	want := &AuditLog{Path: filepath.Join(dir, "want.log")}
	got := &AuditLog{Path: filepath.Join(dir, "got.log")}
	for range 2 { // appends to what is there
		if err := want.Append(AuditEntries(ch, at, "config file", "apply x.yaml")); err != nil {
			t.Fatal(err)
		}
		if err := got.AppendChange(ch, at, "config file", "apply x.yaml"); err != nil {
			t.Fatal(err)
		}
	}
	w, _ := os.ReadFile(want.Path)
	g, _ := os.ReadFile(got.Path)
	if len(w) == 0 || !bytes.Equal(w, g) {
		t.Fatalf("AppendChange wrote %d bytes, Append %d; they differ", len(g), len(w))
	}

	none := &AuditLog{Path: filepath.Join(dir, "none.log")}
	if err := none.AppendChange(&Change{Old: old, New: old, Delta: Delta{Keys: []string{"k00000000"}}}, at, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(none.Path); !os.IsNotExist(err) {
		t.Fatalf("a change of nothing wrote a log: %v", err)
	}
}

// The audit of a change of 100k new keys (an ImportApiKeys, a first
// start from a file of that size).
func BenchmarkAuditAppendChange(b *testing.B) {
	old := bigState(1000)
	tx := old.Begin()
	for i := range 100000 {
		id := fmt.Sprintf("n%08d", i)
		tx.PutKey(APIKey{ID: id, Name: id, Enabled: true, ValueHash: HashKey(id), ValuePrefix: "n000", UsagePlans: []string{"plan1"}})
	}
	ch := &Change{Old: old, New: tx.State, Delta: tx.Delta()}
	path := filepath.Join(b.TempDir(), "audit.log")
	b.ReportAllocs()
	for b.Loop() {
		os.Remove(path)
		if err := (&AuditLog{Path: path}).AppendChange(ch, time.Now(), "config file", "apply"); err != nil {
			b.Fatal(err)
		}
	}
}
