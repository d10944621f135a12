package aggregator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/aggregator/aggstore"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/schemas"
)

// partitionWorker aggregates one partition of the events topic for one
// generation of the consumer group, or for a whole run with
// AllPartitions. Only its goroutine uses it.
type partitionWorker struct {
	a         *Aggregator
	partition int
	committed int64 // the group's committed offset at assignment (< 0: none)
	commit    func(next int64) error
	win       *IDWindow

	wm    aggstore.Watermark // what the store holds of this partition
	next  int64              // the offset to fetch next
	batch aggstore.Batch
	due   time.Time // when the batch must be stored; zero while empty
	wait  time.Duration
	// crashed: a test hook stopped the worker as a kill would.
	crashed bool
	// catchUp: the partition is one Aggregator.CaughtUp waits for, until
	// the records before startEnd (its end when the worker started) are
	// accounted for in the store.
	catchUp  bool
	startEnd int64
	// lag is the partition's consumer lag (metrics.go), from start.
	lag *partitionLag
}

// accounted says that the records before next are in the store (or were
// dropped, as copies, poison or by retention).
func (w *partitionWorker) accounted(next int64) {
	if w.lag != nil {
		w.lag.stored.Store(next)
	}
	if w.catchUp && w.startEnd >= 0 && next >= w.startEnd {
		w.catchUp = false
		w.a.partitionCaughtUp()
	}
}

// run aggregates until ctx ends (the generation ended or the aggregator
// stops). What it read and did not store is read again by the next owner,
// from the store's watermark: it never stores after ctx ended.
func (w *partitionWorker) run(ctx context.Context) {
	a := w.a
	if !w.start(ctx) {
		return
	}
	lag, done := a.lags.track(w.partition)
	defer done()
	lag.stored.Store(w.next)
	lag.end.Store(w.next)
	w.lag = lag
	if a.quota != nil {
		a.own(w.partition, true)
		defer func() { a.own(w.partition, false); a.quota.drop(w.partition) }()
	}
	if a.rates != nil {
		defer a.rates.drop(w.partition)
	}
	for ctx.Err() == nil && !w.crashed {
		maxWait := a.cfg.FlushInterval
		if !w.due.IsZero() {
			if maxWait = time.Until(w.due); maxWait <= 0 {
				w.flush(ctx)
				continue
			}
		}
		recs, end, err := a.fetcher.Fetch(ctx, a.topics.Events, w.partition, w.next, max(maxWait, time.Millisecond))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if errors.Is(err, kafka.OffsetOutOfRange) && w.skipExpired(ctx) {
				continue
			}
			a.retry(ctx, &w.wait, "fetch", "partition", w.partition, "offset", w.next, "err", err)
			continue
		}
		w.wait = 0
		w.lag.end.Store(end)
		for i := range recs {
			w.add(ctx, &recs[i])
			if len(w.batch.Events) >= a.cfg.FlushEvents {
				if w.flush(ctx); w.crashed || ctx.Err() != nil {
					return
				}
			}
		}
	}
}

// skipExpired moves the worker past records the topic's retention
// deleted before it read them, as start does for a partition it takes:
// counted as expired and logged, since their usage is lost. Without it a
// worker that retention overtook would ask for the same offset forever.
// false if the offset is not below the partition's first (the error had
// another cause) or the offsets could not be read.
func (w *partitionWorker) skipExpired(ctx context.Context) bool {
	a := w.a
	first, _, err := a.fetcher.Offsets(ctx, a.topics.Events, w.partition)
	if err != nil || w.next >= first {
		return false
	}
	a.expired.Add(uint64(first - w.next))
	a.cfg.Logger.Error("records were deleted by retention before they were aggregated", "partition", w.partition,
		"from", w.next, "first", first, "lost", first-w.next)
	w.next = first
	if len(w.batch.Events) == 0 && w.due.IsZero() {
		w.accounted(w.next)
	}
	return true
}

// start finds where the store left the partition, restores the keys'
// quota state and refills the id window; false if ctx ended first.
func (w *partitionWorker) start(ctx context.Context) bool {
	a := w.a
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, insertTimeout)
		wm, err := a.cfg.Store.Watermark(rctx, w.partition)
		cancel()
		if err != nil {
			a.retry(ctx, &w.wait, "read the store's watermark", "partition", w.partition, "err", err)
			continue
		}
		first, end, err := a.fetcher.Offsets(ctx, a.topics.Events, w.partition)
		if err != nil {
			a.retry(ctx, &w.wait, "read the partition's offsets", "partition", w.partition, "err", err)
			continue
		}
		from := aggstore.Covered(wm) + 1
		if a.cfg.dedupOff {
			// The negative control: trust the group's committed offset
			// and forget what the store holds.
			wm, from = nil, max(w.committed, 0)
		} else if from == 0 && w.committed > 0 {
			from = w.committed // nothing stored: where the group left it
		}
		if from > end {
			a.retry(ctx, &w.wait, "the store holds offsets past the partition's end; was the topic recreated? (then clear the store's usage of it)",
				"partition", w.partition, "stored", from-1, "end", end)
			continue
		}
		if from < first {
			a.expired.Add(uint64(first - from))
			a.cfg.Logger.Error("records were deleted by retention before they were aggregated", "partition", w.partition,
				"from", from, "first", first, "lost", first-from)
			from = first
		}
		w.win.Reset()
		if !a.cfg.dedupOff {
			back := max(first, from-int64(w.win.Size()))
			if err := a.fetcher.EachID(ctx, a.topics.Events, w.partition, back, from, a.cfg.FlushInterval, w.addID); err != nil {
				a.retry(ctx, &w.wait, "read back the ids before the watermark", "partition", w.partition, "err", err)
				continue
			}
		}
		if err := a.restoreQuota(ctx, w.partition); err != nil {
			a.retry(ctx, &w.wait, "restore quota state", "partition", w.partition, "err", err)
			continue
		}
		w.wm, w.next, w.wait = wm, from, 0
		w.batch = aggstore.Batch{Partition: w.partition, Last: from - 1}
		w.due = time.Time{}
		if w.startEnd < 0 {
			w.startEnd = end
		}
		w.accounted(from)
		a.cfg.Logger.Info("partition assigned", "partition", w.partition, "from", from, "watermark", wm)
		return true
	}
	return false
}

// add takes a record into the batch: a usage event not seen in the window
// goes in; a copy is counted and dropped; poison goes to the dead-letter
// topic. Either way the batch covers its offset.
func (w *partitionWorker) add(ctx context.Context, r *ingest.Record) {
	a := w.a
	if w.due.IsZero() {
		w.due = time.Now().Add(a.cfg.FlushInterval)
	}
	w.next, w.batch.Last = r.Offset+1, r.Offset
	w.batch.Events = append(w.batch.Events, schemas.UsageEvent{})
	e := &w.batch.Events[len(w.batch.Events)-1]
	err := errTombstone
	if r.Value != nil {
		err = schemas.DecodeUsageEvent(r.Value, e)
	}
	if err == nil {
		err = plausible(e, a.cfg.Now())
	}
	if err == nil && a.checker != nil {
		err = a.checker.CheckEvent(e)
	}
	switch {
	case err != nil:
		w.batch.Events = w.batch.Events[:len(w.batch.Events)-1]
		a.deadLetter(ctx, w.partition, r, err)
	case !a.cfg.dedupOff && !w.win.Add(e.ID):
		w.batch.Events = w.batch.Events[:len(w.batch.Events)-1]
		a.duplicates.Add(1)
	default:
		w.batch.Offsets = append(w.batch.Offsets, r.Offset)
		// Counted for quota as soon as it is read, not once stored: a
		// signal then waits for no flush. If the batch is never stored
		// (a crash, a rebalance), the partition's next owner restores
		// the state from the store and reads the batch again.
		if a.quota != nil {
			a.quota.count(w.partition, w.batch.Events[len(w.batch.Events)-1:], a.catalog(), a.cfg.Now().UnixNano())
		}
		if a.rates != nil {
			a.rates.count(w.partition, w.batch.Events[len(w.batch.Events)-1:], a.catalog(), a.cfg.Now().UnixNano())
		}
	}
}

// addID adds an id read back before the worker's start to its window.
func (w *partitionWorker) addID(id schemas.EventID) { w.win.Add(id) }

var errTombstone = errors.New("a record without a value")

// MaxAhead is how far ahead of the aggregator's clock an event may be
// dated; later ones go to the dead-letter topic (plausible).
const MaxAhead = 5 * time.Minute

// insertTimeout bounds one insert attempt, and each read of the
// watermark or read-back (every store call has a deadline: a store that
// hangs is then an error that is logged and retried, not a silent
// stall); below the group's rebalance timeout (10s), so that an owner
// finishes before the next one starts.
const insertTimeout = 8 * time.Second

// plausible refuses events no enforcer writes: a record that decodes but
// would corrupt the rollups (a time decades away, negative sizes), and an
// event dated more than MaxAhead after the aggregator's clock: an
// enforcer whose clock is fast. Stored, it would count on a day that has
// not come (and, before the quota state read the period's days only,
// against today's quota). Events from the past are taken: an enforcer's
// spill log hands on hours-old events after an outage, which a slow clock
// cannot be told from.
func plausible(e *schemas.UsageEvent, now time.Time) error {
	const year = int64(365 * 24 * time.Hour)
	switch {
	case e.Time < now.UnixNano()-10*year:
		return errors.New("event time more than 10 years ago")
	case e.Time > now.UnixNano()+int64(MaxAhead):
		return fmt.Errorf("event time %v ahead of the aggregator's clock, more than %v: the clock of enforcer %q is fast (keep enforcers' clocks with NTP)",
			time.Duration(e.Time-now.UnixNano()).Round(time.Second), MaxAhead, e.Node)
	case e.LatencyMicros < 0 || e.BytesIn < 0 || e.BytesOut < 0:
		return errors.New("negative latency or size")
	case e.Status < 100 || e.Status > 599:
		return errors.New("status outside 100-599")
	case e.Count > 1 && e.Admitted():
		// Enforcers count only requests rejected before a key was
		// identified per minute; every admitted request is an event of
		// its own, which is what quota counting relies on.
		return errors.New("an admitted event standing for more than one request")
	}
	return nil
}

// flush stores the batch, retrying until the store takes it or ctx ends,
// then commits the offset to the group. (The batch's quota use was
// counted as its records were read, in add.)
// After a failure the store's watermark is read again, and the batch is
// retried only once it has been: an insert whose answer was lost may have
// landed, and the retry then writes only what the store lacks.
func (w *partitionWorker) flush(ctx context.Context) {
	a := w.a
	if h := a.cfg.hooks.beforeInsert; h != nil && h(w.partition) {
		w.crashed = true // between fetch and insert
		return
	}
	for ctx.Err() == nil && len(w.batch.Events) > 0 {
		// An insert under way is not abandoned when the generation ends:
		// ClickHouse may complete an INSERT whose client gave up, after
		// the next owner read the watermarks. The group waits for this
		// worker to return before it hands the partition on, so
		// finishing the insert here keeps one writer per partition
		// (unless it takes longer than the rebalance timeout).
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), insertTimeout)
		began := time.Now()
		wm, err := a.cfg.Store.WriteBatch(ictx, &w.batch, w.wm)
		a.insertTime.Observe(time.Since(began).Seconds())
		cancel()
		if err == nil {
			w.wm = wm
			a.batches.Add(1)
			break
		}
		if ctx.Err() != nil {
			return
		}
		a.insertFailures.Add(1)
		a.retry(ctx, &w.wait, "store a batch", "partition", w.partition, "events", len(w.batch.Events), "err", err)
		if a.cfg.dedupOff {
			continue
		}
		// The insert may have landed (its answer lost), in part or
		// whole: the batch is not written again before the store has said
		// what it holds of it. A retry from the watermark of before the
		// failure would write again whatever landed.
		w.wm = wm // with what WriteBatch knows it wrote before it failed
		if !w.readBack(ctx) {
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	if h := a.cfg.hooks.afterInsert; h != nil && h(w.partition) {
		w.crashed = true // between insert and commit: the watermark has it
		return
	}
	a.stored.Add(uint64(len(w.batch.Events)))
	if a.cfg.Stored != nil && a.quota != nil {
		a.cfg.Stored(ctx, w.batch.Events)
	}
	if err := w.commit(w.batch.Last + 1); err != nil {
		// Harmless: the store's watermark, not the group's offset, says
		// where the next owner starts.
		a.cfg.Logger.Debug("commit offset", "partition", w.partition, "err", err)
	}
	w.accounted(w.batch.Last + 1)
	clear(w.batch.Events)
	w.batch.Events, w.batch.Offsets = w.batch.Events[:0], w.batch.Offsets[:0]
	w.due, w.wait = time.Time{}, 0
}

// readBack sets the watermark to what the store holds of the batch after
// a failed insert, retrying the read until it succeeds; false if ctx
// ended first.
func (w *partitionWorker) readBack(ctx context.Context) bool {
	a := w.a
	for {
		rctx, cancel := context.WithTimeout(ctx, insertTimeout)
		wm, err := a.cfg.Store.ReadBack(rctx, &w.batch, w.wm)
		cancel()
		if err == nil {
			w.wm = wm
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		a.retry(ctx, &w.wait, "read back what the store holds of a failed batch", "partition", w.partition,
			"last", w.batch.Last, "err", err)
	}
}
