package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/kafkatest"
	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/schemas"
)

// signalCluster starts a broker with the topics of k's prefix migrated.
func signalCluster(t *testing.T, prefix string, partitions int) (*kfake.Cluster, Kafka) {
	t.Helper()
	cluster, brokers := kafkatest.Start(t)
	k := Kafka{Brokers: brokers, Prefix: prefix, Partitions: partitions, Timeout: 2 * time.Second}
	if _, err := Migrate(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	return cluster, k
}

// signalRecorder is an Apply that keeps what it was handed.
type signalRecorder struct {
	mu     sync.Mutex
	calls  int
	latest map[string]schemas.QuotaSignal
}

func newSignalRecorder() *signalRecorder {
	return &signalRecorder{latest: map[string]schemas.QuotaSignal{}}
}

func (a *signalRecorder) apply(s *schemas.QuotaSignal) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	a.latest[signalKey(s.PlanID, s.KeyID)] = *s
	return true
}

func (a *signalRecorder) has(s schemas.QuotaSignal) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	got, ok := a.latest[signalKey(s.PlanID, s.KeyID)]
	return ok && reflect.DeepEqual(got, s)
}

func (a *signalRecorder) nCalls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

func openSignalReader(t *testing.T, cfg SignalReaderConfig) *SignalReader {
	t.Helper()
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 100 * time.Millisecond
	}
	r, err := OpenSignalReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runSignalReader runs r until the returned stop is called (or the test
// ends) and checks that Run returns nil promptly.
func runSignalReader(t *testing.T, r *SignalReader) (stop func()) {
	t.Helper()
	return runUntilStopped(t, r.Run)
}

func waitSignalsLoaded(t *testing.T, r *SignalReader) {
	t.Helper()
	select {
	case <-r.Loaded():
	case <-time.After(10 * time.Second):
		t.Fatal("signal reader not loaded after 10s")
	}
}

func writeSignals(t *testing.T, k Kafka, signals ...schemas.QuotaSignal) {
	t.Helper()
	w, err := NewSignalWriter(k)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(context.Background(), signals); err != nil {
		t.Fatal(err)
	}
}

// testSignals are n states of distinct pairs, spread over partitions.
func testSignals(n int, used int64) []schemas.QuotaSignal {
	out := make([]schemas.QuotaSignal, n)
	for i := range out {
		out[i] = schemas.QuotaSignal{PlanID: fmt.Sprintf("plan%d", i%2), KeyID: fmt.Sprintf("key%02d", i), Used: used,
			Limit: 10, PeriodEnd: 1_800_000_000_000_000_000, AsOf: 1_799_000_000_000_000_000 + int64(i)}
	}
	return out
}

func TestSignalReaderFollowsTheTopic(t *testing.T) {
	_, k := signalCluster(t, "sf.", 3)
	rec := newSignalRecorder()
	r := openSignalReader(t, SignalReaderConfig{Kafka: k, Apply: rec.apply})
	runSignalReader(t, r)
	waitSignalsLoaded(t, r) // an empty topic

	want := testSignals(6, 1)
	writeSignals(t, k, want...)
	// The fleet used up key00's quota.
	want[0].Used, want[0].Exhausted, want[0].AsOf = 10, true, want[0].AsOf+1e9
	writeSignals(t, k, want[0])
	for _, s := range want {
		poll.Until(t, 10*time.Second, 5*time.Millisecond, fmt.Sprintf("Apply got %+v", s), func() bool { return rec.has(s) })
	}
	if got := r.Latest(); !reflect.DeepEqual(got, sortedSignals(want)) {
		t.Fatalf("Latest = %+v\nwant %+v", got, sortedSignals(want))
	}

	// A tombstone forgets the pair.
	w, err := NewSignalWriter(k)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Delete(context.Background(), want[1].PlanID, want[1].KeyID); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "the deleted pair is forgotten", func() bool { return len(r.Latest()) == len(want)-1 })
	for _, s := range r.Latest() {
		if s.KeyID == want[1].KeyID {
			t.Fatalf("Latest still holds %+v", s)
		}
	}

	// A reader that starts later is loaded with the latest states.
	r2 := openSignalReader(t, SignalReaderConfig{Kafka: k})
	runSignalReader(t, r2)
	waitSignalsLoaded(t, r2)
	if got := r2.Latest(); !reflect.DeepEqual(got, r.Latest()) {
		t.Fatalf("a new reader, once loaded, has %+v\nwant %+v", got, r.Latest())
	}
}

func sortedSignals(l []schemas.QuotaSignal) []schemas.QuotaSignal {
	r := &SignalReader{latest: map[string]schemas.QuotaSignal{}}
	for _, s := range l {
		r.latest[signalKey(s.PlanID, s.KeyID)] = s
	}
	return r.Latest()
}

func TestSignalReaderSnapshotServesWithoutKafka(t *testing.T) {
	cluster, k := signalCluster(t, "ss.", 2)
	snap := filepath.Join(t.TempDir(), "signals.json")
	want := testSignals(4, 3)
	writeSignals(t, k, want...)
	a := openSignalReader(t, SignalReaderConfig{Kafka: k, Snapshot: snap})
	stop := runSignalReader(t, a)
	waitSignalsLoaded(t, a)
	stop() // saves the snapshot
	cluster.Close()

	rec := newSignalRecorder()
	b := openSignalReader(t, SignalReaderConfig{Kafka: k, Snapshot: snap, Apply: rec.apply})
	if n := rec.nCalls(); n != len(want) {
		t.Fatalf("opening with Kafka down applied %d signals, want the snapshot's %d", n, len(want))
	}
	for _, s := range want {
		if !rec.has(s) {
			t.Errorf("the snapshot's %+v was not applied", s)
		}
	}
	// Run keeps retrying; the states stay.
	runSignalReader(t, b)
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "a failed request to Kafka is counted", func() bool { return b.Failures() > 0 })
	if got := b.Latest(); !reflect.DeepEqual(got, sortedSignals(want)) {
		t.Fatalf("Latest with Kafka down = %+v, want the snapshot's", got)
	}
}

func TestSignalReaderResumesFromTheSnapshot(t *testing.T) {
	_, k := signalCluster(t, "sr.", 3)
	snap := filepath.Join(t.TempDir(), "signals.json")
	old := testSignals(6, 2)
	writeSignals(t, k, old...)
	a := openSignalReader(t, SignalReaderConfig{Kafka: k, Snapshot: snap})
	stop := runSignalReader(t, a)
	waitSignalsLoaded(t, a)
	stop()

	rec := newSignalRecorder()
	b := openSignalReader(t, SignalReaderConfig{Kafka: k, Snapshot: snap, Apply: rec.apply})
	runSignalReader(t, b)
	waitSignalsLoaded(t, b)
	// Had a partition been read from its start, its records would have
	// been applied a second time before Loaded.
	if n := rec.nCalls(); n != len(old) {
		t.Fatalf("%d signals applied once loaded, want the snapshot's %d and no record again", n, len(old))
	}
	for p := range 3 {
		if got, want := b.offset(p), a.offset(p); got != want {
			t.Errorf("partition %d: next offset %d, want %d", p, got, want)
		}
	}
	s := old[3]
	s.Used++
	writeSignals(t, k, s)
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "the new signal is applied", func() bool { return rec.has(s) })
	if n := rec.nCalls(); n != len(old)+1 {
		t.Fatalf("%d signals applied, want %d", n, len(old)+1)
	}
}

// A snapshot ahead of the topic (the cluster was rebuilt) is continued
// from each partition's first offset.
func TestSignalReaderSnapshotAheadOfTheTopic(t *testing.T) {
	_, k := signalCluster(t, "sa.", 2)
	snap := filepath.Join(t.TempDir(), "signals.json")
	b, err := json.Marshal(signalSnapshot{Topic: "sa.signals", Next: map[int]int64{0: 1000, 1: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(snap, b, 0o600); err != nil {
		t.Fatal(err)
	}
	want := testSignals(4, 1)
	writeSignals(t, k, want...)
	rec := newSignalRecorder()
	r := openSignalReader(t, SignalReaderConfig{Kafka: k, Snapshot: snap, Apply: rec.apply})
	runSignalReader(t, r)
	waitSignalsLoaded(t, r)
	if got := r.Latest(); !reflect.DeepEqual(got, sortedSignals(want)) {
		t.Fatalf("Latest = %+v, want %+v", got, sortedSignals(want))
	}
}

// signalLog collects log output.
type signalLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *signalLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *signalLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestSignalReaderSkipsBadRecords(t *testing.T) {
	_, k := signalCluster(t, "sb.", 1)
	good := schemas.QuotaSignal{PlanID: "p", KeyID: "k", Used: 7, Limit: 10, PeriodEnd: 2e18, AsOf: 1e18}
	other := good
	other.KeyID = "other"
	w := &kafka.Writer{Addr: kafka.TCP(k.Brokers...), Topic: "sb.signals", BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	// Another tool wrote garbage, and a state under another pair's key;
	// then the real state follows.
	err := w.WriteMessages(context.Background(),
		kafka.Message{Key: []byte("p/k"), Value: []byte{0xff, 0xff}},
		kafka.Message{Key: []byte("p/k"), Value: schemas.AppendQuotaSignal(nil, &other)},
		kafka.Message{Key: []byte("p/k"), Value: schemas.AppendQuotaSignal(nil, &good)},
	)
	if err != nil {
		t.Fatal(err)
	}
	logs := &signalLog{}
	rec := newSignalRecorder()
	r := openSignalReader(t, SignalReaderConfig{Kafka: k, Apply: rec.apply, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	runSignalReader(t, r)
	waitSignalsLoaded(t, r)
	if got := r.Latest(); !reflect.DeepEqual(got, []schemas.QuotaSignal{good}) {
		t.Fatalf("Latest = %+v, want only %+v", got, good)
	}
	if n := rec.nCalls(); n != 1 || !rec.has(good) {
		t.Fatalf("Apply called %d times, want once with %+v", n, good)
	}
	if n := strings.Count(logs.String(), "signal record rejected"); n != 2 || r.Failures() < 2 {
		t.Fatalf("%d records rejected in the log, %d failures; want 2 and at least 2\n%s", n, r.Failures(), logs.String())
	}
}

func TestSignalReaderConfigErrors(t *testing.T) {
	cfg := SignalReaderConfig{MaxWait: -1}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "at least one broker") || !strings.Contains(err.Error(), "max wait must not be negative") {
		t.Fatalf("Validate = %v", err)
	}
	if _, err := OpenSignalReader(cfg); err == nil {
		t.Fatal("OpenSignalReader accepted an invalid configuration")
	}
	snap := filepath.Join(t.TempDir(), "signals.json")
	if err := os.WriteFile(snap, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenSignalReader(SignalReaderConfig{Kafka: Kafka{Brokers: []string{"127.0.0.1:1"}}, Snapshot: snap})
	if err == nil || !strings.Contains(err.Error(), "delete it to rebuild from Kafka") {
		t.Fatalf("a corrupt snapshot: %v", err)
	}
	if _, err := NewSignalWriter(Kafka{}); err == nil {
		t.Fatal("NewSignalWriter accepted a configuration without brokers")
	}
	w, err := NewSignalWriter(Kafka{Brokers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(context.Background(), []schemas.QuotaSignal{{PlanID: "p"}}); err == nil || !strings.Contains(err.Error(), "no plan or key id") {
		t.Fatalf("a signal without key id: %v", err)
	}
}

// ApplyGained hands on the signals of what a change gave the gateway:
// the keys it put, in each of their plans, and the keys of a new plan;
// not those of keys and plans the gateway held before.
func TestSignalReaderApplyGained(t *testing.T) {
	_, k := signalCluster(t, "gained.", 2)
	sig := func(plan, key string) schemas.QuotaSignal {
		return schemas.QuotaSignal{PlanID: plan, KeyID: key, Used: 1, Limit: 10, PeriodEnd: 1_800_000_000_000_000_000, AsOf: 1_799_000_000_000_000_000}
	}
	all := []schemas.QuotaSignal{sig("p1", "k1"), sig("p1", "k2"), sig("p2", "k2"), sig("p2", "k3"), sig("p3", "k4")}
	writeSignals(t, k, all...)
	rec := newSignalRecorder()
	r := openSignalReader(t, SignalReaderConfig{Kafka: k, Snapshot: filepath.Join(t.TempDir(), "signals.json"), Apply: rec.apply})
	runSignalReader(t, r)
	waitSignalsLoaded(t, r)
	rec = newSignalRecorder() // what Run applied is not what this tests
	r.cfg.Apply = rec.apply

	plan := func(id string) catalog.UsagePlan {
		return catalog.UsagePlan{ID: id, Name: id, APIStages: []catalog.APIStage{}}
	}
	key := func(id string, plans ...string) catalog.APIKey {
		return catalog.APIKey{ID: id, Name: id, ValueHash: catalog.HashKey(id + "-value-0123456789abcdef"), UsagePlans: plans}
	}
	// k3 names p2 before the gateway has p2 (the plan's record comes
	// later on the config topic): p2's arrival brings k3's signal.
	old := catalog.StateOf(&catalog.Catalog{UsagePlans: []catalog.UsagePlan{plan("p1"), plan("p3")},
		APIKeys: []catalog.APIKey{key("k1", "p1"), key("k3", "p2"), key("k4", "p3")}})
	// k2 joins p1 and the new p2; k1 and k4 stay as they were.
	next := catalog.StateOf(&catalog.Catalog{UsagePlans: []catalog.UsagePlan{plan("p1"), plan("p2"), plan("p3")},
		APIKeys: []catalog.APIKey{key("k1", "p1"), key("k2", "p1", "p2"), key("k3", "p2"), key("k4", "p3")}})
	r.ApplyGained(&catalog.Change{Old: old, New: next, Delta: catalog.Delta{Keys: []string{"k2"}, Plans: []string{"p2"}}})
	want := []schemas.QuotaSignal{sig("p1", "k2"), sig("p2", "k2"), sig("p2", "k3")}
	for _, s := range want {
		if !rec.has(s) {
			t.Errorf("%s/%s not applied", s.PlanID, s.KeyID)
		}
	}
	for _, s := range []schemas.QuotaSignal{sig("p1", "k1"), sig("p3", "k4")} {
		if rec.has(s) {
			t.Errorf("%s/%s applied; the gateway held it already", s.PlanID, s.KeyID)
		}
	}
	// A full change (a first load, a rebuild) takes every signal.
	rec2 := newSignalRecorder()
	r.cfg.Apply = rec2.apply
	r.ApplyGained(&catalog.Change{Old: catalog.NewState(), New: next, Delta: catalog.Delta{Full: true}})
	if rec2.nCalls() != len(all) {
		t.Errorf("a full change applied %d signals, want all %d", rec2.nCalls(), len(all))
	}
}

// Divisions of throttles share the signals topic with quota states: the
// reader hands each to ApplyRate, keeps none of them among the quota
// states, keeps the fleet's size in its snapshot and hands it to Fleet
// at the next start.
func TestSignalReaderHandsOnRateDivisions(t *testing.T) {
	_, k := signalCluster(t, "rd.", 3)
	snap := filepath.Join(t.TempDir(), "signals.json")
	var mu sync.Mutex
	var rates []schemas.RateSignal
	fleet := 0
	cfg := SignalReaderConfig{Kafka: k, Snapshot: snap, Apply: newSignalRecorder().apply,
		ApplyRate: func(s *schemas.RateSignal) bool {
			mu.Lock()
			defer mu.Unlock()
			rates = append(rates, *s)
			return true
		},
		Fleet: func(n int) {
			mu.Lock()
			defer mu.Unlock()
			fleet = n
		}}
	r := openSignalReader(t, cfg)
	stop := runSignalReader(t, r)
	quota := testSignals(2, 3)
	writeSignals(t, k, quota...)
	div := schemas.RateSignal{PlanID: "plan0", KeyID: "key00", AsOf: 5, Fleet: 3, Floor: 9,
		Shares: []schemas.NodeShare{{Node: "a", Share: 100}, {Node: "b", Share: 200}}}
	w, err := NewSignalWriter(k)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.WriteRates(context.Background(), []schemas.RateSignal{div}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteRates(context.Background(), []schemas.RateSignal{{PlanID: "p"}}); err == nil {
		t.Fatal("a division without a key id was written")
	}
	// The fleet's size comes from the aggregators' fleet signals, not
	// from a key's division, and from those read at the topic's end.
	waitSignalsLoaded(t, r)
	if err := w.WriteRates(context.Background(), []schemas.RateSignal{{PlanID: schemas.FleetPlanID, KeyID: "agg", AsOf: time.Now().UnixNano(), Fleet: 3}}); err != nil {
		t.Fatal(err)
	}
	if err := poll.Wait(10*time.Second, 5*time.Millisecond, "the division handed on", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(rates) != 2 || fleet != 3 {
			return fmt.Errorf("%d divisions, fleet %d", len(rates), fleet)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rates[0], div) {
		t.Fatalf("handed %+v, want %+v", rates[0], div)
	}
	if got := r.Latest(); len(got) != len(quota) {
		t.Fatalf("%d quota states kept, want %d (a division is not one)", len(got), len(quota))
	}
	if r.Failures() != 0 {
		t.Fatalf("%d failures", r.Failures())
	}
	stop()
	fleet = 0
	if _, err := OpenSignalReader(cfg); err != nil {
		t.Fatal(err)
	}
	if fleet != 3 {
		t.Fatalf("fleet at the next start %d, want the snapshot's 3", fleet)
	}
}

// The aggregators' fleet signals, one a second, tell the reader whether
// they are there and how far its clock is from theirs: a clock off by
// more than ClockTolerance makes Health fail and is logged once; signals
// that stop for SilenceAfter are logged once, and again when they return.
func TestSignalReaderWatchesTheAggregators(t *testing.T) {
	_, k := signalCluster(t, "wa.", 1)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC).UnixNano())
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	var skewCalls []bool
	r := openSignalReader(t, SignalReaderConfig{Kafka: k, Logger: logger, Now: func() time.Time { return time.Unix(0, clock.Load()) },
		Skewed: func(b bool) { logMu.Lock(); skewCalls = append(skewCalls, b); logMu.Unlock() }})
	runSignalReader(t, r)
	waitSignalsLoaded(t, r)
	if r.Health() != nil {
		t.Fatal("unhealthy before any fleet signal")
	}
	w, err := NewSignalWriter(k)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	heartbeat := func(ahead time.Duration) {
		t.Helper()
		clock.Add(1) // each reading at its own time
		prev := r.heard.Load()
		at := clock.Load() - int64(ahead)
		if err := w.WriteRates(context.Background(), []schemas.RateSignal{{PlanID: schemas.FleetPlanID, KeyID: "agg", AsOf: at, Fleet: 2}}); err != nil {
			t.Fatal(err)
		}
		if err := poll.Wait(10*time.Second, 5*time.Millisecond, "the fleet signal read", func() error {
			if r.heard.Load() == prev {
				return fmt.Errorf("not yet")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	heartbeat(10 * time.Second) // this node 10 s ahead
	if err := r.Health(); err == nil || !strings.Contains(err.Error(), "10s ahead") {
		t.Fatalf("Health = %v, want the clock 10s ahead", err)
	}
	heartbeat(-time.Second) // within the tolerance
	if err := r.Health(); err != nil {
		t.Fatalf("Health = %v within the tolerance", err)
	}
	// One signal delivered 8 s late is not a clock 8 s off: the offset
	// is the smallest of the aggregator's last few.
	heartbeat(8 * time.Second)
	if err := r.Health(); err != nil {
		t.Fatalf("Health = %v after one late delivery", err)
	}
	clock.Add(int64(6 * time.Second))
	r.watch()
	r.watch()
	if d, ok := r.Silence(); !ok || d != 6*time.Second {
		t.Fatalf("silence %v %v", d, ok)
	}
	heartbeat(0)
	logMu.Lock()
	out := logs.String()
	calls := fmt.Sprint(skewCalls)
	logMu.Unlock()
	if calls != "[true false]" {
		t.Errorf("Skewed told %s, want [true false]", calls)
	}
	for _, want := range []string{"clock differs from the aggregator's", "clock agrees with the aggregator's again",
		"no signal from the aggregators", "signals from the aggregators again"} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", want, n, out)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// The fleet's size grows at once and shrinks only after fleetHold
// without an aggregator saying the larger: an aggregator counts the
// enforcers it read from in the last seconds, which idle ones are not.
func TestSignalReaderFleetShrinksSlowly(t *testing.T) {
	_, k := signalCluster(t, "fs.", 1)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC).UnixNano())
	var mu sync.Mutex
	var said []int
	r := openSignalReader(t, SignalReaderConfig{Kafka: k, Now: func() time.Time { return time.Unix(0, clock.Load()) },
		Fleet: func(n int) { mu.Lock(); said = append(said, n); mu.Unlock() }})
	runSignalReader(t, r)
	waitSignalsLoaded(t, r)
	w, err := NewSignalWriter(k)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	say := func(n int32, advance time.Duration) int32 {
		t.Helper()
		clock.Add(int64(advance))
		prev := r.heard.Load()
		if err := w.WriteRates(context.Background(), []schemas.RateSignal{{PlanID: schemas.FleetPlanID, KeyID: "agg", AsOf: clock.Load(), Fleet: n}}); err != nil {
			t.Fatal(err)
		}
		if err := poll.Wait(10*time.Second, 5*time.Millisecond, "the fleet signal read", func() error {
			if r.heard.Load() == prev {
				return fmt.Errorf("not yet")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return r.fleet.Load()
	}
	if n := say(3, time.Second); n != 3 {
		t.Fatalf("fleet %d, want 3", n)
	}
	if n := say(1, time.Second); n != 3 {
		t.Fatalf("one idle second later: fleet %d, want still 3", n)
	}
	if n := say(0, time.Second); n != 3 {
		t.Fatalf("a fleet signal of 0 (an aggregator warming up): fleet %d", n)
	}
	if n := say(5, time.Second); n != 5 {
		t.Fatalf("fleet %d, want 5 at once", n)
	}
	if n := say(2, fleetHold+time.Second); n != 2 {
		t.Fatalf("after fleetHold without 5: fleet %d, want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(said) != "[3 5 2]" {
		t.Fatalf("Fleet told %v, want [3 5 2]", said)
	}
}

// A reader without a snapshot takes, once caught up, the fleet's size
// of the newest fleet signal the topic held.
func TestSignalReaderTakesTheFleetFromTheTopicAtStart(t *testing.T) {
	_, k := signalCluster(t, "ft.", 1)
	w, err := NewSignalWriter(k)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i, n := range []int32{2, 4} {
		if err := w.WriteRates(context.Background(), []schemas.RateSignal{{PlanID: schemas.FleetPlanID, KeyID: "agg", AsOf: int64(i + 1), Fleet: n}}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var said []int
	r := openSignalReader(t, SignalReaderConfig{Kafka: k, Fleet: func(n int) { mu.Lock(); said = append(said, n); mu.Unlock() }})
	runSignalReader(t, r)
	waitSignalsLoaded(t, r)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(said) != "[4]" {
		t.Fatalf("Fleet told %v, want [4]", said)
	}
}
