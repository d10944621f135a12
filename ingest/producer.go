package ingest

import (
	"context"
	"errors"
	"fmt"
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
// Retries may write an event twice; its id lets the consumer drop the
// second copy.
type EventProducer struct {
	w     *kafka.Writer
	msgs  []kafka.Message
	arena []byte
}

// NewEventProducer returns a producer for k's events topic.
func NewEventProducer(k Kafka) (*EventProducer, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	k = k.withDefaults()
	return &EventProducer{w: &kafka.Writer{
		Addr:         kafka.TCP(k.Brokers...),
		Topic:        k.Topics().Events,
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		// BatchSize is per partition, and kafka-go pre-sizes every
		// partition's batch to it: 1<<16 cost ~120 MB per call with 12
		// partitions. A drainer batch larger than it is split into
		// requests sent in order, so 1<<10 loses nothing (2x faster at
		// 8192 events per call, 10x at 1000; see BENCHMARKS.md).
		BatchSize:    1 << 10,
		BatchBytes:   16 << 20,
		BatchTimeout: time.Millisecond,
		MaxAttempts:  3,
		WriteTimeout: k.Timeout,
		ReadTimeout:  k.Timeout,
	}}, nil
}

// Produce writes events and returns those that were not written (every
// write's result is checked), with the first error.
// Not safe for concurrent use: it reuses its buffers.
func (p *EventProducer) Produce(ctx context.Context, events []schemas.UsageEvent) (failed []schemas.UsageEvent, err error) {
	if len(events) == 0 {
		return nil, nil
	}
	p.arena = p.arena[:0]
	offs := make([]int, len(events)+1)
	for i := range events {
		offs[i] = len(p.arena)
		p.arena = append(p.arena, events[i].KeyID...)
		p.arena = schemas.AppendUsageEvent(p.arena, &events[i])
	}
	offs[len(events)] = len(p.arena)
	p.msgs = p.msgs[:0]
	for i := range events {
		k := len(events[i].KeyID)
		rec := p.arena[offs[i]:offs[i+1]:offs[i+1]]
		m := kafka.Message{Value: rec[k:]}
		if k > 0 {
			m.Key = rec[:k:k]
		}
		p.msgs = append(p.msgs, m)
	}
	err = p.w.WriteMessages(ctx, p.msgs...)
	clear(p.msgs) // drop references into the arena
	if err != nil {
		// A write that gave up on its context may still be queued in
		// the writer, reading the arena later: leave it that one.
		p.arena = nil
	}
	var werrs kafka.WriteErrors
	switch {
	case err == nil:
		return nil, nil
	case errors.As(err, &werrs):
		for i, e := range werrs {
			if e != nil {
				failed = append(failed, events[i])
			}
		}
		return failed, fmt.Errorf("produce events: %d of %d not written: %w", len(failed), len(events), werrs[firstErr(werrs)])
	default:
		return events, fmt.Errorf("produce events: %w", err)
	}
}

func firstErr(errs kafka.WriteErrors) int {
	for i, e := range errs {
		if e != nil {
			return i
		}
	}
	return 0
}

// Close flushes and closes the producer.
func (p *EventProducer) Close() error { return p.w.Close() }
