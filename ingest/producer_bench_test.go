package ingest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/internal/kafkatest"
	"github.com/tollgate/tollgate/schemas"
)

// The benchmarks here measure how many events per second one enforcer
// hands to Kafka (kfake on loopback, acks=all, 12 partitions), one batch
// at a time as the Sink does. The broker runs in the test process: its
// allocations count in B/op and allocs/op, and it shares the CPUs.
//
//	BenchmarkEventProducer/batch=N/EventProducer  Produce: encode and write
//	BenchmarkEventProducer/batch=N/kafka.Writer   the baseline: the same
//	    kafka.Writer writing the same bytes, built before the timer starts
//	BenchmarkSinkPipeline/batch=N                 Queue → Drainer → Sink →
//	    EventProducer, 8192 events offered per iteration
//
// go test -run '^$' -bench 'EventProducer|Sink' -benchtime 2s ./ingest

// benchKafka starts a broker with tollgate's topics, default partitions.
func benchKafka(b *testing.B) Kafka {
	b.Helper()
	_, brokers := kafkatest.Start(b)
	k := Kafka{Brokers: brokers}
	if _, err := Migrate(context.Background(), k); err != nil {
		b.Fatalf("migrate: %v", err)
	}
	return k
}

// benchEvents returns n events of 1000 API keys (see spillEvent).
func benchEvents(n int) []schemas.UsageEvent {
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	out := spillEvents(0, n)
	for i := range out {
		out[i].KeyID = keys[i%len(keys)]
	}
	return out
}

// reportEventRate reports events/s over the timed part of the benchmark.
func reportEventRate(b *testing.B, events int) float64 {
	rate := float64(events) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "events/s")
	return rate
}

func BenchmarkEventProducer(b *testing.B) {
	for _, n := range []int{1000, 8192} {
		b.Run("batch="+strconv.Itoa(n), func(b *testing.B) {
			events := benchEvents(n)
			ctx := context.Background()
			var producerRate, writerRate float64

			// A broker each, so that neither writes to a log the other
			// has grown.
			b.Run("EventProducer", func(b *testing.B) {
				p := newTestEventProducer(b, benchKafka(b))
				// Connections and metadata are set up before the timer.
				if _, err := p.Produce(ctx, events); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				iters := 0
				for b.Loop() {
					if _, err := p.Produce(ctx, events); err != nil {
						b.Fatal(err)
					}
					iters++
				}
				producerRate = reportEventRate(b, iters*n)
			})

			b.Run("kafka.Writer", func(b *testing.B) {
				// kafka-go's own batching writer, acks from all replicas,
				// murmur2, one call's messages sent at once: the baseline
				// EventProducer's per-partition requests must keep up with.
				k := benchKafka(b)
				w := &kafka.Writer{Addr: kafka.TCP(k.Brokers...), Topic: k.Topics().Events, Balancer: &kafka.Murmur2Balancer{},
					RequiredAcks: kafka.RequireAll, BatchSize: 1 << 10, BatchBytes: 16 << 20, BatchTimeout: time.Millisecond}
				defer w.Close()
				msgs := make([]kafka.Message, n)
				for i := range events {
					msgs[i] = kafka.Message{Key: []byte(events[i].KeyID), Value: schemas.AppendUsageEvent(nil, &events[i])}
				}
				if err := w.WriteMessages(ctx, msgs...); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				iters := 0
				for b.Loop() {
					if err := w.WriteMessages(ctx, msgs...); err != nil {
						b.Fatal(err)
					}
					iters++
				}
				writerRate = reportEventRate(b, iters*n)
			})

			if producerRate > 0 && writerRate > 0 {
				b.Logf("EventProducer / kafka.Writer: %.2f", producerRate/writerRate)
			}
		})
	}
}

// BenchmarkSinkPipeline measures the whole path from the proxy's queue to
// Kafka: per iteration 8192 events are offered and the drainer flushes
// them in batches of N through the Sink.
func BenchmarkSinkPipeline(b *testing.B) {
	const perIter = 8192
	for _, n := range []int{1000, 4096, 8192} {
		b.Run("batch="+strconv.Itoa(n), func(b *testing.B) {
			k := benchKafka(b)
			q, err := NewQueue(perIter)
			if err != nil {
				b.Fatal(err)
			}
			sink, err := NewSink(SinkConfig{
				Producer:       newTestEventProducer(b, k),
				Spill:          openTestSpill(b, SpillConfig{Dir: b.TempDir()}),
				ProduceTimeout: 10 * time.Second,
			})
			if err != nil {
				b.Fatal(err)
			}
			d, err := NewDrainer(DrainerConfig{Queue: q, Writer: sink, MaxBatch: n})
			if err != nil {
				b.Fatal(err)
			}
			events := benchEvents(perIter)
			ctx := context.Background()
			round := func() {
				for i := range events {
					if !q.Offer(events[i]) {
						b.Fatal("queue full")
					}
				}
				if err := d.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
			round() // connections and metadata
			b.ReportAllocs()
			iters := 0
			for b.Loop() {
				round()
				iters++
			}
			reportEventRate(b, iters*perIter)
			if st := sink.Stats(); st.Spilled != 0 {
				b.Fatalf("%d events went to the spill log: this measured the disk, not Kafka", st.Spilled)
			}
		})
	}
}
