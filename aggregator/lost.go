package aggregator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/aggregator/aggstore"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/internal/backoff"
	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

// LostStore is a Store that also keeps the lost-usage topic's records
// (usage/chstore): usage enforcers report they dropped. An aggregator
// whose Store is one follows every partition of that topic into it.
//
// A record is its (partition, offset): the store keeps a record written
// twice once, so the aggregator neither reads a watermark back after a
// failed insert nor needs to be the topic's only reader. Every aggregator
// of the group reads the whole topic (it has one partition, and records
// are rare): each resumes from the store's offsets and inserts what it
// reads, and two that read the same records store them once.
type LostStore interface {
	// InsertLost stores records, whole or not at all. Records already
	// stored (the same partition and offset) count once.
	InsertLost(ctx context.Context, recs []aggstore.LostRecord) error
	// LostOffsets returns, per partition of the topic, the offset after
	// the last record stored; a partition with none stored is absent.
	LostOffsets(ctx context.Context) (map[int]int64, error)
}

// lostState is what the aggregator keeps of the lost-usage topic.
type lostState struct {
	store LostStore // cfg.Store, if it is one; nil: the topic is not read
	// records and requests count the records stored by this aggregator
	// and the requests they report lost (dead-lettered ones excluded).
	records, requests atomic.Uint64
}

// lostLogLines is how many records of a batch are logged one by one; the
// rest of the batch is one line. A spill log that dropped events of many
// keys reports a record per key, plan, API and stage.
const lostLogLines = 10

// followLost reads every partition of the lost-usage topic into the
// store, one goroutine each, until ctx ends; partitions added to the
// topic are found within rediscoverEvery. Without a LostStore it returns
// at once.
func (a *Aggregator) followLost(ctx context.Context) {
	if a.lost.store == nil {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	started := map[int]bool{}
	var wait time.Duration
	for ctx.Err() == nil {
		parts, err := a.fetcher.Partitions(ctx, a.topics.LostUsage)
		if err != nil {
			a.retry(ctx, &wait, "read the lost-usage topic's partitions", "err", err)
			continue
		}
		wait = 0
		for _, p := range parts {
			if !started[p] {
				started[p] = true
				wg.Go(func() { a.followLostPartition(ctx, p) })
			}
		}
		backoff.Sleep(ctx, rediscoverEvery)
	}
}

// followLostPartition reads one partition of the lost-usage topic from
// the store's offset on: each fetch is a batch, stored (retried until the
// store takes it) before the next fetch, so that the store's highest
// offset has every record before it.
func (a *Aggregator) followLostPartition(ctx context.Context, partition int) {
	var wait time.Duration
	next, ok := a.lostStart(ctx, partition, &wait)
	if !ok {
		return
	}
	a.cfg.Logger.Info("reading lost usage", "partition", partition, "from", next)
	for ctx.Err() == nil {
		recs, _, err := a.fetcher.Fetch(ctx, a.topics.LostUsage, partition, next, a.cfg.FlushInterval)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if errors.Is(err, kafka.OffsetOutOfRange) {
				if first, ok := a.lostExpired(ctx, partition, next); ok {
					next = first
					continue
				}
			}
			a.retry(ctx, &wait, "fetch lost usage", "partition", partition, "offset", next, "err", err)
			continue
		}
		wait = 0
		if len(recs) == 0 {
			continue
		}
		batch := a.lostBatch(ctx, partition, recs)
		if !a.storeLost(ctx, partition, batch) {
			return
		}
		next = recs[len(recs)-1].Offset + 1
	}
}

// lostStart returns the offset to read a partition of the lost-usage
// topic from: the store's, moved past records the topic's retention
// deleted before any aggregator read them (logged: their losses are lost
// too). false if ctx ended first.
func (a *Aggregator) lostStart(ctx context.Context, partition int, wait *time.Duration) (int64, bool) {
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, quotaReadTimeout)
		offs, err := a.lost.store.LostOffsets(rctx)
		cancel()
		if err != nil {
			a.retry(ctx, wait, "read the stored lost usage's offsets", "err", err)
			continue
		}
		first, end, err := a.fetcher.Offsets(ctx, a.topics.LostUsage, partition)
		if err != nil {
			a.retry(ctx, wait, "read the lost-usage partition's offsets", "partition", partition, "err", err)
			continue
		}
		next := offs[partition]
		if next > end {
			a.retry(ctx, wait, "the store holds lost-usage offsets past the partition's end; was the topic recreated? (then delete the partition's rows of lost_usage)",
				"partition", partition, "stored", next-1, "end", end)
			continue
		}
		if next < first {
			a.cfg.Logger.Error("lost-usage records were deleted by retention before they were read", "partition", partition,
				"from", next, "first", first, "records", first-next)
			next = first
		}
		*wait = 0
		return next, true
	}
	return 0, false
}

// lostExpired is skipExpired for the lost-usage topic: the partition's
// first offset, if next is below it.
func (a *Aggregator) lostExpired(ctx context.Context, partition int, next int64) (int64, bool) {
	first, _, err := a.fetcher.Offsets(ctx, a.topics.LostUsage, partition)
	if err != nil || next >= first {
		return 0, false
	}
	a.cfg.Logger.Error("lost-usage records were deleted by retention before they were read", "partition", partition,
		"from", next, "first", first, "records", first-next)
	return first, true
}

// lostBatch decodes records of the lost-usage topic. Those that do not
// decode, or that are dated where no store holds a day, go to the
// dead-letter topic and stay in the batch as markers (Count 0), so that
// their offsets count as read: a restart does not dead-letter them again.
func (a *Aggregator) lostBatch(ctx context.Context, partition int, recs []ingest.Record) []aggstore.LostRecord {
	batch := make([]aggstore.LostRecord, len(recs))
	for i := range recs {
		r, lr := &recs[i], &batch[i]
		lr.Partition, lr.Offset = partition, r.Offset
		err := errTombstone
		if r.Value != nil {
			err = schemas.DecodeLostUsage(r.Value, &lr.Lost)
		}
		if err == nil {
			lr.Day, err = lostDay(&lr.Lost, r.Time)
		}
		if err != nil {
			lr.Lost = schemas.LostUsage{}
			lr.Day = min(max(utc.Day(r.Time), usage.MinDay), usage.MaxDay)
			a.deadLetterFrom(ctx, a.topics.LostUsage, partition, r, err)
		}
	}
	return batch
}

// lostDay is the UTC day a loss counts on: that of its end, or of its
// start; an enforcer's queue-full records carry neither (it counts those
// drops alone, without their times), and count on the day they were
// produced, which is within a few seconds of the drops (the enforcer
// reports after each replay of its spill log, and at least every few
// seconds while it drops).
func lostDay(l *schemas.LostUsage, recordTime int64) (int64, error) {
	day := utc.Day(cmp.Or(l.To, l.From, recordTime))
	if day < usage.MinDay || day > usage.MaxDay {
		return 0, fmt.Errorf("lost usage dated %s, outside %s ... %s", usage.FormatDay(day), usage.FormatDay(usage.MinDay), usage.FormatDay(usage.MaxDay))
	}
	return day, nil
}

// storeLost inserts a batch, each attempt within insertTimeout, retrying
// with backoff until the store takes it (an attempt whose reply was lost
// may have landed: the store keeps a record written twice once), then
// counts and logs it. false if ctx ended first.
func (a *Aggregator) storeLost(ctx context.Context, partition int, batch []aggstore.LostRecord) bool {
	var wait time.Duration
	for {
		ictx, cancel := context.WithTimeout(ctx, insertTimeout)
		err := a.lost.store.InsertLost(ictx, batch)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		a.insertFailures.Add(1)
		a.retry(ctx, &wait, "store lost usage", "partition", partition, "records", len(batch), "err", err)
	}
	var logged, more, moreRequests int64
	for i := range batch {
		l := &batch[i].Lost
		if l.Count == 0 {
			continue // dead-lettered
		}
		a.lost.records.Add(1)
		a.lost.requests.Add(uint64(l.Count))
		if logged < lostLogLines {
			logged++
			a.cfg.Logger.Warn(fmt.Sprintf("usage lost by enforcer %q: %d requests of key %q, reason %s", l.Node, l.Count, l.KeyID, cmp.Or(l.Reason, "unknown")),
				"node", l.Node, "requests", l.Count, "admitted", l.Admitted, "key", l.KeyID, "plan", l.PlanID, "api", l.APIID, "stage", l.Stage,
				"reason", l.Reason, "from", time.Unix(0, l.From).UTC(), "to", time.Unix(0, l.To).UTC(), "partition", partition, "offset", batch[i].Offset)
			continue
		}
		more++
		moreRequests += l.Count
	}
	if more > 0 {
		a.cfg.Logger.Warn(fmt.Sprintf("usage lost: %d more records of %d requests (see /v1/usage/lost)", more, moreRequests),
			"records", more, "requests", moreRequests, "partition", partition)
	}
	return true
}

// deadLetterFrom writes a record of topic (the events, or the lost-usage
// topic) to the dead-letter topic, its headers naming where it came from
// and why (deadLetter is the events' case).
func (a *Aggregator) deadLetterFrom(ctx context.Context, topic string, partition int, r *ingest.Record, cause error) {
	a.poison.Add(1)
	m := kafka.Message{Key: r.Key, Value: r.Value, Headers: []kafka.Header{
		{Key: HeaderSourceTopic, Value: []byte(topic)},
		{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(partition))},
		{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		{Key: HeaderError, Value: []byte(cause.Error())},
		{Key: HeaderConsumer, Value: []byte(a.cfg.Name)},
	}}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.dlq.WriteMessages(wctx, m); err != nil {
		a.deadLetterFailures.Add(1)
		a.cfg.Logger.Error("a poison record could not be written to the dead-letter topic; skipped",
			"topic", topic, "partition", partition, "offset", r.Offset, "reason", cause.Error(), "err", err)
		return
	}
	a.cfg.Logger.Warn("poison record sent to the dead-letter topic", "topic", topic, "partition", partition, "offset", r.Offset, "err", cause)
}
