package aggregator

// The aggregator on a node's own SQLite store (usage/sqlitestore), as
// tollgate reportapi without --clickhouse and serve --kafka run it: every
// partition, no consumer group, no quota authority. Ported from the tests
// of ingest.Loader, which did this before the aggregator did.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tollgate/tollgate/aggregator/aggstore"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/internal/kafkatest"
	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// liteKafka starts a broker with tollgate's topics, the events topic with
// the given partitions.
func liteKafka(t testing.TB, partitions int) (ingest.Kafka, *kfake.Cluster) {
	t.Helper()
	cluster, brokers := kafkatest.Start(t)
	k := ingest.Kafka{Brokers: brokers, Prefix: "load.", Partitions: partitions, Timeout: 5 * time.Second}
	if _, err := ingest.Migrate(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	return k, cluster
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
// choice.
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

// produceLite writes events in order with an EventProducer, 1000 a
// request.
func produceLite(t testing.TB, k ingest.Kafka, events []schemas.UsageEvent) {
	t.Helper()
	p, err := ingest.NewEventProducer(k)
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
func produceRaw(t testing.TB, k ingest.Kafka, partition int, values ...[]byte) {
	t.Helper()
	recs := make([]kafka.Record, len(values))
	for i, v := range values {
		recs[i] = kafka.Record{Key: kafka.NewBytes([]byte("raw"))}
		if v != nil {
			recs[i].Value = kafka.NewBytes(v)
		}
	}
	c := &kafka.Client{Addr: kafka.TCP(k.Brokers...), Timeout: 5 * time.Second}
	res, err := c.Produce(context.Background(), &kafka.ProduceRequest{Topic: k.Topics().Events, Partition: partition,
		RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(recs...)})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		t.Fatalf("produce raw records: %v", err)
	}
}

// startLite runs an aggregator on every partition until the returned
// stop is called, which waits for Run to return; the test's end calls it
// too.
func startLite(t testing.TB, k ingest.Kafka, store Store, cfg Config) (*Aggregator, func()) {
	t.Helper()
	cfg.Kafka, cfg.Store, cfg.AllPartitions = k, store, true
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 20 * time.Millisecond
	}
	if cfg.FlushEvents == 0 {
		cfg.FlushEvents = 4096
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return 30s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

// waitCaughtUp waits for a.CaughtUp.
func waitCaughtUp(t testing.TB, a *Aggregator) {
	t.Helper()
	select {
	case <-a.CaughtUp():
	case <-time.After(time.Minute):
		t.Fatalf("not caught up within a minute; stats %+v", a.Stats())
	}
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

// 20k events, 2k of them written twice (half right after the first copy,
// half up to 3000 writes later: ~750 records of the partition, within the
// window of 2048 but far enough for it to wrap), over 4 partitions: every
// event counts once.
func TestSQLiteExactlyOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	k, _ := liteKafka(t, 4)
	events := testEvents(rng, 20_000)
	writes, copies := withCopies(rng, events, 3000)
	produceLite(t, k, writes)
	for _, tt := range []struct {
		name        string
		flushEvents int
	}{
		{name: "batches of 4096", flushEvents: 4096},
		{name: "small batches", flushEvents: 97},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := openUsageStore(t)
			a, stop := startLite(t, k, st, Config{FlushEvents: tt.flushEvents, DedupWindow: 2048})
			waitCaughtUp(t, a)
			stop()
			checkCounts(t, st, events)
			got := a.Stats()
			got.Failures = 0 // a broker may answer "not ready yet" at first
			if want := (Stats{Stored: uint64(len(events)), Duplicates: uint64(copies)}); got != want {
				t.Errorf("Stats = %+v, want %+v (Failures aside)", got, want)
			}
		})
	}
}

// CaughtUp closes once the store holds every partition up to its end at
// the start, and not while a batch before the end is still unstored.
func TestSQLiteCaughtUp(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	k, _ := liteKafka(t, 4)
	events := testEvents(rng, 5000)
	produceLite(t, k, events)
	st := openUsageStore(t)
	gate := &gatedStore{Store: st, open: make(chan struct{})}
	a, _ := startLite(t, k, gate, Config{FlushEvents: 500})
	poll.Until(t, time.Minute, 2*time.Millisecond, "a batch waits at the gate", func() bool { return gate.waiting.Load() > 0 })
	select {
	case <-a.CaughtUp():
		t.Fatal("CaughtUp closed while no batch was stored")
	default:
	}
	close(gate.open)
	waitCaughtUp(t, a)
	checkCounts(t, st, events) // all of them, at once
}

// gatedStore holds every WriteBatch until open is closed.
type gatedStore struct {
	*sqlitestore.Store
	open    chan struct{}
	waiting atomic.Int64
}

func (g *gatedStore) WriteBatch(ctx context.Context, b *aggstore.Batch, wm aggstore.Watermark) (aggstore.Watermark, error) {
	g.waiting.Add(1)
	select {
	case <-g.open:
	case <-ctx.Done():
		return wm, ctx.Err()
	}
	return g.Store.WriteBatch(ctx, b, wm)
}

// An aggregator stopped part way, then another on the same store, with
// copies of events of before the stop (some stored, some not), and, in
// the second case, copies whose first copies are all before the stored
// offsets: only the window read back on start knows them.
func TestSQLiteRestart(t *testing.T) {
	t.Run("stopped part way", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		k, _ := liteKafka(t, 4)
		events1 := testEvents(rng, 6000)
		writes, _ := withCopies(rng, events1, 1000)
		produceLite(t, k, writes)

		// The first aggregator stores 12 batches of 100, then the
		// store fails until it stops.
		st := openUsageStore(t)
		gate := &flakyStore{Store: st, failWrite: func(n int) failMode {
			if n > 12 {
				return failBefore
			}
			return pass
		}}
		_, stop := startLite(t, k, gate, Config{FlushEvents: 100})
		poll.Until(t, time.Minute, 2*time.Millisecond, "the first aggregator reaches the failing store", func() bool { return gate.failed() > 0 })
		stop()
		offs, err := st.Offsets(context.Background(), sqlitestore.EventsSource)
		if err != nil {
			t.Fatal(err)
		}
		var stored int64
		for _, o := range offs {
			stored += o
		}
		if stored == 0 || stored >= int64(len(writes)) {
			t.Fatalf("the first aggregator stored %d of %d records, want part of them", stored, len(writes))
		}

		events2 := testEvents(rng, 4000)
		writes, _ = withCopies(rng, events2, 1000)
		for _, i := range rng.Perm(len(events1))[:300] {
			if events1[i].KeyID != "" {
				writes = append(writes, events1[i])
			}
		}
		produceLite(t, k, writes)
		a, _ := startLite(t, k, st, Config{FlushEvents: 100})
		waitCaughtUp(t, a)
		checkCounts(t, st, slices.Concat(events1, events2))
	})

	t.Run("copies on both sides of a restart", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 6))
		k, _ := liteKafka(t, 4)
		events1 := testEvents(rng, 3000)
		produceLite(t, k, events1)
		st := openUsageStore(t)
		a1, stop := startLite(t, k, st, Config{})
		waitCaughtUp(t, a1)
		stop()

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
		produceLite(t, k, writes)
		a2, _ := startLite(t, k, st, Config{})
		waitCaughtUp(t, a2)
		checkCounts(t, st, slices.Concat(events1, events2))
		if got := a2.Stats(); got.Duplicates != uint64(copies) || got.Stored != uint64(len(events2)) {
			t.Errorf("second aggregator: Stats = %+v, want %d stored, %d duplicates", got, len(events2), copies)
		}
	})
}

// The limit of the dedup: a copy further behind its first copy than the
// window is counted twice, also when the window is read back on start.
func TestSQLiteWindowLimit(t *testing.T) {
	k, _ := liteKafka(t, 1)
	events := testEvents(rand.New(rand.NewPCG(7, 8)), 30)
	for i := range events {
		events[i].KeyID, events[i].PlanID = "key-01", "pro"
	}
	// Offsets 0-29 the events, 30 a copy of events[25] (5 behind: in
	// the window of 10), 31 a copy of events[5] (26 behind: out).
	produceLite(t, k, slices.Concat(events, []schemas.UsageEvent{events[25], events[5]}))
	st := openUsageStore(t)
	a1, stop := startLite(t, k, st, Config{DedupWindow: 10})
	waitCaughtUp(t, a1)
	stop()
	if got := a1.Stats(); got.Duplicates != 1 || got.Stored != 31 {
		t.Errorf("first aggregator: Stats = %+v, want 31 stored, 1 duplicate", got)
	}

	// On start the window is read back from offsets 22-31: it has
	// events[28], not events[2].
	produceLite(t, k, []schemas.UsageEvent{events[28], events[2]})
	a2, _ := startLite(t, k, st, Config{DedupWindow: 10})
	waitCaughtUp(t, a2)
	if got := a2.Stats(); got.Duplicates != 1 || got.Stored != 1 {
		t.Errorf("second aggregator: Stats = %+v, want 1 stored, 1 duplicate", got)
	}
	checkCounts(t, st, slices.Concat(events, []schemas.UsageEvent{events[5], events[2]}))
}

// Records that are not usage events, or not plausible ones, go to the
// dead-letter topic with the consumer's name, are counted, and hold up
// neither the events after them nor CaughtUp (partition 1 ends with
// poison).
func TestSQLitePoison(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	k, _ := liteKafka(t, 2)
	good := testEvents(rng, 3)
	enc := func(e *schemas.UsageEvent) []byte { return schemas.AppendUsageEvent(nil, e) }
	absurd := good[2]
	absurd.ID, absurd.Time = schemas.NewEventID(1), 1 // 1970
	poison := [][]byte{
		{0xff, 0xff},              // an unterminated varint
		nil,                       // a tombstone
		{0x10, 0x02},              // a well-formed message without an id
		enc(&good[2])[:20],        // cut short in a string
		[]byte("{\"id\": \"x\"}"), // JSON
		enc(&absurd),              // decodes, but no enforcer writes it
	}
	produceRaw(t, k, 0, slices.Concat([][]byte{enc(&good[0])}, poison[:3], [][]byte{enc(&good[1])}, poison[3:])...)
	more := testEvents(rng, 500)
	produceLite(t, k, more)
	produceRaw(t, k, 1, poison[0], poison[4])

	st := openUsageStore(t)
	reg := prometheus.NewRegistry()
	a, _ := startLite(t, k, st, Config{Name: "node-a", Metrics: reg})
	waitCaughtUp(t, a)
	checkCounts(t, st, slices.Concat(good[:2], more))
	want := uint64(len(poison) + 2)
	if got := a.Stats(); got.Poison != want || got.DeadLetterFailures != 0 || got.Stored != uint64(2+len(more)) {
		t.Errorf("Stats = %+v, want %d stored, %d poison, all sent", got, 2+len(more), want)
	}
	m := promtest.Gather(t, reg)
	for name, v := range map[string]float64{
		"tollgate_aggregator_dead_letters_total":                  float64(want),
		"tollgate_aggregator_events_stored_total":                 float64(2 + len(more)),
		`tollgate_aggregator_consumer_lag_records{partition="0"}`: 0,
		`tollgate_aggregator_consumer_lag_records{partition="1"}`: 0,
		"tollgate_aggregator_dead_letter_failures_total":          0,
	} {
		if got, ok := m[name]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, v)
		}
	}
	if m["tollgate_aggregator_batches_stored_total"] < 1 || m["tollgate_aggregator_insert_duration_seconds_count"] < m["tollgate_aggregator_batches_stored_total"] {
		t.Errorf("batches %v, inserts timed %v", m["tollgate_aggregator_batches_stored_total"], m["tollgate_aggregator_insert_duration_seconds_count"])
	}
	if _, ok := m["tollgate_aggregator_quota_keys"]; ok {
		t.Error("a plain loader shows keys under quota authority")
	}
	dlq := kafka.NewReader(kafka.ReaderConfig{Brokers: k.Brokers, Topic: k.Topics().DeadLetter, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer dlq.Close()
	for i := range want {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		m, err := dlq.ReadMessage(ctx)
		cancel()
		if err != nil {
			t.Fatalf("dead letter %d: %v", i, err)
		}
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		if h[HeaderConsumer] != "node-a" || h[HeaderError] == "" || h[HeaderSourceTopic] != k.Topics().Events || h[HeaderSourceOffset] == "" {
			t.Errorf("dead letter %d: headers %v, want the consumer node-a, a reason, the source topic and offset", i, h)
		}
	}
}

type failMode int

const (
	pass       failMode = iota
	failBefore          // fail without storing
	failAfter           // store, then write again: refused as stale, a lost reply's retry
)

// flakyStore fails chosen calls to a SQLite store.
type flakyStore struct {
	*sqlitestore.Store
	// failWrite says what the nth WriteBatch (from 1) does. Nil: pass.
	failWrite func(n int) failMode
	// failWatermarks: the first failWatermarks calls of Watermark fail.
	failWatermarks int

	mu                    sync.Mutex
	writes, watermarks    int
	failures, staleErrors int
}

var errFlaky = errors.New("flaky store: failing on purpose")

func (f *flakyStore) WriteBatch(ctx context.Context, b *aggstore.Batch, wm aggstore.Watermark) (aggstore.Watermark, error) {
	f.mu.Lock()
	f.writes++
	mode := pass
	if f.failWrite != nil {
		mode = f.failWrite(f.writes)
	}
	if mode != pass {
		f.failures++
	}
	f.mu.Unlock()
	switch mode {
	case failBefore:
		return wm, errFlaky
	case failAfter:
		if _, err := f.Store.WriteBatch(ctx, b, wm); err != nil {
			return wm, err
		}
		_, err := f.Store.WriteBatch(ctx, b, wm) // the same batch again, from the same watermark
		var stale *sqlitestore.StaleOffsetError
		if errors.As(err, &stale) {
			f.mu.Lock()
			f.staleErrors++
			f.mu.Unlock()
		}
		return wm, err
	}
	return f.Store.WriteBatch(ctx, b, wm)
}

func (f *flakyStore) Watermark(ctx context.Context, partition int) (aggstore.Watermark, error) {
	f.mu.Lock()
	f.watermarks++
	fail := f.watermarks <= f.failWatermarks
	if fail {
		f.failures++
	}
	f.mu.Unlock()
	if fail {
		return nil, errFlaky
	}
	return f.Store.Watermark(ctx, partition)
}

func (f *flakyStore) failed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failures
}

// Batches the store fails are retried until stored, once each, whether
// the store failed before storing them or refused a retry as stale.
func TestSQLiteStoreFailures(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	k, _ := liteKafka(t, 3)
	events := testEvents(rng, 5000)
	writes, _ := withCopies(rng, events, 500)
	produceLite(t, k, writes)
	tests := []struct {
		name           string
		failWrite      func(n int) failMode
		failWatermarks int
		wantFailures   int
		wantStale      bool
	}{
		{
			name: "the first writes fail",
			failWrite: func(n int) failMode {
				if n <= 5 {
					return failBefore
				}
				return pass
			},
			wantFailures: 5,
		},
		{
			// Each retry is refused as stale; the aggregator reads the
			// offset back and goes on from there.
			name: "every third write stores but is refused as stale",
			failWrite: func(n int) failMode {
				if n%3 == 0 {
					return failAfter
				}
				return pass
			},
			wantFailures: 3,
			wantStale:    true,
		},
		{name: "the stored offsets cannot be read at first", failWatermarks: 4, wantFailures: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openUsageStore(t)
			fs := &flakyStore{Store: st, failWrite: tt.failWrite, failWatermarks: tt.failWatermarks}
			a, stop := startLite(t, k, fs, Config{FlushEvents: 200})
			waitCaughtUp(t, a)
			stop()
			checkCounts(t, st, events)
			if got := fs.failed(); got < tt.wantFailures {
				t.Errorf("the store failed %d calls, want at least %d", got, tt.wantFailures)
			}
			if got := a.Stats().Failures; got < uint64(tt.wantFailures) {
				t.Errorf("Stats().Failures = %d, want at least %d", got, tt.wantFailures)
			}
			if tt.wantStale && fs.staleErrors == 0 {
				t.Error("no write was refused as stale: the case was not exercised")
			}
		})
	}
}

// Retention deleted records before a restarted aggregator read them: it
// counts them as expired and loads the rest; CaughtUp still closes.
func TestSQLiteRetentionOvertakes(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	k, cluster := liteKafka(t, 1)
	events1 := testEvents(rng, 2000)
	produceLite(t, k, events1)
	st := openUsageStore(t)
	a1, stop := startLite(t, k, st, Config{})
	waitCaughtUp(t, a1)
	stop()

	events2 := testEvents(rng, 2000)
	for chunk := range slices.Chunk(events2, 100) { // record batches of 100: retention deletes whole batches
		produceLite(t, k, chunk)
	}
	c := &kafka.Client{Addr: kafka.TCP(k.Brokers...), Timeout: 5 * time.Second}
	res, err := c.AlterConfigs(context.Background(), &kafka.AlterConfigsRequest{Resources: []kafka.AlterConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: k.Topics().Events,
		Configs: []kafka.AlterConfigRequestConfig{{Name: "retention.bytes", Value: "50000"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Errors {
		if e != nil {
			t.Fatal(e)
		}
	}
	cluster.ApplyRetention()
	first, end, err := k.Fetcher().Offsets(context.Background(), k.Topics().Events, 0)
	if err != nil {
		t.Fatal(err)
	}
	if first <= 2000 || first >= end {
		t.Fatalf("retention kept offsets %d-%d; the test wants some of the second 2000 deleted, not all", first, end)
	}
	a2, _ := startLite(t, k, st, Config{})
	waitCaughtUp(t, a2)
	lost := first - 2000
	if got := a2.Stats(); got.Expired != uint64(lost) || got.Stored != uint64(end-first) {
		t.Errorf("Stats = %+v, want %d expired, %d stored", got, lost, end-first)
	}
	checkCounts(t, st, slices.Concat(events1, events2[lost:]))
}

// BenchmarkSQLiteFromTopic is the aggregator as a node's loader: 100k
// events on the topic into a fresh usage.db (fetch, decode, dedup by id,
// WriteBatch with the offset), beside the store's own InsertEvents of the
// same events in the same batches, the baseline.
func BenchmarkSQLiteFromTopic(b *testing.B) {
	const n = 100_000
	k, _ := liteKafka(b, 4)
	// As a fleet writes them: in time order, 20k events/s (testEvents'
	// random times over three days would make every event a rollup row
	// of its own, which measures the rollups, not the loading).
	events := testEvents(rand.New(rand.NewPCG(15, 16)), n)
	for i := range events {
		events[i].Time = 1_750_000_000e9 + int64(i)*50_000
		events[i].ID = schemas.NewEventID(events[i].Time)
	}
	produceLite(b, k, events)
	var pipeRate, baseRate float64
	b.Run("aggregator", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			st, err := sqlitestore.Open(filepath.Join(b.TempDir(), "usage.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			// FlushInterval short: the last batch of each partition waits
			// it out (for more records) before it is stored.
			a, stop := startLite(b, k, st, Config{FlushInterval: 5 * time.Millisecond})
			poll.Until(b, time.Minute, 2*time.Millisecond, "the aggregator has stored the backlog", func() bool { return a.Stats().Stored == n })
			pipeRate = n / time.Since(start).Seconds()
			stop()
			b.StopTimer()
			st.Close()
			b.StartTimer()
		}
		b.ReportMetric(pipeRate, "events/s")
	})
	b.Run("InsertEvents", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			st, err := sqlitestore.Open(filepath.Join(b.TempDir(), "usage.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			for batch := range slices.Chunk(events, 4096) {
				if err := st.InsertEvents(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
			baseRate = n / time.Since(start).Seconds()
			b.StopTimer()
			st.Close()
			b.StartTimer()
		}
		b.ReportMetric(baseRate, "events/s")
	})
	if pipeRate > 0 && baseRate > 0 {
		b.Logf("aggregator on SQLite %.0f events/s, InsertEvents %.0f events/s, ratio %.2f", pipeRate, baseRate, pipeRate/baseRate)
	}
}
