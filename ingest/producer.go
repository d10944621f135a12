package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/schemas"
)

// EventProducer writes usage events to the events topic: each event one
// record, keyed by its API key id (murmur2, as Java clients partition, so
// that every tool agrees which partition holds a key), acknowledged by
// all in-sync replicas. The value is the event's protobuf encoding
// (schemas.AppendUsageEvent).
//
// It sends one produce request per partition (split at maxProduceBytes)
// with kafka.Client, not kafka.Writer: a Writer keeps a batch whose
// context ended queued and retries it on its own, so a caller that gives
// up on a slow broker (the Sink, which then spills the batch) would leave
// a growing backlog in the writer that delays recovery and writes every
// abandoned batch a second time. Here a request that failed or timed out
// is over; the caller decides what to do with its events.
//
// Retries may write an event twice (a request whose answer was lost);
// its id lets the consumer drop the second copy.
type EventProducer struct {
	c     *kafka.Client
	tr    *freshTransport
	topic string

	parts      []int // the topic's partitions, from metadata
	partsAt    time.Time
	partsEvery time.Duration

	// Scratch, reused between calls.
	arena  []byte
	offs   []int
	byPart map[int][]int // event indexes per partition
}

// NewEventProducer returns a producer for k's events topic.
func NewEventProducer(k Kafka) (*EventProducer, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	k = k.withDefaults()
	tr := newFreshTransport(k.Timeout)
	return &EventProducer{c: &kafka.Client{Addr: kafka.TCP(k.Brokers...), Timeout: k.Timeout, Transport: tr}, tr: tr,
		topic: k.Topics().Events, partsEvery: time.Minute, byPart: map[int][]int{}}, nil
}

// partitions returns the topic's partitions, read again every minute or
// after a failed write.
func (p *EventProducer) partitions(ctx context.Context) ([]int, error) {
	if p.parts != nil && time.Since(p.partsAt) < p.partsEvery {
		return p.parts, nil
	}
	parts, err := partitionIDs(ctx, p.c, p.topic)
	if err != nil {
		return nil, err
	}
	p.parts, p.partsAt = parts, time.Now()
	return parts, nil
}

// Produce writes events and returns those that were not written (every
// partition's answer is checked), with the first error. Partitions are
// written concurrently; within one, events keep their order.
// Not safe for concurrent use: it reuses its buffers.
func (p *EventProducer) Produce(ctx context.Context, events []schemas.UsageEvent) (failed []schemas.UsageEvent, err error) {
	if len(events) == 0 {
		return nil, nil
	}
	parts, err := p.partitions(ctx)
	if err != nil {
		return events, fmt.Errorf("produce events: %w", err)
	}
	p.arena, p.offs = p.arena[:0], p.offs[:0]
	for k := range p.byPart {
		p.byPart[k] = p.byPart[k][:0]
	}
	var bal kafka.Murmur2Balancer
	for i := range events {
		p.offs = append(p.offs, len(p.arena))
		p.arena = append(p.arena, events[i].KeyID...)
		p.arena = schemas.AppendUsageEvent(p.arena, &events[i])
		key := p.arena[p.offs[i] : p.offs[i]+len(events[i].KeyID)]
		part := bal.Balance(kafka.Message{Key: key}, parts...)
		p.byPart[part] = append(p.byPart[part], i)
	}
	p.offs = append(p.offs, len(p.arena))

	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		errs   []error
		failIx []int
	)
	for part, idx := range p.byPart {
		if len(idx) == 0 {
			continue
		}
		wg.Go(func() {
			for start := 0; start < len(idx); {
				end, size := start, 0
				recs := make([]kafka.Record, 0, len(idx)-start)
				for end < len(idx) && (end == start || size < maxProduceBytes) {
					i := idx[end]
					k := len(events[i].KeyID)
					rec := p.arena[p.offs[i]:p.offs[i+1]:p.offs[i+1]]
					r := kafka.Record{Value: kafka.NewBytes(rec[k:])}
					if k > 0 {
						r.Key = kafka.NewBytes(rec[:k:k])
					}
					recs = append(recs, r)
					size += len(rec) + 32
					end++
				}
				werr := p.write(ctx, part, recs)
				if werr != nil {
					// The partition's later events would land before
					// these on a retry: fail them too, in order.
					mu.Lock()
					errs = append(errs, werr)
					failIx = append(failIx, idx[start:]...)
					mu.Unlock()
					return
				}
				start = end
			}
		})
	}
	wg.Wait()
	if len(errs) == 0 {
		return nil, nil
	}
	// A request that gave up on its context may still be in the
	// transport, reading the arena later: leave it that one.
	p.arena = nil
	p.parts = nil // the leader may have moved: read metadata again
	slices.Sort(failIx)
	for _, i := range failIx {
		failed = append(failed, events[i])
	}
	return failed, fmt.Errorf("produce events: %d of %d not written: %w", len(failed), len(events), errors.Join(errs...))
}

func (p *EventProducer) write(ctx context.Context, part int, recs []kafka.Record) error {
	res, err := p.c.Produce(ctx, &kafka.ProduceRequest{Topic: p.topic, Partition: part, RequiredAcks: kafka.RequireAll,
		Records: kafka.NewRecordReader(recs...)})
	switch {
	case err != nil:
		return fmt.Errorf("partition %d: %w", part, err)
	case res.Error != nil:
		return fmt.Errorf("partition %d: %w", part, res.Error)
	}
	for i, e := range res.RecordErrors {
		return fmt.Errorf("partition %d record %d: %w", part, i, e)
	}
	return nil
}

// Close closes the producer's connections.
func (p *EventProducer) Close() error {
	p.tr.close()
	return nil
}
