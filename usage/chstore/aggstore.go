package chstore

import (
	"context"
	"fmt"

	"github.com/tollgate/tollgate/aggregator/aggstore"
	"github.com/tollgate/tollgate/schemas"
)

// The Store as the aggregator sees it (aggregator.Store,
// aggregator.QuotaStore, aggregator.EventChecker): Watermarks,
// InsertBatch and BatchWatermark on the aggregator's opaque
// aggstore.Watermark, which is a Watermark here.

// Watermark is Watermarks of one partition.
func (s *Store) Watermark(ctx context.Context, partition int) (aggstore.Watermark, error) {
	wms, err := s.Watermarks(ctx, []int{partition})
	if err != nil {
		return nil, err
	}
	return wms[partition], nil
}

// WriteBatch is InsertBatch with wm as the aggregator holds it (nil:
// NoWatermark).
func (s *Store) WriteBatch(ctx context.Context, b *aggstore.Batch, wm aggstore.Watermark) (aggstore.Watermark, error) {
	w, err := watermarkOf(wm)
	if err != nil {
		return wm, fmt.Errorf("insert batch of partition %d: %w", b.Partition, err)
	}
	return s.InsertBatch(ctx, b, w)
}

// ReadBack is BatchWatermark with before as the aggregator holds it.
func (s *Store) ReadBack(ctx context.Context, b *aggstore.Batch, before aggstore.Watermark) (aggstore.Watermark, error) {
	w, err := watermarkOf(before)
	if err != nil {
		return before, fmt.Errorf("read the watermark of a batch of partition %d: %w", b.Partition, err)
	}
	return s.BatchWatermark(ctx, b, w)
}

// CheckEvent is the package's CheckEvent: events outside the days the
// tables hold are poison for this store.
func (s *Store) CheckEvent(e *schemas.UsageEvent) error { return CheckEvent(e) }

func watermarkOf(wm aggstore.Watermark) (Watermark, error) {
	switch w := wm.(type) {
	case nil:
		return NoWatermark, nil
	case Watermark:
		return w, nil
	default:
		return Watermark{}, fmt.Errorf("%w: a watermark of another store (%T)", ErrInvalidBatch, wm)
	}
}
