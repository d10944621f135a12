package ingest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/kafkatest"
	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/schemas"
)

// addKeys adds n keys named prefix-000000 ... in one change.
func addKeys(prefix string, n int) func(tx *catalog.Tx) error {
	return func(tx *catalog.Tx) error {
		for i := range n {
			v := fmt.Sprintf("%s-value-%012d", prefix, i)
			tx.PutKey(catalog.APIKey{ID: fmt.Sprintf("%s%06d", prefix, i), Name: fmt.Sprintf("%s-%06d", prefix, i), Enabled: true,
				Description: "a description long enough that a few thousand keys take more than one produce request",
				ValueHash:   catalog.HashKey(v), ValuePrefix: v[:4], CreatedDate: 1_700_000_000})
		}
		return nil
	}
}

// compactedTopic makes a cluster whose config topic compacts at once
// (Compact), with the other topics migrated.
func compactedTopic(t *testing.T, prefix string) (Kafka, func(), []string) {
	t.Helper()
	cluster, brokers := kafkatest.Start(t)
	k := Kafka{Brokers: brokers, Prefix: prefix, Partitions: 1, Timeout: 2 * time.Second}
	if err := cluster.CreateTopic(prefix+"config", 1, map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "delete.retention.ms": "0"}); err != nil {
		t.Fatal(err)
	}
	migrateAllBut(t, k, prefix+"config")
	return k, cluster.Compact, brokers
}

// A change larger than one produce request is one transaction: a node
// following the log publishes all of it at once, never a part, and the
// topic holds its records, tagged, and one commit marker.
func TestConfigLogLargeChangeIsPublishedWhole(t *testing.T) {
	const n = 4000
	k, _ := migrated(t, "tx.")
	a := openConfigNode(t, k, "")
	a.waitLoaded(t)

	var mu sync.Mutex
	var seen []int
	l, err := OpenConfigLog(ConfigLogConfig{Kafka: k, MaxWait: 100 * time.Millisecond, Publish: func(ch *catalog.Change) error {
		mu.Lock()
		seen = append(seen, ch.New.NumKeys())
		mu.Unlock()
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	b := startConfigNode(t, l)
	b.waitLoaded(t)
	// b reads small fetches: the transaction arrives over many.
	b.log.mu.Lock()
	b.log.fetchBytes = 64 << 10
	b.log.mu.Unlock()

	if _, err := a.mgr.Change(context.Background(), addKeys("big", n)); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "b holds the change", func() bool { return b.log.State().NumKeys() == n })
	mu.Lock()
	defer mu.Unlock()
	for _, got := range seen {
		if got != 0 && got != n {
			t.Fatalf("b published a catalog of %d keys: part of a change of %d (all: %v)", got, n, seen)
		}
	}

	recs := readConfigTopic(t, k)
	tagged, markers := 0, 0
	for _, r := range recs {
		switch {
		case r.txn != "":
			tagged++
		case isTxnMarker(r.key):
			markers++
			if !strings.HasPrefix(string(r.key), "txn/commit/") {
				t.Fatalf("marker %s, want a commit's", r.key)
			}
		}
	}
	if tagged != n || markers != 1 {
		t.Fatalf("%d records tagged with a transaction and %d markers, want %d and 1", tagged, markers, n)
	}

	// A change of more than maxTxn records is written as several
	// transactions, in order.
	a.mgr.Change(context.Background(), deleteKeys(keyIDs(a.log.State())...))
	a.log.maxTxn = n / 2
	if _, err := a.mgr.Change(context.Background(), addKeys("big", n)); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "b holds the change again", func() bool { return b.log.State().NumKeys() == n })
	recs = readConfigTopic(t, k)
	markers = 0
	for _, r := range recs {
		if isTxnMarker(r.key) {
			markers++
		}
	}
	if markers != 3 {
		t.Fatalf("%d transaction markers, want 3 (one, then two halves)", markers)
	}

	// A small change is written as it is: one request is atomic.
	if _, err := a.mgr.Change(context.Background(), addKeys("small", 3)); err != nil {
		t.Fatal(err)
	}
	if got := len(readConfigTopic(t, k)); got != len(recs)+3 {
		t.Fatalf("a change of 3 keys added %d records, want 3", got-len(recs))
	}
}

// A transaction its writer abandoned (it died before the marker) is never
// in force: a writer aborts it after twice its CommitTimeout, putting the
// version in force of its keys back on top, so that a node rebuilding
// from the compacted log agrees; a commit marker that comes after the
// abort changes nothing.
func TestConfigLogAbandonedTransactionIsAborted(t *testing.T) {
	k, compact, brokers := compactedTopic(t, "ab.")
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	l, err := OpenConfigLog(ConfigLogConfig{Kafka: k, MaxWait: 50 * time.Millisecond, CommitTimeout: 2 * time.Second, Repair: true, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	a := startConfigNode(t, l)
	a.waitLoaded(t)
	ctx := context.Background()
	if _, err := a.mgr.Change(ctx, addKey("y", "y", "y-value-0000000001")); err != nil {
		t.Fatal(err)
	}
	before := a.log.State()

	// The dead writer's records: y renamed, x added; no marker.
	ch := changeOf(t, before, func(tx *catalog.Tx) error {
		if err := editKey("y", func(k *catalog.APIKey) { k.Name = "y-renamed" })(tx); err != nil {
			return err
		}
		return addKey("x", "x", "x-value-0000000001")(tx)
	})
	crs, err := catalog.ChangeRecordsOf(ch)
	if err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "ab.config", BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	msgs := make([]kafka.Message, len(crs))
	for i := range crs {
		v, err := schemas.EncodeConfigRecord(&crs[i])
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = kafka.Message{Key: []byte(crs[i].Key()), Value: v, Headers: []kafka.Header{{Key: txnHeader, Value: []byte("dead")}}}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "a holds the transaction", func() bool {
		a.log.mu.Lock()
		defer a.log.mu.Unlock()
		return a.log.txns["dead"] != nil && len(a.log.txns["dead"].recs) == len(crs)
	})
	if !sameCatalog(a.log.State(), before) {
		t.Fatal("records of a transaction without its marker are in force")
	}

	// Past abandonAfter: a aborts it.
	clock.Add(int64(2*l.abandonAfter() + time.Second))
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "a aborted the transaction", func() bool {
		a.log.mu.Lock()
		defer a.log.mu.Unlock()
		return len(a.log.txns) == 0 && len(a.log.held) == 0
	})
	// The dead writer's marker, late: rejected.
	if err := w.WriteMessages(ctx, kafka.Message{Key: txnMarker(txnCommit, "dead"), Value: []byte{}}); err != nil {
		t.Fatal(err)
	}
	// One more change, so that the restores are not the log's last
	// records (compaction leaves the newest alone).
	if _, err := a.mgr.Change(ctx, addKey("z", "z", "z-value-0000000001")); err != nil {
		t.Fatal(err)
	}
	want := a.log.State()
	if y := want.Key("y"); want.Key("x") != nil || y == nil || y.Name != "y" {
		t.Fatalf("after the abort: x %+v, y %+v; want no x and y as it was", want.Key("x"), y)
	}
	compact()
	c := openConfigNode(t, k, "")
	c.waitLoaded(t)
	if got := c.log.State(); !sameCatalog(got, want) {
		t.Fatalf("a node rebuilt from the compacted log has %v (y: %+v), want %v", keyIDs(got), got.Key("y"), keyIDs(want))
	}
}

// A record written while a transaction is held supersedes the
// transaction's record of the same key, as compaction would: at the
// commit, the later record stays in force on every node, live or rebuilt.
func TestConfigLogHeldRecordYieldsToALaterOne(t *testing.T) {
	k, compact, brokers := compactedTopic(t, "hy.")
	a := openConfigNode(t, k, "")
	a.waitLoaded(t)
	ctx := context.Background()
	if _, err := a.mgr.Change(ctx, addKey("y", "y", "y-value-0000000001")); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "hy.config", BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	write := func(f func(tx *catalog.Tx) error, txn string) {
		t.Helper()
		crs, err := catalog.ChangeRecordsOf(changeOf(t, a.log.State(), f))
		if err != nil {
			t.Fatal(err)
		}
		for i := range crs {
			v, _ := schemas.EncodeConfigRecord(&crs[i])
			m := kafka.Message{Key: []byte(crs[i].Key()), Value: v}
			if txn != "" {
				m.Headers = []kafka.Header{{Key: txnHeader, Value: []byte(txn)}}
			}
			if err := w.WriteMessages(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(editKey("y", func(k *catalog.APIKey) { k.Description = "from the transaction" }), "t1")
	write(addKey("x", "x", "x-value-0000000001"), "t1")
	write(editKey("y", func(k *catalog.APIKey) { k.Description = "later, outside it" }), "")
	if err := w.WriteMessages(ctx, kafka.Message{Key: txnMarker(txnCommit, "t1"), Value: []byte{}}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "a applied the commit", func() bool { return a.log.State().Key("x") != nil })
	if got := a.log.State().Key("y").Description; got != "later, outside it" {
		t.Fatalf("y's description %q: the transaction's older record won", got)
	}
	if _, err := a.mgr.Change(ctx, addKey("z", "z", "z-value-0000000001")); err != nil {
		t.Fatal(err)
	}
	want := a.log.State()
	compact()
	c := openConfigNode(t, k, "")
	c.waitLoaded(t)
	if got := c.log.State(); !sameCatalog(got, want) {
		t.Fatalf("a rebuilt node disagrees: y %+v, want %+v", got.Key("y"), want.Key("y"))
	}
}

// readConfigTopic reads the whole config topic.
func readConfigTopic(t *testing.T, k Kafka) []record {
	t.Helper()
	c := k.client()
	ctx := context.Background()
	_, hwm, err := offsets(ctx, c, k.Topics().Config, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []record
	for off := int64(0); off < hwm; {
		recs, _, err := fetch(ctx, c, k.Topics().Config, 0, off, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		out = append(out, recs...)
		off = recs[len(recs)-1].offset + 1
	}
	return out
}
