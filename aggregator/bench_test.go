package aggregator

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tollgate/tollgate/usage/chstore"
)

// BenchmarkPipeline measures events/s from the producer (an enforcer's
// EventProducer) through Kafka (kfake, in this process) and the
// aggregator into ClickHouse, until the store's watermarks cover every
// record; and in the same run the baseline: the same events inserted
// straight into ClickHouse in batches of the same size (no Kafka, no
// aggregator). The ratio is the pipeline's cost over the store's.
// benchPartitions is the events topic's partitions in the pipeline
// benchmark (more, with one aggregator, means smaller batches: 12 gave
// 36-42k events/s against 52-86k with 4).
const benchPartitions = 4

// benchSpan is the time the benchmark's events spread over: 200k events
// in 20 s, 10k a second, as live traffic (300 keys, so the minute rollup
// holds a few rows per key and minute; events spread over days would
// make nearly every event a rollup row of its own).
const benchSpan = 20 * time.Second

func BenchmarkPipeline(b *testing.B) {
	const n = 200_000
	var pipeRate, baseRate float64
	b.Run("pipeline", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			r := newRigN(b, benchPartitions)
			rng := rand.New(rand.NewPCG(1, 2))
			// Sustained rate: the group has assigned every partition
			// before the clock starts.
			a := r.start(Config{FlushEvents: 1 << 16, FlushInterval: 500 * time.Millisecond})
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
				a.a.ownedMu.Lock()
				owned := len(a.a.owned)
				a.a.ownedMu.Unlock()
				if owned == r.parts {
					break
				}
				if time.Now().After(deadline) {
					b.Fatal("partitions not assigned within a minute")
				}
			}
			b.StartTimer()
			start := time.Now()
			r.produceOver(n, 0, benchSpan, rng)
			r.drained(5 * time.Minute)
			el := time.Since(start)
			b.StopTimer()
			a.stop(r.t)
			pipeRate = float64(n) / el.Seconds()
			b.StartTimer()
		}
		b.ReportMetric(pipeRate, "events/s")
	})
	b.Run("insert-only", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			r := newRig(b)
			rng := rand.New(rand.NewPCG(1, 2))
			r.produceOver(n, 0, benchSpan, rng) // for the same events
			events := r.sent
			b.StartTimer()
			start := time.Now()
			wm := chstore.NoWatermark
			for off := 0; off < len(events); off += 1 << 16 {
				end := min(off+1<<16, len(events))
				batch := &chstore.Batch{Partition: 0, Last: int64(end - 1), Events: events[off:end]}
				for i := off; i < end; i++ {
					batch.Offsets = append(batch.Offsets, int64(i))
				}
				var err error
				if wm, err = r.direct.InsertBatch(context.Background(), batch, wm); err != nil {
					b.Fatal(err)
				}
			}
			baseRate = float64(n) / time.Since(start).Seconds()
		}
		b.ReportMetric(baseRate, "events/s")
	})
	if pipeRate > 0 && baseRate > 0 {
		b.Logf("pipeline / insert-only: %.2f", pipeRate/baseRate)
	}
}
