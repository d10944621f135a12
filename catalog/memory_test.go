package catalog

import (
	"runtime"
	"testing"
)

// BenchmarkStateMemoryPerKey reports the heap a State of a million keys
// (one plan each, as bigState makes them) holds per key: the key and its
// strings, and the indexes by id, name, value hash and membership. This
// is what serve's catalog manager and a fleet node's config log keep
// beside the gateway's own table (enforcer.BenchmarkMemoryPerKey).
func BenchmarkStateMemoryPerKey(b *testing.B) {
	const n = 1_000_000
	b.ReportAllocs()
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := bigState(n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		if s.NumKeys() != n {
			b.Fatalf("%d keys", s.NumKeys())
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/key")
		runtime.KeepAlive(s)
	}
}
