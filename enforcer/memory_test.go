package enforcer

import (
	"runtime"
	"testing"
	"unsafe"

	"github.com/tollgate/tollgate/schemas"
)

// BenchmarkMemoryPerKey loads a catalog of one million keys, each with
// its own bucket and quota counter, and reports the gateway's heap per
// key (key entry, the three indexes, counters), then again once every key
// has made a request (B/active-key: its value is then recorded in its
// entry and indexed in the verified-value table, which the load sized
// for every key already). The catalog State itself is not counted: it
// is the input, kept by whoever loaded it (serve's catalog manager).
func BenchmarkMemoryPerKey(b *testing.B) {
	const n = 1_000_000
	s := scaleState(b, n)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g, err := New(Config{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := g.Load(s); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/key")
		b.ReportMetric(float64(unsafe.Sizeof(keyPlanState{})), "B/bucket+quota")
		t := g.table.Load()
		if got := t.keys.byID.live; got != n {
			b.Fatalf("%d keys compiled", got)
		}
		// Every key active once: its bucket and quota move, and its value
		// is recorded.
		now := g.cfg.Now()
		keys := []string{""}
		for k := 0; k < n; k++ {
			var d decision
			keys[0] = scaleValue(k)
			t.decide(&d, "h", "/prod/items", "GET", keys, now)
			if d.outcome != schemas.DecisionAllowed {
				b.Fatalf("key %d: %v", k, d.outcome)
			}
		}
		if got := t.keys.byValue.live; got != n {
			b.Fatalf("%d values recorded", got)
		}
		runtime.GC()
		var active runtime.MemStats
		runtime.ReadMemStats(&active)
		b.ReportMetric(float64(active.HeapAlloc-before.HeapAlloc)/n, "B/active-key")
		runtime.KeepAlive(g)
	}
}
