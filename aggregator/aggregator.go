package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/aggregator/aggstore"
	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/internal/backoff"
	"github.com/tollgate/tollgate/internal/logs"
	"github.com/tollgate/tollgate/internal/metrics"
	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

// Store is where the aggregator keeps usage: usage/chstore.Store, or
// usage/sqlitestore.Store for a node that keeps a copy of its own. A
// batch and how far the store holds its partition are written together
// (in one transaction, or with marker rows that say so): the aggregator
// starts a partition from the store's watermark, not from a committed
// offset. The watermark is the store's own value, which the aggregator
// hands back with the partition's next batch and reads only Covered of.
type Store interface {
	// Watermark returns what the store holds of partition.
	Watermark(ctx context.Context, partition int) (aggstore.Watermark, error)
	// WriteBatch writes what the store lacks of b, wm being what it held
	// of b's partition before (the Watermark, or what the last WriteBatch
	// or ReadBack returned; nil: nothing), and returns what it holds
	// after. After an error b may have landed, in part or whole (a lost
	// reply): call ReadBack before writing b again.
	WriteBatch(ctx context.Context, b *aggstore.Batch, wm aggstore.Watermark) (aggstore.Watermark, error)
	// ReadBack says what the store holds of b after a failed
	// WriteBatch(b, before) (given the watermark that call returned).
	ReadBack(ctx context.Context, b *aggstore.Batch, before aggstore.Watermark) (aggstore.Watermark, error)
}

// QuotaStore is what the quota authority reads. An aggregator whose Store
// is also a QuotaStore is the quota authority of its partitions' keys; one
// whose Store is not is a plain loader of the topic into the store.
type QuotaStore interface {
	// QuotaUsage returns the admitted requests per day, plan, key and
	// enforcer, and the UpdateUsage adjustments, of the partitions'
	// keys from fromDay on.
	QuotaUsage(ctx context.Context, partitions []int, fromDay int64) ([]usage.NodeDayCount, error)
}

// EventChecker is implemented by a Store that cannot hold every event
// the aggregator finds plausible (ClickHouse's dates end in 2105): an
// event CheckEvent refuses goes to the dead-letter topic.
type EventChecker interface {
	CheckEvent(e *schemas.UsageEvent) error
}

// SignalWriter publishes quota states: ingest.SignalWriter.
type SignalWriter interface {
	Write(ctx context.Context, signals []schemas.QuotaSignal) error
}

// Config configures an Aggregator.
type Config struct {
	// Kafka names the cluster and the topics. Required.
	Kafka ingest.Kafka
	// Store receives the usage. Required. If it is also a QuotaStore,
	// the aggregator is the quota authority of its partitions' keys.
	Store Store
	// GroupID is the consumer group of the aggregators. Default
	// "tollgate-aggregator". Ignored with AllPartitions.
	GroupID string
	// AllPartitions reads every partition of the topic, with no consumer
	// group: for a store that is the only copy of its usage (a node's
	// own usage.db), which needs every partition, and which two nodes
	// must not split between them. Partitions added to the topic are
	// found within a minute. Off by default: a member of GroupID.
	AllPartitions bool
	// Name tells this consumer apart in the dead-letter topic's headers
	// (two consumers of the topic dead-letter the same record). Default:
	// GroupID; with AllPartitions, the host name.
	Name string
	// FlushEvents stores a partition's batch once it holds this many
	// events. Default 65536.
	FlushEvents int
	// FlushInterval is the longest an event waits before its batch is
	// stored. Default 500ms: with the enforcers' 200ms and a ClickHouse
	// insert, usage is visible within 2s.
	FlushInterval time.Duration
	// DedupWindow is how many event ids a partition remembers to drop
	// copies written by producer retries. Default 1<<18 (a few seconds of
	// a busy partition; copies are written within one produce retry).
	DedupWindow int
	// Catalog returns the catalog in force (plans and their quotas).
	// Required of a quota authority (a Store that is a QuotaStore);
	// unused otherwise.
	Catalog func() *catalog.State
	// Signals receives the quota state of changed keys. Nil: none. Not
	// nil requires a Store that is a QuotaStore.
	Signals SignalWriter
	// SignalInterval is the longest a changed key's state waits before
	// it is published; crossing 80% or 100% of a quota publishes at once.
	// Default 1s.
	SignalInterval time.Duration
	// Rates receives the division of throttled keys' rates among the
	// enforcers (the fleet-wide throttle: rate.go). Nil: each enforcer
	// applies whole rates. Requires Catalog.
	Rates RateWriter
	// Stored, when not nil, is handed the events of each batch once
	// stored, on a quota authority only (quota notifications of the keys
	// it owns: package notify). It runs on the partition's worker, must
	// not keep the slice, and should be quick. Nil: none.
	Stored func(ctx context.Context, events []schemas.UsageEvent)
	// Logger receives state changes and failures, with the attribute
	// component=aggregator. Nil discards.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Metrics is where the aggregator registers its metrics (events and
	// batches stored, insert latency, dead letters, consumer lag per
	// partition, keys under quota authority, signals sent: metrics.go).
	// Nil: not registered.
	Metrics prometheus.Registerer

	// dedupOff turns off the watermarks and the id window: the negative
	// control of the accounting test, which must then fail.
	dedupOff bool
	hooks    hooks
}

// hooks let tests crash a partition worker at chosen points: a hook
// returning true makes the worker stop there, as a killed process would.
type hooks struct {
	beforeInsert func(partition int) bool
	afterInsert  func(partition int) bool
}

// Validate reports every problem with the configuration.
func (c *Config) Validate() error {
	var errs []error
	if err := c.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	_, quota := c.Store.(QuotaStore)
	switch {
	case c.Store == nil:
		errs = append(errs, errors.New("aggregator: Store is required"))
	case c.Signals != nil && !quota:
		errs = append(errs, fmt.Errorf("aggregator: Signals needs a Store that is a QuotaStore (%T is not)", c.Store))
	}
	if quota && c.Catalog == nil {
		errs = append(errs, errors.New("aggregator: Catalog is required of a quota authority"))
	}
	if c.Rates != nil && c.Catalog == nil {
		errs = append(errs, errors.New("aggregator: Catalog is required to divide rates (Rates)"))
	}
	if c.FlushEvents < 0 || c.FlushInterval < 0 || c.DedupWindow < 0 || c.SignalInterval < 0 {
		errs = append(errs, errors.New("aggregator: sizes and durations must not be negative"))
	}
	return errors.Join(errs...)
}

// Aggregator consumes the events topic into the store, as a member of a
// consumer group or alone on every partition, and, on a QuotaStore, is
// the quota authority of the keys of its partitions. See the package doc
// for how each event is counted once.
type Aggregator struct {
	cfg     Config
	topics  ingest.Topics
	fetcher *ingest.Fetcher
	dlq     *kafka.Writer
	quota   *authority   // nil: not a quota authority
	quotas  QuotaStore   // cfg.Store, if it is one
	checker EventChecker // cfg.Store, if it is one
	lost    lostState    // the lost-usage topic, on a LostStore (lost.go)
	running atomic.Bool

	stored, duplicates, poison, expired atomic.Uint64
	failures, insertFailures            atomic.Uint64
	deadLetterFailures                  atomic.Uint64
	signals, signalFailures             atomic.Uint64
	rateSignals, rateFailures           atomic.Uint64
	rates                               *rates        // nil without Config.Rates
	batches                             atomic.Uint64 // batches the store took
	insertTime                          prometheus.Histogram
	lags                                lags // consumer lag of the partitions worked on

	ownedMu sync.Mutex
	owned   map[int]uint64 // partitions with a running worker → its ownership's generation
	ownGen  uint64

	// caughtUp closes once every partition found at the start of an
	// AllPartitions run is stored up to the end it had then; behind
	// counts those still short of it.
	caughtUp   chan struct{}
	caughtOnce sync.Once
	behind     atomic.Int64
}

// New returns an Aggregator; Run starts it.
func New(cfg Config) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.GroupID == "" {
		cfg.GroupID = "tollgate-aggregator"
	}
	if cfg.Name == "" {
		cfg.Name = cfg.GroupID
		if cfg.AllPartitions {
			cfg.Name, _ = os.Hostname()
		}
	}
	if cfg.FlushEvents == 0 {
		cfg.FlushEvents = 1 << 16
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 500 * time.Millisecond
	}
	if cfg.DedupWindow == 0 {
		cfg.DedupWindow = 1 << 18
	}
	if cfg.SignalInterval == 0 {
		cfg.SignalInterval = time.Second
	}
	cfg.Logger = logs.For(cfg.Logger, "aggregator")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := cfg.Kafka.Topics()
	a := &Aggregator{cfg: cfg, topics: t, fetcher: cfg.Kafka.Fetcher(), owned: map[int]uint64{},
		caughtUp: make(chan struct{}),
		dlq: &kafka.Writer{Addr: kafka.TCP(cfg.Kafka.Brokers...), Topic: t.DeadLetter, RequiredAcks: kafka.RequireAll,
			BatchTimeout: time.Millisecond, MaxAttempts: 3}}
	a.checker, _ = cfg.Store.(EventChecker)
	a.lost.store, _ = cfg.Store.(LostStore)
	if qs, ok := cfg.Store.(QuotaStore); ok {
		a.quotas, a.quota = qs, newAuthority()
	}
	if cfg.Rates != nil {
		a.rates = newRates(cfg.Name)
	}
	a.insertTime = newInsertHistogram()
	if err := metrics.Register(cfg.Metrics, "aggregator", a.collector()); err != nil {
		return nil, err
	}
	return a, nil
}

// emptyState stands in for the catalog before the config log has one.
var emptyState = catalog.NewState()

func (a *Aggregator) catalog() *catalog.State {
	if c := a.cfg.Catalog(); c != nil {
		return c
	}
	return emptyState
}

// Run consumes until ctx ends, then returns nil: as a member of the
// consumer group, where each generation assigns partitions and each is
// aggregated by its own goroutine until the next rebalance; or, with
// AllPartitions, every partition, each by its own goroutine. Run may be
// called once.
func (a *Aggregator) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("aggregator: Run called twice")
	}
	defer a.dlq.Close()
	sigDone := make(chan struct{})
	go func() { defer close(sigDone); a.publish(ctx) }()
	defer func() { <-sigDone }()
	rateDone := make(chan struct{})
	go func() { defer close(rateDone); a.publishRates(ctx) }()
	defer func() { <-rateDone }()
	lostDone := make(chan struct{})
	go func() { defer close(lostDone); a.followLost(ctx) }()
	defer func() { <-lostDone }()
	if a.cfg.AllPartitions {
		a.runAll(ctx)
		return nil
	}
	return a.runGroup(ctx)
}

// runGroup consumes as a member of the consumer group.
func (a *Aggregator) runGroup(ctx context.Context) error {
	k := a.cfg.Kafka
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: a.cfg.GroupID, Brokers: k.Brokers, Topics: []string{a.topics.Events},
		StartOffset: kafka.FirstOffset, WatchPartitionChanges: true,
		HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second,
		JoinGroupBackoff: time.Second, Timeout: 10 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("aggregator: consumer group: %w", err)
	}
	defer cg.Close()
	var wait time.Duration
	for {
		gen, err := cg.Next(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			a.retry(ctx, &wait, "join the consumer group", "group", a.cfg.GroupID, "err", err)
			continue
		}
		wait = 0
		parts := gen.Assignments[a.topics.Events]
		a.cfg.Logger.Info("generation", "id", gen.ID, "partitions", len(parts))
		for _, pa := range parts {
			w := a.newWorker(pa.ID, pa.Offset, func(next int64) error {
				return gen.CommitOffsets(map[string]map[int]int64{a.topics.Events: {pa.ID: next}})
			})
			gen.Start(func(gctx context.Context) {
				// The worker stops when the generation ends or the
				// aggregator does.
				wctx, cancel := context.WithCancel(gctx)
				defer cancel()
				stop := context.AfterFunc(ctx, cancel)
				defer stop()
				w.run(wctx)
			})
		}
	}
}

// rediscoverEvery is how often an AllPartitions run looks for partitions
// added to the topic.
const rediscoverEvery = time.Minute

// runAll consumes every partition of the topic, with no group, until ctx
// ends.
func (a *Aggregator) runAll(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	started := map[int]bool{}
	first := true
	var wait time.Duration
	for ctx.Err() == nil {
		parts, err := a.fetcher.Partitions(ctx, a.topics.Events)
		if err != nil {
			a.retry(ctx, &wait, "read the events topic's partitions", "err", err)
			continue
		}
		wait = 0
		catchUp := first // CaughtUp waits for the partitions there are at the start
		if first {
			first = false
			a.behind.Store(int64(len(parts)))
			a.cfg.Logger.Info("reading every partition", "partitions", len(parts))
		}
		for _, p := range parts {
			if started[p] {
				continue
			}
			started[p] = true
			w := a.newWorker(p, -1, func(int64) error { return nil })
			w.catchUp = catchUp
			wg.Go(func() { w.run(ctx) })
		}
		backoff.Sleep(ctx, rediscoverEvery)
	}
}

func (a *Aggregator) newWorker(partition int, committed int64, commit func(next int64) error) *partitionWorker {
	return &partitionWorker{a: a, partition: partition, committed: committed, commit: commit,
		win: NewIDWindow(a.cfg.DedupWindow), startEnd: -1}
}

// CaughtUp is closed once the store holds every partition of the topic up
// to the end it had when Run started (records the aggregator drops, as
// copies or to the dead-letter topic, count as held). Only with
// AllPartitions: a member of a consumer group never closes it.
func (a *Aggregator) CaughtUp() <-chan struct{} { return a.caughtUp }

// partitionCaughtUp counts down a partition CaughtUp waits for.
func (a *Aggregator) partitionCaughtUp() {
	if a.behind.Add(-1) == 0 {
		a.caughtOnce.Do(func() { close(a.caughtUp) })
	}
}

// publish sends the state of changed keys every SignalInterval, and at
// once when a key crosses 80% or 100% of its quota.
func (a *Aggregator) publish(ctx context.Context) {
	if a.cfg.Signals == nil {
		return
	}
	t := time.NewTicker(a.cfg.SignalInterval)
	defer t.Stop()
	// UpdateUsage adjustments reach the store from the admin API: the
	// store's view of the keys is merged into their state every second,
	// apart from publishing, so that a store that hangs (each read has a
	// deadline) holds back the adjustments, not the signals.
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		refresh := time.NewTicker(refreshEvery)
		defer refresh.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-refresh.C:
			}
			a.ownedMu.Lock()
			owned := maps.Clone(a.owned)
			a.ownedMu.Unlock()
			for _, p := range slices.Sorted(maps.Keys(owned)) {
				if err := a.refreshQuota(ctx, p, owned[p]); err != nil && ctx.Err() == nil {
					a.cfg.Logger.Warn("refresh quota state", "partition", p, "err", err)
				}
			}
		}
	}()
	defer func() { <-refreshed }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.quota.urgent:
		}
		sigs := a.quota.changed(a.cfg.Now().UnixNano())
		if len(sigs) == 0 {
			continue
		}
		if err := a.cfg.Signals.Write(ctx, sigs); err != nil {
			a.signalFailures.Add(1)
			a.quota.unsend(sigs)
			a.cfg.Logger.Warn("publish quota signals", "signals", len(sigs), "err", err)
			continue
		}
		a.signals.Add(uint64(len(sigs)))
	}
}

// publishRates divides throttled keys' rates every rateEvery and sends
// the divisions that moved (rate.go).
func (a *Aggregator) publishRates(ctx context.Context) {
	if a.rates == nil {
		return
	}
	t := time.NewTicker(rateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sigs := a.rates.divide(a.catalog(), a.cfg.Now().UnixNano())
		if len(sigs) == 0 {
			continue
		}
		if err := a.cfg.Rates.WriteRates(ctx, sigs); err != nil {
			a.rateFailures.Add(1)
			a.rates.unsend(sigs)
			a.cfg.Logger.Warn("publish rate divisions", "signals", len(sigs), "err", err)
			continue
		}
		a.rateSignals.Add(uint64(len(sigs)))
	}
}

// refreshEvery is how often the quota state is read again from the store.
const refreshEvery = time.Second

func (a *Aggregator) own(partition int, owned bool) {
	a.ownedMu.Lock()
	defer a.ownedMu.Unlock()
	if owned {
		a.ownGen++
		a.owned[partition] = a.ownGen
	} else {
		delete(a.owned, partition)
	}
}

// refreshQuota merges what the store holds of a partition's keys into
// their state: UpdateUsage adjustments, and counts never below the
// store's (the state counts events as they are read, the store once they
// are stored).
//
// gen is the partition's ownership read before the store was: the rows
// are merged only if the partition is still owned by that same worker,
// under ownedMu, so that a worker that stopped meanwhile (its keys
// dropped after own(false), which waits for the merge) gets no keys
// back from a read made for it.
func (a *Aggregator) refreshQuota(ctx context.Context, partition int, gen uint64) error {
	rows, now, err := a.quotaUsage(ctx, partition)
	if err != nil {
		return err
	}
	a.ownedMu.Lock()
	defer a.ownedMu.Unlock()
	if a.owned[partition] == gen {
		a.quota.merge(partition, rows, a.catalog(), now)
	}
	return nil
}

// quotaUsage reads what the store holds of a partition's keys for every
// period under way at now, which it returns: the longest period is a
// month, so from the earliest start of a month or week.
//
// The read has a deadline (quotaReadTimeout): a store that hangs must
// not hold the signals back with it (the publisher refreshes from here).
func (a *Aggregator) quotaUsage(ctx context.Context, partition int) (rows []usage.NodeDayCount, now int64, err error) {
	now = a.cfg.Now().UnixNano()
	from := min(catalog.Month.Start(catalog.Month.Index(now)), catalog.Week.Start(catalog.Week.Index(now)))
	ctx, cancel := context.WithTimeout(ctx, quotaReadTimeout)
	defer cancel()
	rows, err = a.quotas.QuotaUsage(ctx, []int{partition}, utc.Day(from))
	return rows, now, err
}

// quotaReadTimeout bounds one read of the quota state from the store.
const quotaReadTimeout = 5 * time.Second

// restoreQuota loads the quota state of a partition's keys from the
// store, if the aggregator is a quota authority.
func (a *Aggregator) restoreQuota(ctx context.Context, partition int) error {
	if a.quota == nil {
		return nil
	}
	rows, now, err := a.quotaUsage(ctx, partition)
	if err != nil {
		return err
	}
	a.quota.restore(partition, rows, a.catalog(), now)
	return nil
}

// Headers of a dead-lettered record, besides its key and value as they
// were.
const (
	HeaderSourceTopic     = "tollgate-source-topic"
	HeaderSourcePartition = "tollgate-source-partition"
	HeaderSourceOffset    = "tollgate-source-offset"
	HeaderError           = "tollgate-error"    // why the record was refused
	HeaderConsumer        = "tollgate-consumer" // Config.Name of the consumer that refused it
)

// deadLetter sends a record the aggregator cannot take to the dead-letter
// topic, as it was, with where it came from, why, and who refused it in
// its headers. A failure to do so is logged and counted; it never holds
// the partition.
func (a *Aggregator) deadLetter(ctx context.Context, partition int, r *ingest.Record, cause error) {
	a.deadLetterFrom(ctx, a.topics.Events, partition, r, cause)
}

// retry counts a failure, logs it and waits: 100ms, doubling up to 5s.
func (a *Aggregator) retry(ctx context.Context, wait *time.Duration, msg string, args ...any) {
	if ctx.Err() != nil {
		return
	}
	a.failures.Add(1)
	backoff.Retry(ctx, a.cfg.Logger, wait, 100*time.Millisecond, 5*time.Second, msg, args...)
}

// Stats counts what an Aggregator did since it started.
type Stats struct {
	// Stored events were in batches the store took.
	Stored uint64
	// Duplicates were copies of an event in the window, dropped. A range
	// read again (after a restart or a rebalance) counts again.
	Duplicates uint64
	// Poison records went to the dead-letter topic (DeadLetterFailures
	// of them could not be written there and were skipped).
	Poison, DeadLetterFailures uint64
	// Expired records were deleted by retention before they were read.
	Expired uint64
	// Failures are failed attempts to read Kafka or to read or write the
	// store, each retried; InsertFailures are those of writing a batch.
	Failures, InsertFailures uint64
	// Signals published, and failed publish attempts (retried).
	Signals, SignalFailures uint64
	// RateSignals published (divisions of keys' rates), and failed
	// publish attempts.
	RateSignals, RateFailures uint64
	// LostRecords of the lost-usage topic this aggregator stored, and
	// the LostRequests they report lost (on a LostStore: lost.go).
	LostRecords, LostRequests uint64
}

// Stats returns the counters.
func (a *Aggregator) Stats() Stats {
	return Stats{Stored: a.stored.Load(), Duplicates: a.duplicates.Load(), Poison: a.poison.Load(),
		DeadLetterFailures: a.deadLetterFailures.Load(), Expired: a.expired.Load(),
		Failures: a.failures.Load(), InsertFailures: a.insertFailures.Load(),
		Signals: a.signals.Load(), SignalFailures: a.signalFailures.Load(),
		RateSignals: a.rateSignals.Load(), RateFailures: a.rateFailures.Load(),
		LostRecords: a.lost.records.Load(), LostRequests: a.lost.requests.Load()}
}
