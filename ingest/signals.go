package ingest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/backoff"
	"github.com/tollgate/tollgate/internal/logs"
	"github.com/tollgate/tollgate/internal/metrics"
	"github.com/tollgate/tollgate/schemas"
)

// The signals topic holds the aggregator's quota state of every key under
// every plan: one record per state, keyed "planID/keyID", whose value is
// schemas.AppendQuotaSignal's encoding, or nil (a tombstone) when the key
// left the plan. The topic is compacted by that key, so it keeps the
// latest state of each pair, and a new enforcer reads every current state
// however long ago it was published. The key also picks the partition
// (murmur2, as for events): the states of one pair stay in one partition,
// in order.

// signalKey is the record key of a key's state under a plan.
func signalKey(planID, keyID string) string { return planID + "/" + keyID }

// The topic also carries the aggregator's divisions of keys' throttles
// (schemas.RateSignal), keyed rateKeyPrefix + "planID/keyID": compaction
// keeps the latest division of each key apart from its quota state, and
// the prefix tells the two apart (no id tollgate generates starts with
// it; a record under it that is not a division is read as a quota
// state). A division holds for seconds: readers apply it and keep none
// of it but the fleet's size.
const rateKeyPrefix = "~rate/"

func rateKey(planID, keyID string) string { return rateKeyPrefix + planID + "/" + keyID }

// SignalWriter publishes quota signals to the signals topic, each
// acknowledged by all in-sync replicas. Publishing a state again is
// harmless (an enforcer derives its lease from the latest state of a key,
// the same for a copy), so a failed Write may simply be retried.
type SignalWriter struct {
	w *kafka.Writer
}

// NewSignalWriter returns a writer for k's signals topic.
func NewSignalWriter(k Kafka) (*SignalWriter, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	k = k.withDefaults()
	return &SignalWriter{w: &kafka.Writer{
		Addr:         kafka.TCP(k.Brokers...),
		Topic:        k.Topics().Signals,
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    1 << 16,
		BatchBytes:   16 << 20,
		BatchTimeout: time.Millisecond,
		MaxAttempts:  3,
		WriteTimeout: k.Timeout,
		ReadTimeout:  k.Timeout,
	}}, nil
}

// Write publishes signals, in order per plan and key.
func (w *SignalWriter) Write(ctx context.Context, signals []schemas.QuotaSignal) error {
	return writeAll(ctx, w.w, "signals", signals, func(s *schemas.QuotaSignal) (string, string, []byte) {
		return s.PlanID, s.KeyID, schemas.AppendQuotaSignal(nil, s)
	}, signalKey)
}

// WriteRates publishes divisions of keys' throttles.
func (w *SignalWriter) WriteRates(ctx context.Context, signals []schemas.RateSignal) error {
	return writeAll(ctx, w.w, "rate signals", signals, func(s *schemas.RateSignal) (string, string, []byte) {
		return s.PlanID, s.KeyID, schemas.AppendRateSignal(nil, s)
	}, rateKey)
}

// writeAll writes one record per signal, keyed by key(plan, key id),
// refusing a signal without either id.
func writeAll[S any](ctx context.Context, w *kafka.Writer, what string, signals []S, encode func(*S) (plan, key string, value []byte), key func(plan, key string) string) error {
	if len(signals) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(signals))
	for i := range signals {
		plan, id, value := encode(&signals[i])
		if plan == "" || id == "" {
			return fmt.Errorf("write %s: signal %d has no plan or key id", what, i)
		}
		msgs[i] = kafka.Message{Key: []byte(key(plan, id)), Value: value}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	return nil
}

// Delete publishes a tombstone for a key under a plan: readers forget its
// state, and compaction eventually removes it from the topic.
func (w *SignalWriter) Delete(ctx context.Context, planID, keyID string) error {
	if err := w.w.WriteMessages(ctx, kafka.Message{Key: []byte(signalKey(planID, keyID))}); err != nil {
		return fmt.Errorf("delete signal of %s: %w", signalKey(planID, keyID), err)
	}
	return nil
}

// Close flushes and closes the writer.
func (w *SignalWriter) Close() error { return w.w.Close() }

// SignalReaderConfig configures a SignalReader.
type SignalReaderConfig struct {
	// Kafka names the cluster and the signals topic. Required.
	Kafka Kafka
	// Snapshot is the file that keeps the latest signal per plan and key
	// and the offset reached in each partition, so that an enforcer
	// starts and enforces the fleet's quota state while Kafka is
	// unreachable. "" keeps none.
	Snapshot string
	// Apply hands each signal to its user (enforcer.Gateway.ApplySignal),
	// which reports whether the signal applied; the reader keeps every
	// signal either way. It is called from one goroutine per partition,
	// so it must be safe for concurrent use. Nil: signals are only kept
	// (see Latest).
	Apply func(*schemas.QuotaSignal) bool
	// ApplyRate hands each division of a key's throttle to its user
	// (enforcer.Gateway.ApplyRate), from one goroutine per partition.
	// Nil: divisions are skipped.
	ApplyRate func(*schemas.RateSignal) bool
	// Fleet hands the number of enforcers in the fleet, the largest the
	// aggregators' fleet signals (schemas.FleetPlanID) said within the
	// last 10 s (a smaller one only once the larger was not said for
	// fleetHold), and
	// at start the snapshot's (enforcer.Gateway.SetFleet): what a
	// throttle falls back to when divisions stop. Nil: none.
	Fleet func(n int)
	// MaxWait is the longest a fetch waits for new records; signals
	// arrive as soon as they are written whatever it is. Default 500ms.
	MaxWait time.Duration
	// Logger receives rejected records and connection trouble, with
	// component=signals. Nil discards.
	Logger *slog.Logger
	// Now stamps snapshots and paces their saving, and dates the newest
	// signal's age (metrics). Default time.Now.
	Now func() time.Time
	// Metrics is where the reader registers its metrics (signals read
	// and applied, the newest's age: metrics.go). Nil: not registered.
	Metrics prometheus.Registerer
	// ClockTolerance is how far this node's clock may be from the
	// aggregators' before Health reports it (and the log says so): times
	// decide quota periods and key expiry. Default DefaultClockTolerance.
	ClockTolerance time.Duration
	// Skewed is told when this node's clock goes off the aggregators' by
	// more than ClockTolerance (true) and when it agrees again (false)
	// (enforcer.Gateway.SetClockSkewed). Nil: none.
	Skewed func(bool)
	// SilenceAfter is how long without an aggregator's fleet signal
	// (each aggregator sends one a second) before the reader logs that
	// signals stopped. Default DefaultSilenceAfter.
	SilenceAfter time.Duration
}

// DefaultClockTolerance and DefaultSilenceAfter are the defaults of
// SignalReaderConfig.ClockTolerance and SilenceAfter.
const (
	DefaultClockTolerance = 5 * time.Second
	DefaultSilenceAfter   = 5 * time.Second
)

// Validate reports every problem with the configuration.
func (c *SignalReaderConfig) Validate() error {
	var errs []error
	if err := c.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxWait < 0 {
		errs = append(errs, errors.New("signal reader: max wait must not be negative"))
	}
	return errors.Join(errs...)
}

// SignalReader follows the signals topic: it keeps the latest signal per
// plan and key, hands each new one to Apply, and keeps both, with the
// offsets it reached, in a snapshot file.
type SignalReader struct {
	cfg    SignalReaderConfig
	client *kafka.Client
	topic  string

	mu     sync.Mutex
	latest map[string]schemas.QuotaSignal // by record key
	next   map[int]int64                  // partition → the offset to read next
	dirty  bool                           // changed since the last snapshot
	saved  time.Time

	saveMu   sync.Mutex // serialises snapshot writes
	pending  atomic.Int64
	loaded   chan struct{}
	loadOnce sync.Once
	failures atomic.Uint64
	// received and applied count the signals read from the topic and
	// those the gateway applied; newest is the latest AsOf read.
	received, applied atomic.Uint64
	newest            atomic.Int64
	// fleet is the Fleet of the newest division or fleet signal read (kept in the
	// snapshot).
	fleet atomic.Int32
	// rates counts the divisions read and those the gateway applied.
	rates, ratesApplied atomic.Uint64
	// heard is when (this node's clock, Unix ns) the newest fleet signal
	// was read once the topic was caught up; skew is this node's clock
	// less the aggregators' (see aggs). silent and skewed say what the
	// log last said.
	heard, skew    atomic.Int64
	silent, skewed atomic.Bool
	// aggs is what each aggregator's fleet signals said (by its name):
	// the fleet's size is the largest an aggregator heard from within
	// aggregatorFresh, and the clocks' offset the smallest of the
	// aggregators' (one with a bad clock does not take every enforcer
	// out of service while another agrees with them).
	aggsMu sync.Mutex
	aggs   map[string]*aggregatorView
	// fleetAt is when (this node's clock) an aggregator last said a
	// fleet at least as large as the one in force.
	fleetAt int64
	// catchup is the newest fleet signal read while catching up.
	catchup schemas.RateSignal
}

// caughtUp runs once the reader has reached the topic's end of its
// start: without a fleet's size yet (no snapshot), the newest fleet
// signal the topic held is taken.
func (r *SignalReader) caughtUp() {
	r.aggsMu.Lock()
	n := r.catchup.Fleet
	r.aggsMu.Unlock()
	if n > 0 && r.fleet.CompareAndSwap(0, n) && r.cfg.Fleet != nil {
		r.cfg.Fleet(int(n))
	}
}

// aggregatorView is what an enforcer knows of one aggregator from its
// fleet signals: the fleet's size it said, when it was heard, and the
// clocks' offsets of its last signals (delivery only adds to an offset,
// so the smallest of a few is the truest).
type aggregatorView struct {
	fleet int32
	heard int64
	skews [5]int64
	next  int
}

// aggregatorFresh is how long an aggregator's fleet signal counts: an
// aggregator gone (stopped, replaced) stops counting after it.
const aggregatorFresh = 10 * time.Second

// fleetHold is how long the fleet's size in force holds against smaller
// ones: an aggregator counts the enforcers it read events from in the
// last 10 s, so an idle enforcer, or an aggregator just started, makes
// the fleet look smaller than it is, and a smaller fleet means larger
// fallback shares. It grows at once and shrinks only after fleetHold
// without a signal naming it.
const fleetHold = 5 * time.Minute

// signalSnapshot is the snapshot file's content.
type signalSnapshot struct {
	Topic   string           `json:"topic"`
	SavedAt time.Time        `json:"savedAt"`
	Next    map[int]int64    `json:"next"` // partition → offset
	Signals []snapshotSignal `json:"signals"`
	// Fleet is how many enforcers the newest division or fleet signal
	// named.
	Fleet int32 `json:"fleet,omitempty"`
}

// snapshotSignal is schemas.QuotaSignal with JSON names; converting
// between the two fails to compile if the signal's fields change.
type snapshotSignal struct {
	PlanID    string         `json:"planId"`
	KeyID     string         `json:"keyId"`
	Used      int64          `json:"used"`
	Limit     int64          `json:"limit"`
	PeriodEnd int64          `json:"periodEnd"`
	AsOf      int64          `json:"asOf"`
	Exhausted bool           `json:"exhausted,omitempty"`
	Nodes     []snapshotNode `json:"nodes,omitempty"`
}

type snapshotNode struct {
	Node    string `json:"node"`
	Counted int64  `json:"counted"`
}

func (s snapshotSignal) signal() schemas.QuotaSignal {
	q := schemas.QuotaSignal{PlanID: s.PlanID, KeyID: s.KeyID, Used: s.Used, Limit: s.Limit, PeriodEnd: s.PeriodEnd,
		AsOf: s.AsOf, Exhausted: s.Exhausted}
	for _, n := range s.Nodes {
		q.Nodes = append(q.Nodes, schemas.NodeCount{Node: n.Node, Counted: n.Counted})
	}
	return q
}

func snapshotOf(q schemas.QuotaSignal) snapshotSignal {
	s := snapshotSignal{PlanID: q.PlanID, KeyID: q.KeyID, Used: q.Used, Limit: q.Limit, PeriodEnd: q.PeriodEnd,
		AsOf: q.AsOf, Exhausted: q.Exhausted}
	for _, n := range q.Nodes {
		s.Nodes = append(s.Nodes, snapshotNode{Node: n.Node, Counted: n.Counted})
	}
	return s
}

// OpenSignalReader loads the snapshot, if any, and applies its signals;
// Run then follows the topic.
func OpenSignalReader(cfg SignalReaderConfig) (*SignalReader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 500 * time.Millisecond
	}
	cfg.Logger = logs.For(cfg.Logger, "signals")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Apply == nil {
		cfg.Apply = func(*schemas.QuotaSignal) bool { return false }
	}
	if cfg.ClockTolerance <= 0 {
		cfg.ClockTolerance = DefaultClockTolerance
	}
	if cfg.SilenceAfter <= 0 {
		cfg.SilenceAfter = DefaultSilenceAfter
	}
	r := &SignalReader{cfg: cfg, client: cfg.Kafka.client(), topic: cfg.Kafka.Topics().Signals,
		latest: map[string]schemas.QuotaSignal{}, next: map[int]int64{}, loaded: make(chan struct{})}
	if err := r.loadSnapshot(); err != nil {
		return nil, err
	}
	if err := metrics.Register(cfg.Metrics, "signal reader", r.collector()); err != nil {
		return nil, err
	}
	for _, s := range r.Latest() {
		cfg.Apply(&s)
	}
	if n := r.fleet.Load(); n > 0 && cfg.Fleet != nil {
		cfg.Fleet(int(n))
	}
	return r, nil
}

func (r *SignalReader) loadSnapshot() error {
	var s signalSnapshot
	if ok, err := readSnapshot(r.cfg.Snapshot, "signals", &s); !ok {
		return err
	}
	if s.Topic != r.topic {
		r.cfg.Logger.Warn("signals snapshot is of another topic; reading the topic from its start", "snapshot", s.Topic, "topic", r.topic)
		return nil
	}
	for _, ss := range s.Signals {
		if ss.PlanID == "" || ss.KeyID == "" {
			return fmt.Errorf("signals snapshot %s: a signal without plan or key id (delete it to rebuild from Kafka)", r.cfg.Snapshot)
		}
		r.latest[signalKey(ss.PlanID, ss.KeyID)] = ss.signal()
	}
	for p, off := range s.Next {
		r.next[p] = off
	}
	r.saved = s.SavedAt
	r.fleet.Store(s.Fleet)
	return nil
}

// Latest returns the latest signal of every plan and key, sorted by plan
// and key id.
func (r *SignalReader) Latest() []schemas.QuotaSignal {
	r.mu.Lock()
	out := slices.Collect(maps.Values(r.latest))
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b schemas.QuotaSignal) int {
		return cmp.Or(cmp.Compare(a.PlanID, b.PlanID), cmp.Compare(a.KeyID, b.KeyID))
	})
	return out
}

// Get returns the latest signal of a plan and key, if there is one: a
// map lookup, for a node that gained one key and wants its state.
func (r *SignalReader) Get(planID, keyID string) (schemas.QuotaSignal, bool) {
	r.mu.Lock()
	s, ok := r.latest[signalKey(planID, keyID)]
	r.mu.Unlock()
	return s, ok
}

// ApplyGained hands Apply the latest signals of what a catalog change
// gave the gateway: each key put, in each of its plans, and every key of
// a plan the catalog did not have. A key or plan the gateway already held
// keeps its counters, so the cost is that of the change, not of the
// catalog (a full change, a first load or a rebuild, takes every signal).
// Call it after the gateway applied the change.
func (r *SignalReader) ApplyGained(ch *catalog.Change) {
	if ch.Delta.Full {
		for _, s := range r.Latest() {
			r.cfg.Apply(&s)
		}
		return
	}
	apply := func(planID, keyID string) {
		if s, ok := r.Get(planID, keyID); ok {
			r.cfg.Apply(&s)
		}
	}
	for _, id := range ch.Delta.Keys {
		if k := ch.New.Key(id); k != nil {
			for _, p := range k.UsagePlans {
				apply(p, id)
			}
		}
	}
	for _, id := range ch.Delta.Plans {
		if ch.Old.Plan(id) != nil || ch.New.Plan(id) == nil {
			continue
		}
		ch.New.PlanKeys(id, "", func(k *catalog.APIKey) bool {
			apply(id, k.ID)
			return true
		})
	}
}

// Loaded is closed once every partition Run found when it started has
// been read up to the end it had then.
func (r *SignalReader) Loaded() <-chan struct{} { return r.loaded }

// Failures counts rejected records and failed requests to Kafka.
func (r *SignalReader) Failures() uint64 { return r.failures.Load() }

// partitionsEvery is how often Run looks for partitions added to the
// topic.
const partitionsEvery = time.Minute

// heardFrom records an aggregator's fleet signal read from the topic's
// end (older ones, read while catching up, say nothing of the clocks).
func (r *SignalReader) heardFrom(s *schemas.RateSignal) {
	select {
	case <-r.loaded:
	default:
		// Catching up: the clocks say nothing, but the newest fleet's
		// size read is the best guess of it until an aggregator says.
		r.aggsMu.Lock()
		if s.AsOf >= r.catchup.AsOf {
			r.catchup = *s
		}
		r.aggsMu.Unlock()
		return
	}
	now := r.cfg.Now().UnixNano()
	r.aggsMu.Lock()
	if r.aggs == nil {
		r.aggs = map[string]*aggregatorView{}
	}
	v := r.aggs[s.KeyID]
	if v == nil {
		v = &aggregatorView{}
		for i := range v.skews {
			v.skews[i] = now - s.AsOf
		}
		r.aggs[s.KeyID] = v
	}
	v.fleet, v.heard = s.Fleet, now
	v.skews[v.next%len(v.skews)] = now - s.AsOf
	v.next++
	var fleet int32
	skew, first := int64(0), true
	for name, a := range r.aggs {
		if now-a.heard > int64(aggregatorFresh) {
			delete(r.aggs, name)
			continue
		}
		fleet = max(fleet, a.fleet)
		m := slices.Min(a.skews[:])
		if first || abs(m) < abs(skew) {
			skew, first = m, false
		}
	}
	cur := r.fleet.Load()
	switch {
	case fleet > 0 && fleet >= cur:
		r.fleetAt = now
	case fleet > 0 && now-r.fleetAt > int64(fleetHold):
		r.fleetAt = now
	default:
		fleet = cur
	}
	r.aggsMu.Unlock()
	r.heard.Store(now)
	r.skew.Store(skew)
	if fleet > 0 && r.fleet.Swap(fleet) != fleet {
		r.mu.Lock()
		r.dirty = true
		r.mu.Unlock()
		if r.cfg.Fleet != nil {
			r.cfg.Fleet(int(fleet))
		}
	}
	r.watch()
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// watch logs when signals stop or come back, and when the clocks part
// or agree again, once each time.
func (r *SignalReader) watch() {
	heard := r.heard.Load()
	if heard == 0 {
		return
	}
	silence := r.cfg.Now().Sub(time.Unix(0, heard))
	if quiet := silence > r.cfg.SilenceAfter; r.silent.CompareAndSwap(!quiet, quiet) {
		if quiet {
			r.cfg.Logger.Warn("no signal from the aggregators: keys' throttles fall back to their 1/N share, and keys without a signal of the period to the fail-safe lease",
				"for", silence.Round(time.Second))
		} else {
			r.cfg.Logger.Info("signals from the aggregators again")
		}
	}
	skew := time.Duration(r.skew.Load())
	if off := skew > r.cfg.ClockTolerance || skew < -r.cfg.ClockTolerance; r.skewed.CompareAndSwap(!off, off) {
		if r.cfg.Skewed != nil {
			r.cfg.Skewed(off)
		}
		if off {
			r.cfg.Logger.Error("this node's clock differs from the aggregator's: quota periods, leases and key expiry are decided by it; keep clocks with NTP",
				"ahead", skew.Round(time.Millisecond), "tolerance", r.cfg.ClockTolerance)
		} else {
			r.cfg.Logger.Info("clock agrees with the aggregator's again", "ahead", skew.Round(time.Millisecond))
		}
	}
}

// Health reports a clock that differs from the aggregators' by more than
// ClockTolerance (for /readyz): nil otherwise, and before a fleet signal
// was read from the topic's end.
func (r *SignalReader) Health() error {
	if r.heard.Load() == 0 {
		return nil
	}
	if skew := time.Duration(r.skew.Load()); skew > r.cfg.ClockTolerance || skew < -r.cfg.ClockTolerance {
		return fmt.Errorf("clock %v ahead of the aggregator's (tolerance %v): keep it with NTP", skew.Round(time.Millisecond), r.cfg.ClockTolerance)
	}
	return nil
}

// Silence returns how long since the newest fleet signal was read, and
// false before one was.
func (r *SignalReader) Silence() (time.Duration, bool) {
	heard := r.heard.Load()
	if heard == 0 {
		return 0, false
	}
	return r.cfg.Now().Sub(time.Unix(0, heard)), true
}

// Run follows every partition of the topic until ctx ends, applying each
// signal; it retries while Kafka is unreachable (the signals already
// applied stay in force), and saves the snapshot at most once a second
// and when it returns. Call it once.
func (r *SignalReader) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer r.saveSnapshot(true)
	defer wg.Wait()
	followed := map[int]bool{}
	wait := time.Duration(0) // the last retry's wait
	// The silence is noticed by the clock, not by a signal.
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.watch()
			}
		}
	})
	for ctx.Err() == nil {
		parts, err := partitionIDs(ctx, r.client, r.topic)
		if err != nil {
			r.retry(ctx, "read the signals topic's partitions", err, &wait)
			continue
		}
		wait = 0
		first := len(followed) == 0
		if first {
			r.pending.Store(int64(len(parts)))
		}
		for _, p := range parts {
			if !followed[p] {
				followed[p] = true
				wg.Go(func() { r.follow(ctx, p, first) })
			}
		}
		backoff.Sleep(ctx, partitionsEvery)
	}
	return nil
}

// follow reads one partition until ctx ends. counts says whether the
// partition is one Loaded waits for.
func (r *SignalReader) follow(ctx context.Context, p int, counts bool) {
	wait := time.Duration(0) // the last retry's wait
	positioned := false
	var target int64 = -1 // the end to reach before Loaded
	var applied []schemas.QuotaSignal
	var rates []schemas.RateSignal
	for ctx.Err() == nil {
		if !positioned {
			first, hwm, err := offsets(ctx, r.client, r.topic, p)
			if err != nil {
				r.retry(ctx, fmt.Sprintf("read the offsets of signals partition %d", p), err, &wait)
				continue
			}
			r.position(p, first, hwm)
			positioned = true
			if target < 0 {
				target = hwm
			}
		}
		if counts && r.offset(p) >= target {
			counts = false
			if r.pending.Add(-1) == 0 {
				r.loadOnce.Do(func() { r.caughtUp(); close(r.loaded) })
			}
		}
		recs, hwm, err := fetch(ctx, r.client, r.topic, p, r.offset(p), r.cfg.MaxWait)
		if err != nil {
			// Kafka is away, or the offset is out of range (the topic
			// was recreated): ask for the partition's offsets again.
			positioned = false
			r.retry(ctx, fmt.Sprintf("fetch signals partition %d", p), err, &wait)
			continue
		}
		wait = 0
		applied, rates = r.apply(p, recs, hwm, applied[:0], rates[:0])
		for i := range rates {
			r.rates.Add(1)
			if r.cfg.ApplyRate != nil && r.cfg.ApplyRate(&rates[i]) {
				r.ratesApplied.Add(1)
			}
			if rates[i].PlanID == schemas.FleetPlanID {
				r.heardFrom(&rates[i])
			}
		}
		for i := range applied {
			if r.cfg.Apply(&applied[i]) {
				r.applied.Add(1)
			}
			r.received.Add(1)
			for asOf := applied[i].AsOf; ; {
				n := r.newest.Load()
				if asOf <= n || r.newest.CompareAndSwap(n, asOf) {
					break
				}
			}
		}
		r.saveSnapshot(false)
	}
}

// position sets where a partition is read from: where the snapshot or an
// earlier fetch left it, unless that is outside the partition (the topic
// was recreated, or records were deleted), then from its first offset.
func (r *SignalReader) position(p int, first, hwm int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.next[p]
	if ok && (n > hwm || n < first) {
		r.cfg.Logger.Warn("signals partition cannot be continued where it was left; reading it from its first offset",
			"partition", p, "next", n, "first", first, "end", hwm)
		ok = false
	}
	if !ok {
		r.next[p], r.dirty = first, true
	}
}

func (r *SignalReader) offset(p int) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next[p]
}

func (r *SignalReader) retry(ctx context.Context, doing string, err error, wait *time.Duration) {
	if ctx.Err() != nil {
		return
	}
	r.failures.Add(1)
	backoff.Retry(ctx, r.cfg.Logger, wait, 100*time.Millisecond, 5*time.Second, doing+" failed; retrying", "err", err)
}

// apply keeps the signals of fetched records and appends them to out,
// for the caller to hand to Apply outside the lock.
func (r *SignalReader) apply(p int, recs []record, hwm int64, out []schemas.QuotaSignal, rates []schemas.RateSignal) ([]schemas.QuotaSignal, []schemas.RateSignal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(recs) == 0 {
		if hwm > r.next[p] {
			// Records compacted away between next and hwm.
			r.next[p], r.dirty = hwm, true
		}
		return out, rates
	}
	for _, rec := range recs {
		r.next[p] = rec.offset + 1
		if bytes.HasPrefix(rec.key, []byte(rateKeyPrefix)) && rec.value != nil {
			var s schemas.RateSignal
			if decodeRate(rec.key, rec.value, &s) == nil {
				rates = append(rates, s)
				continue
			}
			// Not a division: a quota state whose plan id starts with
			// the prefix, or a bad record, which decodeSignal names.
		}
		if rec.value == nil {
			delete(r.latest, string(rec.key))
			continue
		}
		var s schemas.QuotaSignal
		if err := decodeSignal(rec.key, rec.value, &s); err != nil {
			r.failures.Add(1)
			r.cfg.Logger.Warn("signal record rejected", "partition", p, "offset", rec.offset, "err", err)
			continue
		}
		r.latest[string(rec.key)] = s
		out = append(out, s)
	}
	r.dirty = true
	return out, rates
}

// decodeRate decodes a division's record and checks that its key names
// its plan and key.
func decodeRate(key, value []byte, s *schemas.RateSignal) error {
	if err := schemas.DecodeRateSignal(value, s); err != nil {
		return err
	}
	if string(key) != rateKey(s.PlanID, s.KeyID) {
		return fmt.Errorf("rate signal of %s/%s under the record key %q", s.PlanID, s.KeyID, key)
	}
	return nil
}

// decodeSignal decodes a record's value and checks that its key names
// the signal's plan and key: compaction keeps one record per key, so a
// record under another pair's key could hide that pair's state.
func decodeSignal(key, value []byte, s *schemas.QuotaSignal) error {
	if err := schemas.DecodeQuotaSignal(value, s); err != nil {
		return err
	}
	if n := len(s.PlanID); len(key) != n+1+len(s.KeyID) || string(key[:n]) != s.PlanID || key[n] != '/' || string(key[n+1:]) != s.KeyID {
		return fmt.Errorf("quota signal of %s under the record key %q", signalKey(s.PlanID, s.KeyID), key)
	}
	return nil
}

// saveSnapshot writes the snapshot if it changed, at most once a second
// unless final. A save that finds another in progress leaves the change
// to the next.
func (r *SignalReader) saveSnapshot(final bool) {
	if r.cfg.Snapshot == "" {
		return
	}
	if final {
		r.saveMu.Lock()
	} else if !r.saveMu.TryLock() {
		return
	}
	defer r.saveMu.Unlock()
	r.mu.Lock()
	if !r.dirty || (!final && r.cfg.Now().Sub(r.saved) < time.Second) {
		r.mu.Unlock()
		return
	}
	s := signalSnapshot{Topic: r.topic, SavedAt: r.cfg.Now(), Next: maps.Clone(r.next),
		Signals: make([]snapshotSignal, 0, len(r.latest)), Fleet: r.fleet.Load()}
	for _, sig := range r.latest {
		s.Signals = append(s.Signals, snapshotOf(sig))
	}
	r.dirty, r.saved = false, s.SavedAt
	r.mu.Unlock()
	slices.SortFunc(s.Signals, func(a, b snapshotSignal) int {
		return cmp.Or(cmp.Compare(a.PlanID, b.PlanID), cmp.Compare(a.KeyID, b.KeyID))
	})
	if err := writeSnapshot(r.cfg.Snapshot, &s); err != nil {
		r.cfg.Logger.Error("save signals snapshot", "err", err)
		r.mu.Lock()
		r.dirty = true // try again with the next change
		r.mu.Unlock()
	}
}
