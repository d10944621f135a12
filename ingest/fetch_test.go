package ingest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/internal/kafkatest"
	"github.com/tollgate/tollgate/schemas"
)

// fetchTopic starts a one-partition events topic holding recs.
func fetchTopic(t testing.TB, recs []kafka.Record) (Kafka, string) {
	t.Helper()
	_, brokers := kafkatest.Start(t)
	k := Kafka{Brokers: brokers, Partitions: 1, Timeout: 5 * time.Second}
	ctx := context.Background()
	if _, err := Migrate(ctx, k); err != nil {
		t.Fatal(err)
	}
	c := k.client()
	for len(recs) > 0 {
		n := min(len(recs), 4096)
		res, err := c.Produce(ctx, &kafka.ProduceRequest{Topic: k.Topics().Events, Partition: 0, RequiredAcks: kafka.RequireAll,
			Records: kafka.NewRecordReader(recs[:n]...)})
		if err != nil || res.Error != nil {
			t.Fatalf("produce: %v %v", err, res.Error)
		}
		recs = recs[n:]
	}
	return k, k.Topics().Events
}

// fetchAll reads the partition from 0 to its end with Fetcher.Fetch.
func fetchAll(t testing.TB, f *Fetcher, topic string) []Record {
	t.Helper()
	ctx := context.Background()
	var out []Record
	for next := int64(0); ; {
		recs, hwm, err := f.Fetch(ctx, topic, 0, next, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, recs...)
		if len(recs) > 0 {
			next = recs[len(recs)-1].Offset + 1
		}
		if next >= hwm {
			return out
		}
	}
}

// Fetcher.Fetch cuts keys and values from shared chunks: every record
// reads back as written (tombstones nil, empty values and keys empty but
// not nil, null keys nil, values larger than a chunk's quarter and runs
// of records across many chunks), and a value's capacity ends with it,
// so appending to one does not overwrite the next.
func TestFetchRecordsAsWritten(t *testing.T) {
	var want []kafka.Record
	var vals, keys [][]byte
	add := func(key, value []byte) {
		r := kafka.Record{}
		if key != nil {
			r.Key = kafka.NewBytes(key)
		}
		if value != nil {
			r.Value = kafka.NewBytes(value)
		}
		want = append(want, r)
		keys, vals = append(keys, key), append(vals, value)
	}
	add([]byte("k"), nil)        // a tombstone
	add([]byte("k"), []byte{})   // an empty value
	add([]byte{}, []byte("v"))   // an empty key
	add(nil, []byte("null key")) // no key
	add([]byte("big"), bytes.Repeat([]byte("x"), arenaChunk/4+1))
	add([]byte("huge"), bytes.Repeat([]byte("y"), 3*arenaChunk))
	for i := range 5000 {
		e := schemas.UsageEvent{ID: schemas.NewEventID(int64(i)), Time: int64(i), KeyID: fmt.Sprintf("k%04d", i), Status: 200}
		add([]byte(e.KeyID), schemas.AppendUsageEvent(nil, &e))
	}
	k, topic := fetchTopic(t, want)
	got := fetchAll(t, k.Fetcher(), topic)
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.Offset != int64(i) {
			t.Fatalf("record %d: offset %d", i, r.Offset)
		}
		if (r.Key == nil) != (keys[i] == nil) || !bytes.Equal(r.Key, keys[i]) {
			t.Fatalf("record %d: key %q (nil %v), want %q (nil %v)", i, r.Key, r.Key == nil, keys[i], keys[i] == nil)
		}
		if (r.Value == nil) != (vals[i] == nil) || !bytes.Equal(r.Value, vals[i]) {
			t.Fatalf("record %d: value of %d bytes (nil %v), want %d (nil %v)", i, len(r.Value), r.Value == nil, len(vals[i]), vals[i] == nil)
		}
		if cap(r.Value) != len(r.Value) || cap(r.Key) != len(r.Key) {
			t.Fatalf("record %d: capacity past the end: key %d/%d, value %d/%d", i, len(r.Key), cap(r.Key), len(r.Value), cap(r.Value))
		}
	}
	// The internal fetch (every other reader) reads the same.
	recs, _, err := fetch(context.Background(), k.client(), topic, 0, 0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if !bytes.Equal(r.value, got[i].Value) || (r.value == nil) != (got[i].Value == nil) ||
			!bytes.Equal(r.key, got[i].Key) || (r.key == nil) != (got[i].Key == nil) {
			t.Fatalf("record %d: fetch and Fetcher.Fetch differ", i)
		}
	}
}

// BenchmarkFetcherFetch reads 200k usage events (as the aggregator's
// partition workers do, 8 MiB a fetch) from kfake in this process.
func BenchmarkFetcherFetch(b *testing.B) {
	const n = 200_000
	recs := make([]kafka.Record, n)
	for i := range recs {
		e := schemas.UsageEvent{ID: schemas.NewEventID(int64(i)), Time: int64(i), APIID: "api", Stage: "prod",
			KeyID: fmt.Sprintf("k%06d", i%100_000), PlanID: "plan", Method: "GET", Resource: "/items/{id}",
			Status: 200, Decision: schemas.DecisionAllowed, LatencyMicros: 321, BytesIn: 100, BytesOut: 2000, Node: "n1"}
		recs[i] = kafka.Record{Key: kafka.NewBytes([]byte(e.KeyID)), Value: kafka.NewBytes(schemas.AppendUsageEvent(nil, &e))}
	}
	k, topic := fetchTopic(b, recs)
	f := k.Fetcher()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if got := fetchAll(b, f, topic); len(got) != n {
			b.Fatalf("%d records", len(got))
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}
