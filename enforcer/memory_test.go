package enforcer

import (
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"github.com/tollgate/tollgate/catalog"
)

// BenchmarkMemoryPerKey compiles a catalog of one million keys, each with
// its own bucket and quota counter, and reports the gateway's heap per
// key (key entry, hash index, counters). The catalog itself is not
// counted: it is the input, kept by whoever loaded it.
func BenchmarkMemoryPerKey(b *testing.B) {
	const n = 1_000_000
	c := testCatalog(b, benchYAML)
	keys := make([]catalog.APIKey, n)
	for i := range keys {
		id := fmt.Sprintf("k%09d", i)
		keys[i] = catalog.APIKey{ID: id, Name: id, Enabled: true, ValueHash: catalog.HashKey(fmt.Sprintf("bench-key-%020d", i)),
			UsagePlans: []string{c.UsagePlans[0].ID}}
	}
	c.APIKeys = keys
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		g, err := New(Config{}, c)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/key")
		b.ReportMetric(float64(unsafe.Sizeof(keyPlanState{})), "B/bucket+quota")
		if got := len(g.table.Load().keys); got != n {
			b.Fatalf("%d keys compiled", got)
		}
		runtime.KeepAlive(g)
	}
}
