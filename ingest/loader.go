package ingest

// The Loader fills an embedded usage store (usage/sqlitestore) from the
// events topic, for the fleet nodes whose reports read a SQLite file of
// their own rather than ClickHouse: tollgate reportapi without
// --clickhouse, and tollgate serve --kafka, whose gateway also restores
// its quota counters from that file. (With ClickHouse, the aggregator
// consumes the topic instead; see package aggregator.) Every event must
// count once. The argument:
//
// Records. Each partition is read by one goroutine, which stores its
// batches with LoaderStore.InsertEventsAt: the events of a run of records
// and the offset after the run's last record, in one transaction. So a
// crash anywhere neither loses nor repeats a record: either a batch and
// its offset are stored, or neither is and the next start reads the same
// records again from the stored offset. A retry of a batch whose outcome
// was not learned (the commit went through, its reply did not) is refused
// by the store as stale, and the goroutine starts over from the stored
// offset. A record that does not decode (poison) is counted and skipped,
// its offset stored with the next batch: it never holds up the partition.
// This takes one writer per partition and store: the store refuses an
// offset that is not past its own, not a range that overlaps the stored
// ones, so two Loaders on one store (two processes on one file) could
// store an overlap twice. Run starts one goroutine per partition, once.
//
// Events. An event may still be in two records: a produce request whose
// answer was lost is written again (an enforcer's Sink spills the events
// its producer reports unwritten and replays them, whole, once Kafka
// answers), and Kafka then has the event twice, with one id (a UUIDv7),
// in one partition (the producer picks it from the API key id), usually
// seconds apart. The goroutine remembers the ids of its partition's last
// DedupWindow events (IDWindow: a ring and a hash index) and drops an
// event whose id is there. On start it reads back up to DedupWindow
// records before the stored offset to refill the window, so a restart
// between the two copies opens no gap.
//
// The limit: a copy more than DedupWindow events behind the first is
// counted twice. That takes an enforcer cut off from Kafka, after a write
// whose answer it lost, for longer than the window holds of the other
// enforcers' events (10s at 100k events/s by default); or copies on both
// sides of a change in the partition count (the key then maps to another
// partition, with another window). Records that retention deletes before
// they are loaded are lost, and counted (LoaderStats.Expired).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/internal/backoff"
	"github.com/tollgate/tollgate/schemas"
)

// LoaderStore is where a Loader stores events: with each batch, the
// offset after it (usage/sqlitestore.Store).
type LoaderStore interface {
	// InsertEventsAt stores events, and next as the offset of source's
	// partition, in one transaction. events may be empty. It refuses a
	// next that is not past the stored offset with an error that has a
	// method StaleOffset() bool reporting true.
	InsertEventsAt(ctx context.Context, events []schemas.UsageEvent, source string, partition int, next int64) error
	// Offsets returns the stored offset of each partition of source.
	Offsets(ctx context.Context, source string) (map[int]int64, error)
}

// LoaderConfig configures a Loader.
type LoaderConfig struct {
	// Kafka names the cluster and the events topic. Required.
	Kafka Kafka
	// Store receives the events. Required.
	Store LoaderStore
	// Source names the topic's offsets in the store. Default "events".
	// Loaders of two clusters (or prefixes) into one store need two.
	Source string
	// BatchSize is the most events stored in one transaction. Default
	// 4096, the drainer's largest batch: the store's cost per event
	// falls with the batch up to there (BenchmarkInsertEvents).
	BatchSize int
	// MaxWait is the longest a record read waits for its batch to fill
	// before the batch is stored (and so the longest a fetch waits).
	// Default 200ms: with the enforcers' batching (200ms) and the
	// producer's, a request shows in reports within about a second.
	MaxWait time.Duration
	// DedupWindow is how many recent event ids a partition remembers to
	// drop copies of an event. Default: 1<<20 shared by the partitions
	// known at start (87381 each of 12). Rewrites come within seconds
	// (see above), so the windows must cover seconds of the fleet's
	// events: 1<<20 holds 10s at 100k events/s, in 24-28 MiB (IDWindow;
	// a quiet partition fills its window slowly and uses less). Every
	// start reads back up to a window of records per partition: a larger
	// window makes a longer start. At most 1<<30.
	DedupWindow int
	// RetryMin and RetryMax bound the wait between attempts while Kafka
	// or the store fails (doubling). Defaults 100ms and 5s.
	RetryMin, RetryMax time.Duration
	// Logger receives failures, poison records and expired ranges. Nil
	// discards.
	Logger *slog.Logger
}

// Validate reports every problem with the configuration.
func (c *LoaderConfig) Validate() error {
	var errs []error
	if err := c.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Store == nil {
		errs = append(errs, errors.New("loader: Store is required"))
	}
	if c.BatchSize < 0 || c.DedupWindow < 0 || c.MaxWait < 0 || c.RetryMin < 0 || c.RetryMax < 0 {
		errs = append(errs, errors.New("loader: sizes and durations must not be negative"))
	}
	if c.DedupWindow > maxDedupWindow {
		errs = append(errs, fmt.Errorf("loader: DedupWindow %d is over the most, %d", c.DedupWindow, maxDedupWindow))
	}
	return errors.Join(errs...)
}

// Defaults of LoaderConfig and the loader's fixed settings.
const (
	defaultDedupIDs = 1 << 20
	maxDedupWindow  = 1 << 30 // idWindow's index holds int32s
	// rediscoverEvery is how often Run looks for partitions added to
	// the topic.
	rediscoverEvery = time.Minute
	// exitFlushTimeout bounds the one attempt to store a pending batch
	// when Run's context ends. Skipping it would lose nothing (the
	// records are read again on start), so it is short.
	exitFlushTimeout = 5 * time.Second
)

// Loader loads the events topic into a LoaderStore, each event once (see
// the top of this file for how, and the limit).
type Loader struct {
	cfg     LoaderConfig
	client  *kafka.Client
	topic   string
	running atomic.Bool

	loaded, duplicates, poison, expired, failures atomic.Uint64

	// caughtUp closes once every partition found at start has been
	// stored up to the end it had when its loader started.
	caughtUp     chan struct{}
	caughtOnce   sync.Once
	behind       atomic.Int64
	behindPrimed atomic.Bool
}

// CaughtUp is closed once the store holds every partition up to where it
// ended when Run started.
func (l *Loader) CaughtUp() <-chan struct{} { return l.caughtUp }

func (l *Loader) partitionCaughtUp() {
	if l.behind.Add(-1) == 0 {
		l.caughtOnce.Do(func() { close(l.caughtUp) })
	}
}

// NewLoader returns a Loader; Run starts it.
func NewLoader(cfg LoaderConfig) (*Loader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Source == "" {
		cfg.Source = "events"
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 4096
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 200 * time.Millisecond
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 5 * time.Second
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Loader{cfg: cfg, client: cfg.Kafka.client(), topic: cfg.Kafka.Topics().Events, caughtUp: make(chan struct{})}, nil
}

// LoaderStats counts what a Loader did since it started.
type LoaderStats struct {
	// Loaded events were in batches the store accepted.
	Loaded uint64
	// Duplicates are events dropped because their id was in the window.
	// A range read again after a restart counts again.
	Duplicates uint64
	// Poison records did not decode as usage events; they were skipped.
	Poison uint64
	// Expired records were deleted by retention before they were loaded.
	Expired uint64
	// Failures are failed attempts to read Kafka or write the store,
	// each retried.
	Failures uint64
}

// Stats returns the counters.
func (l *Loader) Stats() LoaderStats {
	return LoaderStats{Loaded: l.loaded.Load(), Duplicates: l.duplicates.Load(), Poison: l.poison.Load(),
		Expired: l.expired.Load(), Failures: l.failures.Load()}
}

// Failures counts failed attempts to read Kafka or write the store.
func (l *Loader) Failures() uint64 { return l.failures.Load() }

// Poison counts records that did not decode and were skipped.
func (l *Loader) Poison() uint64 { return l.poison.Load() }

// Run loads every partition of the events topic until ctx ends, then
// stores what it has read and returns nil. It retries while Kafka or the
// store fails, and finds partitions added to the topic within a minute.
// Run may be called once.
func (l *Loader) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("loader: Run called twice")
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	started := map[int]bool{}
	var wait time.Duration
	for ctx.Err() == nil {
		parts, err := partitionIDs(ctx, l.client, l.topic)
		if err != nil {
			l.retry(ctx, &wait, "loader: read the events topic's partitions", "err", err)
			continue
		}
		wait = 0
		window := l.cfg.DedupWindow
		if window == 0 {
			window = max(defaultDedupIDs/len(parts), 1)
		}
		first := l.behindPrimed.CompareAndSwap(false, true)
		if first {
			l.behind.Store(int64(len(parts)))
		}
		for _, p := range parts {
			if !started[p] {
				started[p] = true
				pl := &partitionLoader{l: l, partition: p, win: NewIDWindow(window), counts: first, startEnd: -1}
				wg.Go(func() { pl.run(ctx) })
			}
		}
		backoff.Sleep(ctx, rediscoverEvery)
	}
	return nil
}

// retry counts a failure, logs it and waits before the next attempt:
// RetryMin after a success, then twice as long each time up to RetryMax.
func (l *Loader) retry(ctx context.Context, wait *time.Duration, msg string, args ...any) {
	if ctx.Err() != nil {
		return
	}
	l.failures.Add(1)
	backoff.Retry(ctx, l.cfg.Logger, wait, l.cfg.RetryMin, l.cfg.RetryMax, msg, args...)
}

// errRestart ends a partition's follow loop: its position must be read
// from the store and the topic again.
var errRestart = errors.New("restart the partition")

var errTombstone = errors.New("no value (a tombstone)")

// partitionLoader loads one partition. Only its goroutine uses it.
type partitionLoader struct {
	l         *Loader
	partition int
	win       *IDWindow

	next  int64 // the offset to fetch next
	done  int64 // the records before it are accounted for in the store
	batch []schemas.UsageEvent
	// due is when the records read since done must be stored; zero when
	// there are none (next == done).
	due          time.Time
	wait         time.Duration // backoff
	poisonLogged bool          // since the last batch stored
	// counts: this partition is one CaughtUp waits for, until done
	// reaches startEnd (the partition's end at the first start).
	counts   bool
	startEnd int64
}

func (p *partitionLoader) checkCaughtUp() {
	if p.counts && p.startEnd >= 0 && p.done >= p.startEnd {
		p.counts = false
		p.l.partitionCaughtUp()
	}
}

// run loads the partition until ctx ends.
func (p *partitionLoader) run(ctx context.Context) {
	for ctx.Err() == nil {
		if !p.start(ctx) {
			break
		}
		err := p.follow(ctx)
		if errors.Is(err, errRestart) {
			continue
		}
		if p.next > p.done {
			// One attempt to store what was read: not needed (it would
			// be read again), but it spares the next start a repeat.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), exitFlushTimeout)
			if err := p.insert(fctx); err != nil {
				p.l.cfg.Logger.Info("loader: store the last batch before stopping", "partition", p.partition, "err", err)
			}
			cancel()
		}
	}
}

// start sets the position from the store and the topic and refills the
// window; it retries until it succeeds or ctx ends (false).
func (p *partitionLoader) start(ctx context.Context) bool {
	l := p.l
	for ctx.Err() == nil {
		stored, err := l.cfg.Store.Offsets(ctx, l.cfg.Source)
		if err != nil {
			l.retry(ctx, &p.wait, "loader: read the stored offsets", "partition", p.partition, "err", err)
			continue
		}
		first, end, err := offsets(ctx, l.client, l.topic, p.partition)
		if err != nil {
			l.retry(ctx, &p.wait, "loader: read the partition's offsets", "partition", p.partition, "err", err)
			continue
		}
		off, ok := stored[p.partition]
		p.win.Reset()
		clear(p.batch)
		p.batch, p.due = p.batch[:0], time.Time{}
		switch {
		case !ok:
			p.next, p.done = first, first
		case off > end:
			// The topic was recreated, or a replica that was behind
			// became the leader. The store refuses offsets below its
			// own, so wait until the partition is past it.
			l.retry(ctx, &p.wait, "loader: the stored offset is past the partition's end; was the topic recreated? (if so, use another Source, or delete the source's rows from the store's source_offsets)",
				"partition", p.partition, "stored", off, "end", end)
			continue
		case off < first:
			l.expired.Add(uint64(first - off))
			l.cfg.Logger.Error("loader: records were deleted by retention before they were loaded", "partition", p.partition,
				"stored", off, "first", first, "lost", first-off)
			// Stored with the first batch, so the gap counts once.
			p.next, p.done, p.due = first, off, time.Now()
		default:
			if err := refillWindow(ctx, l.client, l.topic, p.partition, first, off, l.cfg.MaxWait, p.win); err != nil {
				l.retry(ctx, &p.wait, "loader: read back the ids before the stored offset", "partition", p.partition, "err", err)
				continue
			}
			p.next, p.done = off, off
		}
		p.wait = 0
		if p.startEnd < 0 {
			p.startEnd = end
		}
		p.checkCaughtUp()
		return true
	}
	return false
}

// follow reads records and stores them in batches until ctx ends or the
// position must be read again (errRestart).
func (p *partitionLoader) follow(ctx context.Context) error {
	l := p.l
	for {
		wait := l.cfg.MaxWait
		if p.next > p.done {
			if wait = time.Until(p.due); wait <= 0 {
				if err := p.store(ctx); err != nil {
					return err
				}
				continue
			}
		}
		recs, _, err := fetch(ctx, l.client, l.topic, p.partition, p.next, max(wait, time.Millisecond))
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, kafka.OffsetOutOfRange):
			// Retention deleted the records at next: store what was
			// read, then start again from the topic's first offset.
			if p.next > p.done {
				if err := p.store(ctx); err != nil {
					return err
				}
			}
			return errRestart
		case err != nil:
			l.retry(ctx, &p.wait, "loader: fetch", "partition", p.partition, "offset", p.next, "err", err)
			continue
		}
		p.wait = 0
		for i := range recs {
			p.add(&recs[i])
			if len(p.batch) >= l.cfg.BatchSize {
				if err := p.store(ctx); err != nil {
					return err
				}
			}
		}
	}
}

// add takes a record into the batch, unless it is poison or a copy of an
// event in the window.
func (p *partitionLoader) add(r *record) {
	l := p.l
	if p.next == p.done {
		p.due = time.Now().Add(l.cfg.MaxWait)
	}
	p.next = r.offset + 1
	p.batch = append(p.batch, schemas.UsageEvent{})
	e := &p.batch[len(p.batch)-1]
	err := errTombstone
	if r.value != nil {
		err = schemas.DecodeUsageEvent(r.value, e)
	}
	switch {
	case err != nil:
		p.batch = p.batch[:len(p.batch)-1]
		l.poison.Add(1)
		if !p.poisonLogged { // the first of a batch: a bad producer could write millions
			p.poisonLogged = true
			l.cfg.Logger.Warn("loader: skipped a record that is not a usage event (logged once a batch; see LoaderStats.Poison)",
				"partition", p.partition, "offset", r.offset, "err", err)
		}
	case !p.win.Add(e.ID):
		p.batch = p.batch[:len(p.batch)-1]
		l.duplicates.Add(1)
	}
}

// store stores the batch and the position, retrying until the store takes
// them; it returns ctx's error, or errRestart if the store refused the
// position as stale.
func (p *partitionLoader) store(ctx context.Context) error {
	for {
		err := p.insert(ctx)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errRestart):
			return err
		}
		p.l.retry(ctx, &p.wait, "loader: store a batch", "partition", p.partition, "events", len(p.batch), "err", err)
	}
}

// insert makes one attempt to store the batch and the position.
func (p *partitionLoader) insert(ctx context.Context) error {
	l := p.l
	err := l.cfg.Store.InsertEventsAt(ctx, p.batch, l.cfg.Source, p.partition, p.next)
	var stale interface{ StaleOffset() bool }
	switch {
	case errors.As(err, &stale) && stale.StaleOffset():
		// Stored already, by an attempt whose reply was lost.
		l.cfg.Logger.Warn("loader: the store has this range already; reading its offset again", "partition", p.partition, "err", err)
		return errRestart
	case err != nil:
		return err
	}
	l.loaded.Add(uint64(len(p.batch)))
	clear(p.batch) // drop the strings
	p.batch, p.done, p.due, p.wait, p.poisonLogged = p.batch[:0], p.next, time.Time{}, 0, false
	p.checkCaughtUp()
	return nil
}
