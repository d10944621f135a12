package enforcer

import (
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

// BenchmarkMemoryPerKey compiles a catalog of one million keys, each with
// its own bucket and quota counter, and reports the gateway's heap per
// key (key entry, hash index, counters), then again once every key has
// made a request (B/active-key: adds the verified-value cache entry).
// The catalog itself is not counted: it is the input, kept by whoever
// loaded it.
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
		t := g.table.Load()
		if got := len(t.keys); got != n {
			b.Fatalf("%d keys compiled", got)
		}
		// Every key active once: its bucket and quota move, and its value
		// enters the verified-value cache.
		now := g.cfg.Now()
		for k := 0; k < n; k++ {
			var d decision
			t.decide(&d, "h", "/prod/items", "GET", []string{fmt.Sprintf("bench-key-%020d", k)}, now)
			if d.outcome != schemas.DecisionAllowed {
				b.Fatalf("key %d: %v", k, d.outcome)
			}
		}
		runtime.GC()
		var active runtime.MemStats
		runtime.ReadMemStats(&active)
		b.ReportMetric(float64(active.HeapAlloc-before.HeapAlloc)/n, "B/active-key")
		runtime.KeepAlive(g)
	}
}
