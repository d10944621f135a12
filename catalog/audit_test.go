package catalog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
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
	large := &Change{Old: old, New: tx.State, Delta: tx.Delta()}
	// An admin call's change: a few keys, written on the small path.
	tx = old.Begin()
	k := *tx.Key("k00000003")
	k.Enabled = false
	tx.PutKey(k)
	tx.DeleteKey("k00000004")
	tx.PutKey(APIKey{ID: "new1", Name: "new1", ValueHash: HashKey("new1"), ValuePrefix: "new1", UsagePlans: []string{"plan1"}})
	tx.PutPlan(UsagePlan{ID: "plan2", Name: "Paid", APIStages: []APIStage{}})
	small := &Change{Old: old, New: tx.State, Delta: tx.Delta()}
	at := time.Date(2026, 11, 27, 6, 40, 0, 0, time.UTC)

	dir := t.TempDir()
	for name, ch := range map[string]*Change{"large": large, "small": small} {
		want := &AuditLog{Path: filepath.Join(dir, name+"-want.log")}
		got := &AuditLog{Path: filepath.Join(dir, name+"-got.log")}
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
			t.Fatalf("%s change: AppendChange wrote %d bytes, Append %d; they differ", name, len(g), len(w))
		}
	}

	none := &AuditLog{Path: filepath.Join(dir, "none.log")}
	if err := none.AppendChange(&Change{Old: old, New: old, Delta: Delta{Keys: []string{"k00000000"}}}, at, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(none.Path); !os.IsNotExist(err) {
		t.Fatalf("a change of nothing wrote a log: %v", err)
	}
}

// The audit of one admin call's change (create-api-key): what it
// allocates is garbage at every call.
func BenchmarkAuditAppendChangeOneKey(b *testing.B) {
	old := bigState(1000)
	tx := old.Begin()
	tx.PutKey(APIKey{ID: "new1", Name: "new1", Enabled: true, ValueHash: HashKey("new1"), ValuePrefix: "new1", UsagePlans: []string{"plan1"}})
	ch := &Change{Old: old, New: tx.State, Delta: tx.Delta()}
	l := &AuditLog{Path: filepath.Join(b.TempDir(), "audit.log")}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.AppendChange(ch, time.Now(), "admin", "CreateApiKey"); err != nil {
			b.Fatal(err)
		}
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

// Every writer of a data folder's audit log in a process gets the same
// AuditLog, so a large change's lines (written in chunks) are never
// interleaved with another writer's entry. Separate AuditLogs of one file
// did interleave them.
func TestAuditLogAtIsOnePerFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	if AuditLogAt(path) != AuditLogAt(filepath.Join(dir, ".", "x", "..", "audit.log")) {
		t.Fatal("two AuditLogs for one file")
	}
	if AuditLogAt(path) == AuditLogAt(filepath.Join(dir, "other.log")) {
		t.Fatal("one AuditLog for two files")
	}
	old := bigState(20000)
	tx := old.Begin()
	for i := range 20000 {
		k := *tx.Key(fmt.Sprintf("k%08d", i))
		k.Enabled = false
		tx.PutKey(k)
	}
	large := &Change{Old: old, New: tx.State, Delta: tx.Delta()}
	at := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := AuditLogAt(path).AppendChange(large, at, "config file", "apply big.yaml"); err != nil {
			t.Error(err)
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 200 {
			if err := AuditLogAt(path).Append([]AuditEntry{{Time: at, Actor: "admin", Action: "UpdateUsage", Kind: "usage", ID: fmt.Sprint(i)}}); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	entries, err := AuditLogAt(path).Read()
	if err != nil {
		t.Fatalf("the log does not read back whole: %v", err)
	}
	if len(entries) != 20000+200 {
		t.Errorf("%d entries, want %d", len(entries), 20000+200)
	}
}
