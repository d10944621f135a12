package aggregator

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/schemas"
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

// BenchmarkPipelineFromTopic measures a cold aggregator catching up: the
// events are on the topic (kfake, in this process, 4 partitions) before
// a new Aggregator starts, and the clock runs from New until the store's
// watermarks cover every record (drained, which polls every 200 ms: the
// figure is up to 200 ms low). Each case also runs, in the same
// invocation, the insert-only baseline: the same records read back from
// the topic, decoded, and written with InsertBatch in the batches the
// aggregator makes (65,536 events of one partition), one goroutine per
// partition as the aggregator's workers. The ratio is the pipeline's rate
// over the baseline's.
//
// The events' times are those of live traffic at 150k events/s ending
// now, one plan with a daily quota (so every admitted event is counted
// for quota), 3 enforcers. The midnight case stamps every event within a
// second of today's UTC midnight, alternating before and after it (the
// enforcers' clocks a second apart).
//
// TOLLGATE_PIPE_CPUPROFILE=prefix writes a CPU profile of each pipeline
// run's timed part (not of the events' production) to prefix-<case>.prof.
//
// Sizes: TOLLGATE_PIPE_EVENTS (default 1,000,000) and
// TOLLGATE_PIPE_MIDNIGHT_EVENTS (default the same; a store that wrote an
// INSERT per change of day took minutes for 100k). Each case logs the CPU
// seconds of this process (the aggregator and kfake) and of the
// ClickHouse server over the timed part.
func BenchmarkPipelineFromTopic(b *testing.B) {
	n := envInt(b, "TOLLGATE_PIPE_EVENTS", 1_000_000)
	nMidnight := envInt(b, "TOLLGATE_PIPE_MIDNIGHT_EVENTS", n)
	for _, c := range []struct {
		name     string
		n, keys  int
		midnight bool
	}{
		{"keys=200", n, 200, false},
		{"keys=100000", n, 100_000, false},
		{"keys=200-midnight", nMidnight, 200, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			events := topicEvents(c.n, c.keys, c.midnight, time.Now())
			var pipeRate, baseRate float64
			b.Run("pipeline", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					b.StopTimer()
					r := newRigN(b, benchPartitions)
					r.produceEvents(events)
					cpu := startCPU()
					stopProfile := profileTimed(b, c.name)
					b.StartTimer()
					start := time.Now()
					a := r.start(Config{Store: r.direct, FlushEvents: 1 << 16, FlushInterval: 500 * time.Millisecond,
						Catalog: func() *catalog.State { return benchCatalog }})
					r.drained(10 * time.Minute)
					el := time.Since(start)
					b.StopTimer()
					stopProfile()
					cpu.log(b, el)
					a.stop(b)
					r.sent = events
					if n, detail := r.mismatches(); n != 0 {
						b.Errorf("%d (day, key) counts differ from the events produced; first: %s", n, detail)
					}
					pipeRate = float64(len(events)) / el.Seconds()
					b.StartTimer()
				}
				b.ReportMetric(pipeRate, "events/s")
			})
			b.Run("insert-only", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					b.StopTimer()
					r := newRigN(b, benchPartitions)
					r.produceEvents(events)
					batches := r.topicBatches(1 << 16)
					cpu := startCPU()
					b.StartTimer()
					start := time.Now()
					insertAll(b, r.direct, batches)
					el := time.Since(start)
					b.StopTimer()
					cpu.log(b, el)
					baseRate = float64(len(events)) / el.Seconds()
					b.StartTimer()
				}
				b.ReportMetric(baseRate, "events/s")
			})
			if pipeRate > 0 && baseRate > 0 {
				b.Logf("%s: pipeline %.0f events/s, insert-only %.0f events/s, pipeline / insert-only: %.2f",
					c.name, pipeRate, baseRate, pipeRate/baseRate)
			}
		})
	}
}

// profileTimed starts a CPU profile if TOLLGATE_PIPE_CPUPROFILE is set,
// and returns what stops it.
func profileTimed(b *testing.B, name string) (stop func()) {
	prefix := os.Getenv("TOLLGATE_PIPE_CPUPROFILE")
	if prefix == "" {
		return func() {}
	}
	f, err := os.Create(prefix + "-" + name + ".prof")
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatalf("%v (with -cpuprofile, leave TOLLGATE_PIPE_CPUPROFILE unset)", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// benchCatalog has the benchmark's plan, with a daily quota no key reaches.
var benchCatalog = catalog.StateOf(&catalog.Catalog{UsagePlans: []catalog.UsagePlan{
	{ID: "plan", Name: "plan", Quota: &catalog.Quota{Limit: 1 << 40, Period: catalog.Day}}}})

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// topicEvents returns n events of keys distinct keys (uniformly drawn),
// as live traffic at 150k events/s ending at now; or, midnight, all
// within a second of the UTC midnight that starts now's day, alternating
// before and after it.
func topicEvents(n, keys int, midnight bool, now time.Time) []schemas.UsageEvent {
	rng := rand.New(rand.NewPCG(uint64(n), uint64(keys)))
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("k%06d", i)
	}
	nodes := []string{"n0", "n1", "n2"}
	span := int64(n) * int64(time.Second) / 150_000
	from := now.UnixNano() - span
	day := now.UTC().Truncate(24 * time.Hour).UnixNano()
	out := make([]schemas.UsageEvent, n)
	for i := range out {
		at := from + int64(i)*span/int64(n)
		if midnight {
			at = day + rng.Int64N(int64(time.Second))
			if i%2 == 0 {
				at = day - 1 - rng.Int64N(int64(time.Second))
			}
		}
		e := schemas.UsageEvent{ID: schemas.NewEventID(at), Time: at, APIID: "api", Stage: "prod",
			KeyID: names[rng.IntN(keys)], PlanID: "plan", Method: "GET", Resource: "/items/{id}",
			Status: 200, Decision: schemas.DecisionAllowed, LatencyMicros: 100 + rng.Int64N(900),
			BytesIn: rng.Int64N(512), BytesOut: rng.Int64N(4096), Node: nodes[rng.IntN(len(nodes))]}
		if rng.IntN(10) == 0 {
			e.Status, e.Decision = 429, schemas.DecisionThrottled
		}
		out[i] = e
	}
	return out
}

// produceEvents writes events to the topic, in order.
func (r *rig) produceEvents(events []schemas.UsageEvent) {
	t := r.t
	t.Helper()
	p, err := ingest.NewEventProducer(r.k)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for off := 0; off < len(events); off += 1 << 14 {
		if _, err := p.Produce(context.Background(), events[off:min(off+1<<14, len(events))]); err != nil {
			t.Fatal(err)
		}
	}
}

// topicBatches reads every partition of the topic back and returns its
// records' events in batches of up to size, as an aggregator makes them.
func (r *rig) topicBatches(size int) [][]*chstore.Batch {
	t := r.t
	t.Helper()
	ctx := context.Background()
	f := r.k.Fetcher()
	out := make([][]*chstore.Batch, r.parts)
	for p := range r.parts {
		_, end, err := f.Offsets(ctx, r.k.Topics().Events, p)
		if err != nil {
			t.Fatal(err)
		}
		b := &chstore.Batch{Partition: p}
		for next := int64(0); next < end; {
			recs, _, err := f.Fetch(ctx, r.k.Topics().Events, p, next, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range recs {
				var e schemas.UsageEvent
				if err := schemas.DecodeUsageEvent(rec.Value, &e); err != nil {
					t.Fatal(err)
				}
				b.Events = append(b.Events, e)
				b.Offsets = append(b.Offsets, rec.Offset)
				b.Last, next = rec.Offset, rec.Offset+1
				if len(b.Events) == size {
					out[p] = append(out[p], b)
					b = &chstore.Batch{Partition: p}
				}
			}
		}
		if len(b.Events) > 0 {
			out[p] = append(out[p], b)
		}
	}
	return out
}

// insertAll inserts each partition's batches in order, the partitions
// concurrently. (The one use of the store's watermark here.)
func insertAll(b *testing.B, s *chstore.Store, batches [][]*chstore.Batch) {
	var wg sync.WaitGroup
	for _, bs := range batches {
		wg.Go(func() {
			wm := chstore.NoWatermark
			for _, batch := range bs {
				var err error
				if wm, err = s.InsertBatch(context.Background(), batch, wm); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// cpuMark is the CPU time used so far by this process and by the
// ClickHouse server (if it runs on this machine).
type cpuMark struct {
	self, server time.Duration
	serverPID    int
}

func startCPU() cpuMark {
	pid := clickhousePID()
	return cpuMark{self: procCPU("self"), server: procCPU(strconv.Itoa(pid)), serverPID: pid}
}

// log logs the CPU used since m over wall time el.
func (m cpuMark) log(b *testing.B, el time.Duration) {
	self := procCPU("self") - m.self
	var server time.Duration
	if m.serverPID > 0 {
		server = procCPU(strconv.Itoa(m.serverPID)) - m.server
	}
	b.Logf("wall %.2fs; CPU: this process %.2fs (%.0f%% of a core), ClickHouse server %.2fs (%.0f%%)",
		el.Seconds(), self.Seconds(), 100*self.Seconds()/el.Seconds(), server.Seconds(), 100*server.Seconds()/el.Seconds())
}

// procCPU returns utime+stime of /proc/<pid>/stat, 0 if unreadable.
func procCPU(pid string) time.Duration {
	if pid == "0" {
		return 0
	}
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) in parentheses.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// clickhousePID finds the clickhouse-server process, 0 if none.
func clickhousePID() int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
		if strings.HasPrefix(string(comm), "clickhouse-serv") {
			return pid
		}
	}
	return 0
}
