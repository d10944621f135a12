package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"

	"github.com/tollgate/tollgate/aggregator/aggstore"
)

// The Store as the aggregator sees it (aggregator.Store), for the fleet
// nodes that keep a usage store of their own: a batch is InsertEventsAt
// of its events and the offset after it, under the source EventsSource,
// in one transaction. The aggregator's watermark is a NextOffset.

// EventsSource is the source under which the aggregator's batches store
// their offsets (source_offsets): the events topic. ("events" is also
// what the loader that came before the aggregator stored, so a usage.db
// it filled continues where it stopped.)
const EventsSource = "events"

// NextOffset is the aggregator's watermark (aggstore.Watermark) on this
// store: the offset of the partition's next record to store, as
// source_offsets holds it (0: none stored).
type NextOffset int64

// Covered is the last offset stored, -1 if none.
func (n NextOffset) Covered() int64 { return int64(n) - 1 }

// Watermark returns the stored offset of partition.
func (s *Store) Watermark(ctx context.Context, partition int) (aggstore.Watermark, error) {
	var next int64
	err := s.db.QueryRowContext(ctx, storedOffsetSQL, EventsSource, partition).Scan(&next)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return NextOffset(0), nil
	case err != nil:
		return nil, fmt.Errorf("read the offset of %s/%d: %w", EventsSource, partition, err)
	}
	return NextOffset(next), nil
}

// WriteBatch stores the events of b past wm (nil: every one) and
// b.Last+1 as the partition's offset, in one transaction, and returns
// that offset. A batch wm says is stored whole writes nothing. A batch
// whose offset is not past the stored one (an earlier attempt's reply
// was lost, or wm is behind the store) writes nothing and fails with a
// *StaleOffsetError: ReadBack then says where the store is.
func (s *Store) WriteBatch(ctx context.Context, b *aggstore.Batch, wm aggstore.Watermark) (aggstore.Watermark, error) {
	if _, ok := wm.(NextOffset); !ok && wm != nil {
		return wm, fmt.Errorf("insert batch of partition %d: a watermark of another store (%T)", b.Partition, wm)
	}
	if len(b.Offsets) != len(b.Events) {
		return wm, fmt.Errorf("insert batch of partition %d: %d offsets for %d events", b.Partition, len(b.Offsets), len(b.Events))
	}
	covered := aggstore.Covered(wm)
	if covered >= b.Last {
		return wm, nil
	}
	from := sort.Search(len(b.Offsets), func(i int) bool { return b.Offsets[i] > covered })
	if err := s.InsertEventsAt(ctx, b.Events[from:], EventsSource, b.Partition, b.Last+1); err != nil {
		return wm, err
	}
	return NextOffset(b.Last + 1), nil
}

// ReadBack returns the stored offset of b's partition, after a failed
// WriteBatch.
func (s *Store) ReadBack(ctx context.Context, b *aggstore.Batch, _ aggstore.Watermark) (aggstore.Watermark, error) {
	return s.Watermark(ctx, b.Partition)
}
