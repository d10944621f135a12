package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/tollgate/tollgate/schemas"
)

// upsertOffsetSQL moves a (source, partition)'s offset forward, or
// changes nothing (no row affected) if the stored one is not behind it.
const upsertOffsetSQL = `INSERT INTO source_offsets (source, partition, next_offset) VALUES (?1, ?2, ?3)
ON CONFLICT (source, partition) DO UPDATE SET next_offset = excluded.next_offset
WHERE excluded.next_offset > source_offsets.next_offset`

const storedOffsetSQL = `SELECT next_offset FROM source_offsets WHERE source = ? AND partition = ?`

const offsetsSQL = `SELECT partition, next_offset FROM source_offsets WHERE source = ?`

// sourceOffset is where a batch ends in the log it was read from.
type sourceOffset struct {
	source    string
	partition int
	next      int64 // the offset of the record after the batch's last
}

// StaleOffsetError is the error (wrapped) of an InsertEventsAt whose
// offset is not past the one stored: the records before the stored
// offset were stored already, by an earlier attempt whose success its
// caller did not learn (a lost reply), or by another writer. Nothing of
// the batch was stored. The caller should read Offsets again and continue
// from there.
type StaleOffsetError struct {
	Source    string
	Partition int
	Next      int64 // the refused offset
	Stored    int64
}

func (e *StaleOffsetError) Error() string {
	return fmt.Sprintf("stale offset %d for %s/%d: %d is stored", e.Next, e.Source, e.Partition, e.Stored)
}

// StaleOffset reports true: callers that declare their own small store
// interface recognise the error by this method (errors.As with an
// interface{ StaleOffset() bool }) without importing this package.
func (e *StaleOffsetError) StaleOffset() bool { return true }

// recordOffset stores at in the transaction open on conn, or returns a
// *StaleOffsetError.
func recordOffset(ctx context.Context, conn *sql.Conn, at *sourceOffset) error {
	// Not prepared on the writer, whose statements are those every
	// InsertEvents uses: unprepared it took ~13µs in a transaction, not
	// ~3µs, once per batch of a transaction of ~1ms (100 events) to ~5ms
	// (4096) on a 2-vCPU VM.
	res, err := conn.ExecContext(ctx, upsertOffsetSQL, at.source, at.partition, at.next)
	if err != nil {
		return fmt.Errorf("record offset: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("record offset: %w", err)
	}
	if n == 1 {
		return nil
	}
	e := &StaleOffsetError{Source: at.source, Partition: at.partition, Next: at.next}
	if err := conn.QueryRowContext(ctx, storedOffsetSQL, at.source, at.partition).Scan(&e.Stored); err != nil {
		return fmt.Errorf("record offset: read the stored offset: %w", err)
	}
	return e
}

// InsertEventsAt stores a batch of events read from a partitioned log
// (the Kafka events topic) together with the position after it: the
// events as InsertEvents stores them (same rows, same rollups) and next,
// the offset of the record after the batch's last, as the partition's
// offset of source, all in one transaction. Events may be empty: a range
// of records with nothing to store (duplicates, records that do not
// decode) still moves the offset.
//
// next must be past the stored offset of (source, partition): otherwise
// nothing is stored and the error wraps a *StaleOffsetError. A loader
// that reads from Offsets and stores with InsertEventsAt therefore stores
// each record's events once, even across crashes and retries of a batch
// whose outcome it did not learn: a range whose offset is stored is never
// read again, and a second write of it is refused. That takes one writer
// per (source, partition): the check is on where a batch ends, not where
// it starts, so two writers whose ranges overlap would both store the
// overlap.
//
// How this meets the per-batch dedup of InsertEvents (a batch whose first
// event's id is stored as a batch's first id is written no more): with
// offsets stored in the same transaction, a batch is never offered twice,
// so that dedup only matters when the batch's first event is itself a
// duplicate the loader did not catch (a copy further back than its window
// of recent ids, or an event InsertEvents stored too). That event is then
// certainly stored: InsertEventsAt drops it and stores the rest of the
// batch under the next event's id, instead of skipping the whole batch as
// InsertEvents would. Events are not otherwise deduplicated here: the
// caller drops duplicates before batching them.
func (s *Store) InsertEventsAt(ctx context.Context, events []schemas.UsageEvent, source string, partition int, next int64) error {
	if next < 0 {
		return fmt.Errorf("insert events at %s/%d: negative offset %d", source, partition, next)
	}
	select {
	case s.writeSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("insert events at %s/%d: %w", source, partition, ctx.Err())
	}
	defer func() { <-s.writeSem }()

	at := sourceOffset{source: source, partition: partition, next: next}
	for {
		repeated, err := s.insertBatch(ctx, events, &at)
		if err != nil {
			return fmt.Errorf("insert events at %s/%d: %w", source, partition, err)
		}
		if !repeated {
			return nil
		}
		events = events[1:] // stored already: see above
	}
}

// Offsets returns the stored offset of each partition of source, the one
// of the record to read next; a partition never stored is not in the map.
func (s *Store) Offsets(ctx context.Context, source string) (map[int]int64, error) {
	rows, err := s.db.QueryContext(ctx, offsetsSQL, source)
	if err != nil {
		return nil, fmt.Errorf("read offsets of %s: %w", source, err)
	}
	defer rows.Close()
	out := map[int]int64{}
	for rows.Next() {
		var (
			p    int
			next int64
		)
		if err := rows.Scan(&p, &next); err != nil {
			return nil, fmt.Errorf("read offsets of %s: %w", source, err)
		}
		out[p] = next
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read offsets of %s: %w", source, err)
	}
	return out, nil
}
