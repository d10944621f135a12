package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/internal/backoff"
	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/chstore"
)

// Store is where the aggregator keeps usage: chstore.Store.
type Store interface {
	// Watermarks returns, per partition, the last offset each table
	// holds.
	Watermarks(ctx context.Context, partitions []int) (map[int]chstore.Watermark, error)
	// InsertBatch writes what the tables lack of b and returns the new
	// watermark.
	InsertBatch(ctx context.Context, b *chstore.Batch, wm chstore.Watermark) (chstore.Watermark, error)
	// BatchWatermark says what the tables hold of b after a failed
	// InsertBatch(b, before).
	BatchWatermark(ctx context.Context, b *chstore.Batch, before chstore.Watermark) (chstore.Watermark, error)
	// QuotaUsage returns the admitted requests per day, plan, key and
	// enforcer, and the UpdateUsage adjustments, of the partitions'
	// keys from fromDay on.
	QuotaUsage(ctx context.Context, partitions []int, fromDay int64) ([]usage.NodeDayCount, error)
}

var _ Store = (*chstore.Store)(nil)

// SignalWriter publishes quota states: ingest.SignalWriter.
type SignalWriter interface {
	Write(ctx context.Context, signals []schemas.QuotaSignal) error
}

// Config configures an Aggregator.
type Config struct {
	// Kafka names the cluster and the topics. Required.
	Kafka ingest.Kafka
	// Store receives the usage. Required.
	Store Store
	// GroupID is the consumer group of the aggregators. Default
	// "tollgate-aggregator".
	GroupID string
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
	// Required.
	Catalog func() *catalog.State
	// Signals receives the quota state of changed keys. Nil: none.
	Signals SignalWriter
	// SignalInterval is the longest a changed key's state waits before
	// it is published; crossing 80% or 100% of a quota publishes at once.
	// Default 1s.
	SignalInterval time.Duration
	// Logger receives state changes and failures. Nil discards.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time

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
	if c.Store == nil {
		errs = append(errs, errors.New("aggregator: Store is required"))
	}
	if c.Catalog == nil {
		errs = append(errs, errors.New("aggregator: Catalog is required"))
	}
	if c.FlushEvents < 0 || c.FlushInterval < 0 || c.DedupWindow < 0 || c.SignalInterval < 0 {
		errs = append(errs, errors.New("aggregator: sizes and durations must not be negative"))
	}
	return errors.Join(errs...)
}

// Aggregator consumes the events topic into the store, as a member of a
// consumer group, and is the quota authority of the keys of its
// partitions. See the package doc for how each event is counted once.
type Aggregator struct {
	cfg     Config
	topics  ingest.Topics
	fetcher *ingest.Fetcher
	dlq     *kafka.Writer
	quota   *authority

	stored, duplicates, poison, expired atomic.Uint64
	insertFailures, deadLetterFailures  atomic.Uint64
	signals, signalFailures             atomic.Uint64

	ownedMu sync.Mutex
	owned   map[int]bool // partitions with a running worker
}

// New returns an Aggregator; Run starts it.
func New(cfg Config) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.GroupID == "" {
		cfg.GroupID = "tollgate-aggregator"
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
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := cfg.Kafka.Topics()
	return &Aggregator{cfg: cfg, topics: t, fetcher: cfg.Kafka.Fetcher(), quota: newAuthority(), owned: map[int]bool{},
		dlq: &kafka.Writer{Addr: kafka.TCP(cfg.Kafka.Brokers...), Topic: t.DeadLetter, RequiredAcks: kafka.RequireAll,
			BatchTimeout: time.Millisecond, MaxAttempts: 3}}, nil
}

// emptyState stands in for the catalog before the config log has one.
var emptyState = catalog.NewState()

func (a *Aggregator) catalog() *catalog.State {
	if c := a.cfg.Catalog(); c != nil {
		return c
	}
	return emptyState
}

// Run consumes until ctx ends. Each generation of the group assigns
// partitions; each is aggregated by its own goroutine until the next
// rebalance.
func (a *Aggregator) Run(ctx context.Context) error {
	defer a.dlq.Close()
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
	sigDone := make(chan struct{})
	go func() { defer close(sigDone); a.publish(ctx) }()
	defer func() { <-sigDone }()
	var wait time.Duration
	for {
		gen, err := cg.Next(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			a.retry(ctx, &wait, "aggregator: join the consumer group", "group", a.cfg.GroupID, "err", err)
			continue
		}
		wait = 0
		parts := gen.Assignments[a.topics.Events]
		a.cfg.Logger.Info("aggregator: generation", "id", gen.ID, "partitions", len(parts))
		for _, pa := range parts {
			w := &partitionWorker{a: a, partition: pa.ID, committed: pa.Offset, win: ingest.NewIDWindow(a.cfg.DedupWindow),
				commit: func(next int64) error {
					return gen.CommitOffsets(map[string]map[int]int64{a.topics.Events: {pa.ID: next}})
				}}
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

// publish sends the state of changed keys every SignalInterval, and at
// once when a key crosses 80% or 100% of its quota.
func (a *Aggregator) publish(ctx context.Context) {
	if a.cfg.Signals == nil {
		return
	}
	t := time.NewTicker(a.cfg.SignalInterval)
	defer t.Stop()
	// UpdateUsage adjustments reach the store from the admin API: the
	// store's view of the keys is merged into their state every second.
	refresh := time.NewTicker(refreshEvery)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.quota.urgent:
		case <-refresh.C:
			a.ownedMu.Lock()
			parts := slices.Sorted(maps.Keys(a.owned))
			a.ownedMu.Unlock()
			for _, p := range parts {
				if err := a.refreshQuota(ctx, p); err != nil {
					a.cfg.Logger.Warn("aggregator: refresh quota state", "partition", p, "err", err)
				}
			}
			continue
		}
		sigs := a.quota.changed(a.cfg.Now().UnixNano())
		if len(sigs) == 0 {
			continue
		}
		if err := a.cfg.Signals.Write(ctx, sigs); err != nil {
			a.signalFailures.Add(1)
			a.quota.unsend(sigs)
			a.cfg.Logger.Warn("aggregator: publish quota signals", "signals", len(sigs), "err", err)
			continue
		}
		a.signals.Add(uint64(len(sigs)))
	}
}

// refreshEvery is how often the quota state is read again from the store.
const refreshEvery = time.Second

func (a *Aggregator) own(partition int, owned bool) {
	a.ownedMu.Lock()
	defer a.ownedMu.Unlock()
	if owned {
		a.owned[partition] = true
	} else {
		delete(a.owned, partition)
	}
}

// refreshQuota merges what the store holds of a partition's keys into
// their state: UpdateUsage adjustments, and counts never below the
// store's (the state counts events as they are read, the store once they
// are stored).
func (a *Aggregator) refreshQuota(ctx context.Context, partition int) error {
	now := a.cfg.Now().UnixNano()
	from := min(catalog.Month.Start(catalog.Month.Index(now)), catalog.Week.Start(catalog.Week.Index(now)))
	rows, err := a.cfg.Store.QuotaUsage(ctx, []int{partition}, utc.Day(from))
	if err != nil {
		return err
	}
	a.quota.merge(partition, rows, a.catalog(), now)
	return nil
}

// restoreQuota loads the quota state of a partition's keys from the store.
func (a *Aggregator) restoreQuota(ctx context.Context, partition int) error {
	now := a.cfg.Now().UnixNano()
	// The longest period is a month; read from the earliest start.
	from := min(catalog.Month.Start(catalog.Month.Index(now)), catalog.Week.Start(catalog.Week.Index(now)))
	rows, err := a.cfg.Store.QuotaUsage(ctx, []int{partition}, utc.Day(from))
	if err != nil {
		return err
	}
	a.quota.restore(partition, rows, a.catalog(), now)
	return nil
}

// deadLetter sends a record the aggregator cannot take to the dead-letter
// topic, as it was, with where it came from and why in its headers. A
// failure to do so is logged and counted; it never holds the partition.
func (a *Aggregator) deadLetter(ctx context.Context, partition int, r *ingest.Record, cause error) {
	a.poison.Add(1)
	m := kafka.Message{Key: r.Key, Value: r.Value, Headers: []kafka.Header{
		{Key: "tollgate-source-topic", Value: []byte(a.topics.Events)},
		{Key: "tollgate-source-partition", Value: []byte(strconv.Itoa(partition))},
		{Key: "tollgate-source-offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
		{Key: "tollgate-error", Value: []byte(cause.Error())},
	}}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.dlq.WriteMessages(wctx, m); err != nil {
		a.deadLetterFailures.Add(1)
		a.cfg.Logger.Error("aggregator: a poison record could not be written to the dead-letter topic; skipped",
			"partition", partition, "offset", r.Offset, "cause", cause, "err", err)
		return
	}
	a.cfg.Logger.Warn("aggregator: poison record sent to the dead-letter topic", "partition", partition, "offset", r.Offset, "cause", cause)
}

// retry logs a failure and waits: 100ms, doubling up to 5s.
func (a *Aggregator) retry(ctx context.Context, wait *time.Duration, msg string, args ...any) {
	backoff.Retry(ctx, a.cfg.Logger, wait, 100*time.Millisecond, 5*time.Second, msg, args...)
}

// Stats counts what an Aggregator did since it started.
type Stats struct {
	// Stored events were in batches the store took.
	Stored uint64
	// Duplicates were copies of an event in the window, dropped.
	Duplicates uint64
	// Poison records went to the dead-letter topic (DeadLetterFailures
	// of them could not be written there and were skipped).
	Poison, DeadLetterFailures uint64
	// Expired records were deleted by retention before they were read.
	Expired uint64
	// InsertFailures are failed store attempts, each retried.
	InsertFailures uint64
	// Signals published, and failed publish attempts (retried).
	Signals, SignalFailures uint64
}

// Stats returns the counters.
func (a *Aggregator) Stats() Stats {
	return Stats{Stored: a.stored.Load(), Duplicates: a.duplicates.Load(), Poison: a.poison.Load(),
		DeadLetterFailures: a.deadLetterFailures.Load(), Expired: a.expired.Load(), InsertFailures: a.insertFailures.Load(),
		Signals: a.signals.Load(), SignalFailures: a.signalFailures.Load()}
}
