package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/schemas"
)

// record is one Kafka record as the readers here use it.
type record struct {
	offset     int64
	key, value []byte // value nil: a tombstone
	// txn is the transaction the record belongs to (the config topic's
	// txnHeader; see configtxn.go), "" if none.
	txn string
}

// fetchBytes is how much one fetch asks for.
const fetchBytes = 8 << 20

// fetch long-polls one partition from offset and returns its records
// (possibly none, after maxWait) and the partition's high watermark.
func fetch(ctx context.Context, c *kafka.Client, topic string, partition int, offset int64, maxWait time.Duration) ([]record, int64, error) {
	return fetchUpTo(ctx, c, topic, partition, offset, maxWait, fetchBytes)
}

// fetchUpTo is fetch, asking for up to maxBytes.
func fetchUpTo(ctx context.Context, c *kafka.Client, topic string, partition int, offset int64, maxWait time.Duration, maxBytes int) ([]record, int64, error) {
	var out []record
	hwm, err := fetchEach(ctx, c, topic, partition, offset, maxWait, maxBytes, nil,
		func(off, _ int64, key, value []byte, txn string) {
			out = append(out, record{offset: off, key: key, value: value, txn: txn})
		})
	return out, hwm, err
}

// fetchEach fetches one partition from offset, as fetchUpTo, and calls
// add for each record at or past offset, in order, with its timestamp
// (Unix nanoseconds). With an arena, keys
// and values are cut from its chunks (one allocation for many records,
// which then share it); without, each is an allocation of its own.
func fetchEach(ctx context.Context, c *kafka.Client, topic string, partition int, offset int64, maxWait time.Duration, maxBytes int,
	a *arena, add func(off, ts int64, key, value []byte, txn string)) (int64, error) {
	res, err := c.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: partition, Offset: offset,
		MinBytes: 1, MaxBytes: int64(maxBytes), MaxWait: maxWait})
	if err != nil {
		return 0, fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, offset, err)
	}
	if res.Error != nil {
		return 0, fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, offset, res.Error)
	}
	if res.Records == nil {
		return res.HighWatermark, nil
	}
	if c, ok := res.Records.(io.Closer); ok {
		defer c.Close()
	}
	for {
		r, err := res.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return res.HighWatermark, nil
		}
		if err != nil {
			return res.HighWatermark, fmt.Errorf("fetch %s/%d: read record: %w", topic, partition, err)
		}
		if r.Offset < offset {
			continue // a batch may start before the offset asked for
		}
		var txn string
		for _, h := range r.Headers {
			if h.Key == txnHeader {
				txn = string(h.Value)
			}
		}
		var key, value []byte
		if r.Key != nil {
			if key, err = a.readAll(r.Key); err != nil {
				return res.HighWatermark, err
			}
		}
		if r.Value != nil {
			if value, err = a.readAll(r.Value); err != nil {
				return res.HighWatermark, err
			}
		}
		add(r.Offset, r.Time.UnixNano(), key, value, txn)
	}
}

// arenaChunk is the size of an arena's chunks: a few hundred usage
// events.
const arenaChunk = 64 << 10

// arena hands out byte slices cut from larger chunks. A nil arena
// allocates each slice on its own.
type arena struct{ free []byte }

// readAll reads b whole into a slice of the arena (non-nil, also when
// empty, as kafka.ReadAll; its capacity ends with it).
func (a *arena) readAll(b kafka.Bytes) ([]byte, error) {
	if a == nil {
		v, err := kafka.ReadAll(b)
		if v == nil && err == nil {
			v = []byte{} // an empty value is not a tombstone
		}
		return v, err
	}
	n := b.Len()
	if n > len(a.free) {
		if n > arenaChunk/4 {
			v := make([]byte, n) // a large one alone, not to waste a chunk's rest
			_, err := io.ReadFull(b, v)
			return v, err
		}
		a.free = make([]byte, arenaChunk)
	}
	v := a.free[:n:n]
	a.free = a.free[n:]
	_, err := io.ReadFull(b, v)
	return v, err
}

// offsets returns the first and next (high watermark) offsets of a
// partition.
func offsets(ctx context.Context, c *kafka.Client, topic string, partition int) (first, next int64, err error) {
	res, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		topic: {kafka.FirstOffsetOf(partition), kafka.LastOffsetOf(partition)}}})
	if err != nil {
		return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, err)
	}
	for _, p := range res.Topics[topic] {
		if p.Partition == partition {
			if p.Error != nil {
				return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, p.Error)
			}
			return p.FirstOffset, p.LastOffset, nil
		}
	}
	return 0, 0, fmt.Errorf("list offsets of %s/%d: partition not in the answer", topic, partition)
}

// partitionIDs returns the ids of a topic's partitions, from metadata.
func partitionIDs(ctx context.Context, c *kafka.Client, topic string) ([]int, error) {
	meta, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("read metadata of %s: %w", topic, err)
	}
	var ids []int
	for _, t := range meta.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("read metadata of %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			ids = append(ids, p.ID)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("topic %s has no partitions (run tollgate migrate kafka)", topic)
	}
	// Sorted: murmur2 maps a key to an index into this list, and every
	// producer must agree on it.
	slices.Sort(ids)
	return ids, nil
}

// Record is one Kafka record as a Fetcher returns it.
type Record struct {
	Offset int64
	// Time is the record's timestamp, Unix nanoseconds: when its
	// producer wrote it (or when the broker appended it, on a topic with
	// message.timestamp.type=LogAppendTime).
	Time       int64
	Key, Value []byte // Value nil: a tombstone
}

// Fetcher reads partitions by offset, for consumers that keep their own
// position (the aggregator keeps it in ClickHouse). Its client replaces
// its connections after a failure in transit (see freshTransport).
type Fetcher struct{ c *kafka.Client }

// Fetcher returns a Fetcher on k's cluster.
func (k Kafka) Fetcher() *Fetcher { return &Fetcher{c: k.client()} }

// Fetch long-polls a partition from offset for up to maxWait and returns
// its records (possibly none) and its high watermark. The records' keys
// and values share a few allocations: retaining one keeps up to 64 KiB
// alive.
func (f *Fetcher) Fetch(ctx context.Context, topic string, partition int, offset int64, maxWait time.Duration) ([]Record, int64, error) {
	var (
		out []Record
		a   arena
	)
	hwm, err := fetchEach(ctx, f.c, topic, partition, offset, maxWait, fetchBytes, &a, func(off, ts int64, key, value []byte, _ string) {
		if len(out) == cap(out) {
			// Doubling: append grows large slices by a quarter, which
			// for a fetch of 8 MiB of records copied them 4-5 times.
			out = append(make([]Record, 0, max(2*cap(out), 256)), out...)
		}
		out = append(out, Record{Offset: off, Time: ts, Key: key, Value: value})
	})
	return out, hwm, err
}

// Offsets returns a partition's first offset and its high watermark.
func (f *Fetcher) Offsets(ctx context.Context, topic string, partition int) (first, next int64, err error) {
	return offsets(ctx, f.c, topic, partition)
}

// Partitions returns the ids of a topic's partitions.
func (f *Fetcher) Partitions(ctx context.Context, topic string) ([]int, error) {
	return partitionIDs(ctx, f.c, topic)
}

// EachID calls add with the id of each usage event in the records of a
// partition from offset from to offset to (excluded), in order: the ids
// a consumer starting at to refills its window of recent ids with.
func (f *Fetcher) EachID(ctx context.Context, topic string, partition int, from, to int64, maxWait time.Duration, add func(schemas.EventID)) error {
	return refillWindow(ctx, f.c, topic, partition, from, to, maxWait, add)
}

// refillWindow calls add with the id of each usage event in the records
// of a partition from offset from to offset to (excluded): a consumer
// that starts at to thereby still drops copies of events read before it
// started.
func refillWindow(ctx context.Context, c *kafka.Client, topic string, partition int, from, to int64, maxWait time.Duration, add func(schemas.EventID)) error {
	var e schemas.UsageEvent
	for pos := from; pos < to; {
		recs, _, err := fetch(ctx, c, topic, partition, pos, maxWait)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return nil // none left below to (only control records)
		}
		for i := range recs {
			r := &recs[i]
			if r.offset >= to {
				return nil
			}
			if r.value != nil && schemas.DecodeUsageEvent(r.value, &e) == nil {
				add(e.ID)
			}
			pos = r.offset + 1
		}
	}
	return nil
}
