package chstore

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"testing"
)

// BenchmarkInsertBatch measures the aggregator's write path into the
// ClickHouse at TOLLGATE_CLICKHOUSE_DSN: one batch per iteration, its
// offsets past the last one's. "all" is InsertBatch proper (usage_events,
// usage_minute, usage_daily: three INSERTs and the rollups computed in
// Go); "raw" is the same rows into usage_events alone (one INSERT, the
// rollups' watermarks given as done), the bare single-table cost that
// "all" compares to. Compare the two in one run: the server's speed
// varies with the machine's load.
func BenchmarkInsertBatch(b *testing.B) {
	for _, size := range []int{4096, 65536} {
		for _, mode := range []string{"all", "raw"} {
			b.Run(fmt.Sprintf("batch=%d/%s", size, mode), func(b *testing.B) {
				s := openTest(b)
				ctx := context.Background()
				r := mrand.New(mrand.NewPCG(1, uint64(size)))
				// 20k events/s over 7 keys' worth of catalog, as in
				// sqlitestore's benchmark; 10% of records carry no event.
				batch := batchOf(0, topic(r, genEvents(r, size, day20000, 50_000, "")))
				span := batch.Last + 1
				wm := NoWatermark
				b.ReportAllocs()
				for b.Loop() {
					if mode == "raw" {
						wm.Minute, wm.Daily = batch.Last, batch.Last
					}
					var err error
					if wm, err = s.InsertBatch(ctx, batch, wm); err != nil {
						b.Fatal(err)
					}
					batch.Last += span
					for i := range batch.Offsets {
						batch.Offsets[i] += span
					}
				}
				b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
