package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/internal/kafkatest"
	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

var _ LoaderStore = (*sqlitestore.Store)(nil)

// loaderKafka starts a broker with tollgate's topics, the events topic
// with the given partitions.
func loaderKafka(t testing.TB, partitions int) Kafka {
	t.Helper()
	_, brokers := kafkatest.Start(t)
	k := Kafka{Brokers: brokers, Prefix: "load.", Partitions: partitions, Timeout: 5 * time.Second}
	if _, err := Migrate(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	return k
}

func openUsageStore(t testing.TB) *sqlitestore.Store {
	t.Helper()
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "usage.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

const testDay = int64(86400e9) // nanoseconds

// testEvents returns n events with fresh ids over three days from
// 2024-10-04, from 50 keys in three plans, with mixed resources and
// outcomes; every 50th has no key or plan (a request without a key).
func testEvents(rng *rand.Rand, n int) []schemas.UsageEvent {
	plans := [...]string{"free", "pro", "enterprise"}
	resources := [...]string{"/items", "/items/{id}", "/orders/{id}/lines"}
	out := make([]schemas.UsageEvent, n)
	for i := range out {
		ns := 20000*testDay + rng.Int64N(3*testDay)
		k := rng.IntN(50)
		e := schemas.UsageEvent{
			ID: schemas.NewEventID(ns), Time: ns, APIID: "api1", Stage: "prod",
			KeyID: fmt.Sprintf("key-%02d", k), PlanID: plans[k%len(plans)],
			Method: "GET", Resource: resources[rng.IntN(len(resources))], Status: 200, Decision: schemas.DecisionAllowed,
			LatencyMicros: rng.Int64N(5000), BytesOut: rng.Int64N(10000),
		}
		switch {
		case i%50 == 13:
			e.KeyID, e.PlanID, e.Status, e.Decision = "", "", 403, schemas.DecisionForbidden
			if i%100 == 13 {
				e.Count = uint32(2 + rng.IntN(1000)) // an enforcer's count of refused requests
			}
		case i%10 == 9:
			e.Status, e.Decision = 429, schemas.DecisionThrottled
		}
		out[i] = e
	}
	return out
}

// withCopies returns the writes of events with a second copy of every
// 10th event, as rewrites make them: every other copy right after its
// event, the others 1 to far writes later. Events without a key are not
// copied: which partition a keyless copy goes to is the producer's
// choice, not one the loader relies on.
func withCopies(rng *rand.Rand, events []schemas.UsageEvent, far int) (writes []schemas.UsageEvent, copies int) {
	later := map[int][]schemas.UsageEvent{}
	for i := range events {
		writes = append(writes, events[i])
		if i%10 == 4 && events[i].KeyID != "" {
			d := 0
			if i%20 == 14 {
				d = 1 + rng.IntN(far)
			}
			later[i+d] = append(later[i+d], events[i])
			copies++
		}
		writes = append(writes, later[i]...)
		delete(later, i)
	}
	for i := len(events); len(later) > 0; i++ {
		writes = append(writes, later[i]...)
		delete(later, i)
	}
	return writes, copies
}

// produce writes events in order with an EventProducer, 1000 a request.
func produce(t testing.TB, k Kafka, events []schemas.UsageEvent) {
	t.Helper()
	p, err := NewEventProducer(k)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for chunk := range slices.Chunk(events, 1000) {
		if failed, err := p.Produce(context.Background(), chunk); err != nil || len(failed) > 0 {
			t.Fatalf("Produce: %d events not written: %v", len(failed), err)
		}
	}
}

// produceRaw writes records with these values to one partition.
func produceRaw(t testing.TB, k Kafka, partition int, values ...[]byte) {
	t.Helper()
	recs := make([]kafka.Record, len(values))
	for i, v := range values {
		recs[i] = kafka.Record{Key: kafka.NewBytes([]byte("raw"))}
		if v != nil {
			recs[i].Value = kafka.NewBytes(v)
		}
	}
	res, err := k.client().Produce(context.Background(), &kafka.ProduceRequest{Topic: k.Topics().Events, Partition: partition,
		RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(recs...)})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		t.Fatalf("produce raw records: %v", err)
	}
}

// startLoader runs a loader until the returned stop is called, which
// waits for Run to return; the test's end calls it too.
func startLoader(t testing.TB, cfg LoaderConfig) (*Loader, func()) {
	t.Helper()
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = time.Millisecond, 10*time.Millisecond
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 20 * time.Millisecond
	}
	l, err := NewLoader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := runUntilStopped(t, l.Run)
	return l, stop
}

// partitionEnds returns the end offset of each partition of the events
// topic.
func partitionEnds(t testing.TB, k Kafka) map[int]int64 {
	t.Helper()
	c := k.client()
	ends := map[int]int64{}
	for p := range k.Partitions {
		_, end, err := offsets(context.Background(), c, k.Topics().Events, p)
		if err != nil {
			t.Fatal(err)
		}
		ends[p] = end
	}
	return ends
}

// waitCaughtUp waits until st has stored the offset of the end of every
// partition that has records.
func waitCaughtUp(t testing.TB, k Kafka, st LoaderStore) {
	t.Helper()
	ends := partitionEnds(t, k)
	var got map[int]int64
	poll.Until(t, time.Minute, 2*time.Millisecond, fmt.Sprintf("the store's offsets reach the ends of the partitions %v (last read: %v)", ends, got), func() bool {
		var err error
		if got, err = st.Offsets(context.Background(), "events"); err != nil {
			t.Fatal(err)
		}
		for p, end := range ends {
			if end > 0 && got[p] != end {
				return false
			}
		}
		return true
	})
}

var allDays = usage.Filter{FromDay: math.MinInt64, ToDay: math.MaxInt64}

// checkCounts compares what st reports with what a store reports into
// which the distinct events were inserted once each (InsertEvents).
func checkCounts(t *testing.T, st *sqlitestore.Store, distinct []schemas.UsageEvent) {
	t.Helper()
	ctx := context.Background()
	ref := openUsageStore(t)
	for chunk := range slices.Chunk(distinct, 4096) {
		if err := ref.InsertEvents(ctx, chunk); err != nil {
			t.Fatal(err)
		}
	}
	read := func(s *sqlitestore.Store) (days []usage.DayCount, mins []usage.MinuteCount, ids []schemas.EventID) {
		var err error
		if days, err = s.Daily(ctx, allDays); err != nil {
			t.Fatal(err)
		}
		if mins, err = s.Minutes(ctx, math.MinInt64, math.MaxInt64); err != nil {
			t.Fatal(err)
		}
		evs, err := s.Events(ctx, math.MinInt64, math.MaxInt64, math.MaxInt32)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			ids = append(ids, e.ID)
		}
		slices.SortFunc(ids, func(a, b schemas.EventID) int { return bytes.Compare(a[:], b[:]) })
		return days, mins, ids
	}
	gotDays, gotMins, gotIDs := read(st)
	wantDays, wantMins, wantIDs := read(ref)
	var requests, want int64
	for _, m := range gotMins {
		requests += m.Requests
	}
	for _, e := range distinct {
		want += e.Requests()
	}
	if requests != want {
		t.Errorf("Minutes count %d requests, want %d (those of the distinct events)", requests, want)
	}
	if d := firstDiff(gotDays, wantDays); d != "" {
		t.Errorf("Daily differs from the oracle's: %s", d)
	}
	if d := firstDiff(gotMins, wantMins); d != "" {
		t.Errorf("Minutes differ from the oracle's: %s", d)
	}
	if d := firstDiff(gotIDs, wantIDs); d != "" {
		t.Errorf("Events differ from the oracle's: %s", d)
	}
}

// firstDiff describes the first difference of got and want, or returns
// "" if they are equal.
func firstDiff[T comparable](got, want []T) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("row %d of %d:\n got %+v\nwant %+v", i, len(want), got[i], want[i])
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("got %d rows, want %d", len(got), len(want))
	}
	return ""
}

// TestLoaderExactlyOnce loads 20k events, 2k of them written twice (half
// right after the first copy, half up to 3000 writes later: ~750 records
// of the partition, within the window of 2048 but far enough for it to
// wrap), over 4 partitions, and checks that every event counts once.
func TestLoaderExactlyOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	k := loaderKafka(t, 4)
	events := testEvents(rng, 20_000)
	writes, copies := withCopies(rng, events, 3000)
	produce(t, k, writes)
	for _, tt := range []struct {
		name      string
		batchSize int
	}{
		{name: "default batches"},
		{name: "small batches", batchSize: 97},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := openUsageStore(t)
			l, stop := startLoader(t, LoaderConfig{Kafka: k, Store: st, BatchSize: tt.batchSize, DedupWindow: 2048})
			waitCaughtUp(t, k, st)
			stop()
			checkCounts(t, st, events)
			got := l.Stats()
			got.Failures = 0 // a broker may answer "not ready yet" at first
			if want := (LoaderStats{Loaded: uint64(len(events)), Duplicates: uint64(copies)}); got != want {
				t.Errorf("Stats = %+v, want %+v (Failures aside)", got, want)
			}
		})
	}
}

// TestLoaderRestart stops a loader and starts another on the same store.
func TestLoaderRestart(t *testing.T) {
	t.Run("stopped part way", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		k := loaderKafka(t, 4)
		events1 := testEvents(rng, 6000)
		writes, _ := withCopies(rng, events1, 1000)
		produce(t, k, writes)

		// The first loader stores 12 batches of 100, then the store
		// fails until it stops.
		st := openUsageStore(t)
		gate := &flakyStore{inner: st, failInsert: func(n int) failMode {
			if n > 12 {
				return failBefore
			}
			return pass
		}}
		_, stop := startLoader(t, LoaderConfig{Kafka: k, Store: gate, BatchSize: 100})
		poll.Until(t, time.Minute, 2*time.Millisecond, "the first loader reaches the failing store", func() bool { return gate.failed() > 0 })
		stop()
		offs, err := st.Offsets(context.Background(), "events")
		if err != nil {
			t.Fatal(err)
		}
		var stored int64
		for _, o := range offs {
			stored += o
		}
		if stored == 0 || stored >= int64(len(writes)) {
			t.Fatalf("the first loader stored %d of %d records, want part of them", stored, len(writes))
		}

		// More events, with copies of events of before the stop:
		// some the first loader stored, some not.
		events2 := testEvents(rng, 4000)
		writes, _ = withCopies(rng, events2, 1000)
		for _, i := range rng.Perm(len(events1))[:300] {
			if events1[i].KeyID != "" {
				writes = append(writes, events1[i])
			}
		}
		produce(t, k, writes)
		startLoader(t, LoaderConfig{Kafka: k, Store: st, BatchSize: 100})
		waitCaughtUp(t, k, st)
		checkCounts(t, st, slices.Concat(events1, events2))
	})

	t.Run("copies on both sides of a restart", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 6))
		k := loaderKafka(t, 4)
		events1 := testEvents(rng, 3000)
		produce(t, k, events1)
		st := openUsageStore(t)
		_, stop := startLoader(t, LoaderConfig{Kafka: k, Store: st})
		waitCaughtUp(t, k, st)
		stop()

		// Every copy's first copy is before the stored offset: only
		// the window read back on start knows them.
		events2 := testEvents(rng, 1000)
		writes := slices.Clone(events2)
		copies := 0
		for i := 0; i < len(events1); i += 6 {
			if events1[i].KeyID != "" {
				writes = append(writes, events1[i])
				copies++
			}
		}
		rng.Shuffle(len(writes), func(i, j int) { writes[i], writes[j] = writes[j], writes[i] })
		produce(t, k, writes)
		l2, _ := startLoader(t, LoaderConfig{Kafka: k, Store: st})
		waitCaughtUp(t, k, st)
		checkCounts(t, st, slices.Concat(events1, events2))
		if got := l2.Stats(); got.Duplicates != uint64(copies) || got.Loaded != uint64(len(events2)) {
			t.Errorf("second loader: Stats = %+v, want %d loaded, %d duplicates", got, len(events2), copies)
		}
	})
}

// TestLoaderWindowLimit shows the limit of the dedup: a copy further
// behind its first copy than the window is counted twice, also when the
// window is read back on start.
func TestLoaderWindowLimit(t *testing.T) {
	k := loaderKafka(t, 1)
	events := testEvents(rand.New(rand.NewPCG(7, 8)), 30)
	for i := range events {
		events[i].KeyID, events[i].PlanID = "key-01", "pro" // all in one partition
	}
	// Offsets 0-29 the events, 30 a copy of events[25] (5 behind: in
	// the window of 10), 31 a copy of events[5] (26 behind: out).
	produce(t, k, slices.Concat(events, []schemas.UsageEvent{events[25], events[5]}))
	st := openUsageStore(t)
	l1, stop := startLoader(t, LoaderConfig{Kafka: k, Store: st, DedupWindow: 10})
	waitCaughtUp(t, k, st)
	stop()
	if got := l1.Stats(); got.Duplicates != 1 || got.Loaded != 31 {
		t.Errorf("first loader: Stats = %+v, want 31 loaded, 1 duplicate", got)
	}

	// On start the window is read back from offsets 22-31: it has
	// events[28], not events[2].
	produce(t, k, []schemas.UsageEvent{events[28], events[2]})
	l2, _ := startLoader(t, LoaderConfig{Kafka: k, Store: st, DedupWindow: 10})
	waitCaughtUp(t, k, st)
	if got := l2.Stats(); got.Duplicates != 1 || got.Loaded != 1 {
		t.Errorf("second loader: Stats = %+v, want 1 loaded, 1 duplicate", got)
	}
	checkCounts(t, st, slices.Concat(events, []schemas.UsageEvent{events[5], events[2]}))
}

// TestLoaderPoison checks that records that are not usage events are
// counted and skipped, and do not hold up the events after them.
func TestLoaderPoison(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	k := loaderKafka(t, 2)
	good := testEvents(rng, 3)
	enc := func(e *schemas.UsageEvent) []byte { return schemas.AppendUsageEvent(nil, e) }
	poison := [][]byte{
		{0xff, 0xff},              // an unterminated varint
		nil,                       // a tombstone
		{0x10, 0x02},              // a well-formed message without an id
		enc(&good[2])[:20],        // cut short in a string
		[]byte("{\"id\": \"x\"}"), // JSON
	}
	for _, v := range poison {
		var e schemas.UsageEvent
		if v != nil && schemas.DecodeUsageEvent(v, &e) == nil {
			t.Fatalf("setup: %x decodes", v)
		}
	}
	produceRaw(t, k, 0, slices.Concat([][]byte{enc(&good[0])}, poison[:3], [][]byte{enc(&good[1])}, poison[3:])...)
	more := testEvents(rng, 500)
	produce(t, k, more)
	// The last records of partition 1 are poison: their offsets are
	// stored all the same.
	produceRaw(t, k, 1, poison[0], poison[4])

	st := openUsageStore(t)
	l, _ := startLoader(t, LoaderConfig{Kafka: k, Store: st})
	waitCaughtUp(t, k, st)
	checkCounts(t, st, slices.Concat(good[:2], more))
	if got := l.Poison(); got != uint64(len(poison)+2) {
		t.Errorf("Poison() = %d, want %d", got, len(poison)+2)
	}
	if got := l.Stats(); got.Poison != uint64(len(poison)+2) || got.Loaded != uint64(2+len(more)) {
		t.Errorf("Stats = %+v, want %d loaded, %d poison", got, 2+len(more), len(poison)+2)
	}
}

type failMode int

const (
	pass       failMode = iota
	failBefore          // fail without storing
	failAfter           // store, then fail: a lost reply
)

// flakyStore fails chosen calls to a store.
type flakyStore struct {
	inner *sqlitestore.Store
	// failInsert says what the nth InsertEventsAt (from 1) does. Nil:
	// pass.
	failInsert func(n int) failMode
	// failOffsets: the first failOffsets calls of Offsets fail.
	failOffsets int

	mu                   sync.Mutex
	inserts, offsetCalls int
	failures             int
}

var errFlaky = errors.New("flaky store: failing on purpose")

func (f *flakyStore) InsertEventsAt(ctx context.Context, events []schemas.UsageEvent, source string, partition int, next int64) error {
	f.mu.Lock()
	f.inserts++
	mode := pass
	if f.failInsert != nil {
		mode = f.failInsert(f.inserts)
	}
	if mode != pass {
		f.failures++
	}
	f.mu.Unlock()
	switch mode {
	case failBefore:
		return errFlaky
	case failAfter:
		if err := f.inner.InsertEventsAt(ctx, events, source, partition, next); err != nil {
			return err
		}
		return errFlaky
	}
	return f.inner.InsertEventsAt(ctx, events, source, partition, next)
}

func (f *flakyStore) Offsets(ctx context.Context, source string) (map[int]int64, error) {
	f.mu.Lock()
	f.offsetCalls++
	fail := f.offsetCalls <= f.failOffsets
	if fail {
		f.failures++
	}
	f.mu.Unlock()
	if fail {
		return nil, errFlaky
	}
	return f.inner.Offsets(ctx, source)
}

func (f *flakyStore) failed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failures
}

// TestLoaderStoreFailures checks that batches the store fails are
// retried until stored, once each, whether the store failed before or
// after storing them.
func TestLoaderStoreFailures(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	k := loaderKafka(t, 3)
	events := testEvents(rng, 5000)
	writes, _ := withCopies(rng, events, 500)
	produce(t, k, writes)
	tests := []struct {
		name         string
		failInsert   func(n int) failMode
		failOffsets  int
		wantFailures int
	}{
		{
			name: "the first inserts fail",
			failInsert: func(n int) failMode {
				if n <= 5 {
					return failBefore
				}
				return pass
			},
			wantFailures: 5,
		},
		{
			// Each retry is refused as stale; the loader reads the
			// offset again and goes on from there.
			name: "every third insert stores but fails (lost replies)",
			failInsert: func(n int) failMode {
				if n%3 == 0 {
					return failAfter
				}
				return pass
			},
			wantFailures: 3,
		},
		{name: "the stored offsets cannot be read at first", failOffsets: 4, wantFailures: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openUsageStore(t)
			fs := &flakyStore{inner: st, failInsert: tt.failInsert, failOffsets: tt.failOffsets}
			l, stop := startLoader(t, LoaderConfig{Kafka: k, Store: fs, BatchSize: 200})
			waitCaughtUp(t, k, st)
			stop()
			checkCounts(t, st, events)
			if got := fs.failed(); got < tt.wantFailures {
				t.Errorf("the store failed %d calls, want at least %d", got, tt.wantFailures)
			}
			if got := l.Failures(); got < uint64(tt.wantFailures) {
				t.Errorf("Failures() = %d, want at least %d", got, tt.wantFailures)
			}
		})
	}
}

func TestLoaderConfig(t *testing.T) {
	st := &flakyStore{}
	k := Kafka{Brokers: []string{"localhost:9092"}}
	tests := []struct {
		name string
		cfg  LoaderConfig
		want string // in the error; "" for none
	}{
		{name: "minimal", cfg: LoaderConfig{Kafka: k, Store: st}},
		{name: "no brokers", cfg: LoaderConfig{Store: st}, want: "broker"},
		{name: "no store", cfg: LoaderConfig{Kafka: k}, want: "Store is required"},
		{name: "negative", cfg: LoaderConfig{Kafka: k, Store: st, MaxWait: -1}, want: "negative"},
		{name: "window too large", cfg: LoaderConfig{Kafka: k, Store: st, DedupWindow: 1<<30 + 1}, want: "DedupWindow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := NewLoader(tt.cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("NewLoader: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("NewLoader: got error %v, want one about %q", err, tt.want)
			case tt.want == "":
				c := l.cfg
				if c.Source != "events" || c.BatchSize != 4096 || c.MaxWait != 200*time.Millisecond || c.DedupWindow != 0 ||
					c.RetryMin != 100*time.Millisecond || c.RetryMax != 5*time.Second || c.Logger == nil {
					t.Errorf("defaults: %+v", c)
				}
				if l.topic != "tollgate.events" {
					t.Errorf("topic = %q, want tollgate.events", l.topic)
				}
			}
		})
	}
}

// BenchmarkLoader measures loading a backlog of 100k events from kfake
// (4 partitions) into a new store, against InsertEvents of the batches
// the loader stores (each partition's events, 4096 at a time) into a new
// store: the difference is what the loader adds (fetching, decoding,
// dedup, offsets).
func BenchmarkLoader(b *testing.B) {
	const n = 100_000
	k := loaderKafka(b, 4)
	// As a fleet writes them: in time order, 20k events/s (testEvents'
	// random times over three days would make every event a rollup row
	// of its own, which measures the rollups, not the loader).
	events := testEvents(rand.New(rand.NewPCG(15, 16)), n)
	for i := range events {
		events[i].Time = 1_750_000_000e9 + int64(i)*50_000
		events[i].ID = schemas.NewEventID(events[i].Time)
	}
	produce(b, k, events)
	ctx := context.Background()

	b.Run("loader", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			st, err := sqlitestore.Open(filepath.Join(b.TempDir(), "usage.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			// MaxWait short: the last batch of each partition waits it
			// out (for more records) before it is stored.
			l, stop := startLoader(b, LoaderConfig{Kafka: k, Store: st, MaxWait: 5 * time.Millisecond})
			poll.Until(b, time.Minute, 2*time.Millisecond, "the loader has loaded the backlog", func() bool { return l.Stats().Loaded == n })
			stop()
			b.StopTimer()
			st.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})

	var batches [][]schemas.UsageEvent
	c := k.client()
	for p, end := range partitionEnds(b, k) {
		var events []schemas.UsageEvent
		for off := int64(0); off < end; {
			recs, _, err := fetch(ctx, c, k.Topics().Events, p, off, time.Second)
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range recs {
				var e schemas.UsageEvent
				if err := schemas.DecodeUsageEvent(r.value, &e); err != nil {
					b.Fatal(err)
				}
				events = append(events, e)
				off = r.offset + 1
			}
		}
		batches = slices.AppendSeq(batches, slices.Chunk(events, 4096))
	}
	b.Run("InsertEvents", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			st, err := sqlitestore.Open(filepath.Join(b.TempDir(), "usage.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			for _, batch := range batches {
				if err := st.InsertEvents(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			st.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})
}
