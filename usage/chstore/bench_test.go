package chstore

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
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
						for t := TableRaw + 1; t < NumTables; t++ {
							wm.Done[t] = batch.Last
						}
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

// BenchmarkReport measures /v1/usage's query, day by key over one day,
// on the usage of TOLLGATE_BENCH_REPORT_KEYS keys (default 2000) each
// making one request a minute for a day (2.88M events at the default),
// written by InsertBatch in batches of 65,536 (setup, not timed). In one
// run, against the same tables: "report" is Report, the store's GROUP BY;
// "handwritten" the same sums by a plain ClickHouse query on the table
// Report reads (usage_key_day) and on usage_minute, the bound Report is
// compared with (Report pays only its bucket and dimension expressions); "go-aggregate" how reports were computed before Report,
// every minute row of the range read into Go (EachMinute) and summed
// there. Command:
//
//	TOLLGATE_CLICKHOUSE_DSN=clickhouse://127.0.0.1:9000/default go test -run '^$' -bench Report -benchtime 3x -v ./usage/chstore/
func BenchmarkReport(b *testing.B) {
	keys := 2000
	if v := os.Getenv("TOLLGATE_BENCH_REPORT_KEYS"); v != "" {
		fmt.Sscan(v, &keys)
	}
	s := openTest(b)
	ctx := context.Background()
	const minutes = 1440
	start := day20000
	events := make([]schemas.UsageEvent, 0, 65536)
	var offset int64
	wm := NoWatermark
	flush := func() {
		batch := &Batch{Partition: 0, Last: offset - 1, Events: events}
		for i := range events {
			batch.Offsets = append(batch.Offsets, offset-int64(len(events)-i))
		}
		var err error
		if wm, err = s.InsertBatch(ctx, batch, wm); err != nil {
			b.Fatal(err)
		}
		events = events[:0]
	}
	loaded := time.Now()
	for m := range int64(minutes) {
		for k := range keys {
			ts := start + m*60e9 + int64(k)*(60e9/int64(keys))
			events = append(events, schemas.UsageEvent{ID: schemas.NewEventID(ts), Time: ts, APIID: "api1", Stage: "prod",
				KeyID: fmt.Sprintf("key-%05d", k), PlanID: "pro", Method: "GET", Resource: "/items", Status: 200,
				Decision: schemas.DecisionAllowed, LatencyMicros: 1000, BytesOut: 100})
			offset++
			if len(events) == cap(events) {
				flush()
			}
		}
	}
	if len(events) > 0 {
		flush()
	}
	b.Logf("loaded %d events in %v", offset, time.Since(loaded).Round(time.Millisecond))
	from, to := start/60e9, start/60e9+minutes
	r := usage.Report{FromMinute: from, ToMinute: to, Granularity: "day", GroupBy: []string{"key"}}
	check := func(b *testing.B, rows int) {
		if rows != keys {
			b.Fatalf("%d rows, want %d", rows, keys)
		}
	}
	b.Run("report", func(b *testing.B) {
		for b.Loop() {
			rows := 0
			if err := s.Report(ctx, r, func(*usage.ReportRow) error { rows++; return nil }); err != nil {
				b.Fatal(err)
			}
			check(b, rows)
		}
	})
	// The hand-written query on the table Report reads (usage_key_day: the
	// range is whole days), and on usage_minute (what a day of minute rows
	// costs). minute >= 0 leaves out the tables' marker rows.
	for _, table := range []string{"usage_key_day", "usage_day", "usage_minute"} {
		b.Run("handwritten/"+table, func(b *testing.B) {
			for b.Loop() {
				q, err := s.conn.Query(ctx, `SELECT key_id, sum(requests), sum(bytes_in), sum(bytes_out), sum(latency_us_sum)
FROM `+table+` WHERE day = ? AND minute >= 0 GROUP BY key_id ORDER BY key_id`, dayArg(start/dayNS))
				if err != nil {
					b.Fatal(err)
				}
				rows := 0
				for q.Next() {
					rows++
				}
				q.Close()
				check(b, rows)
			}
		})
	}
	b.Run("go-aggregate", func(b *testing.B) {
		for b.Loop() {
			sums := map[string]int64{}
			if err := s.EachMinute(ctx, from, to, func(m *usage.MinuteCount) error { sums[m.KeyID] += m.Requests; return nil }); err != nil {
				b.Fatal(err)
			}
			check(b, len(sums))
		}
	})
}
