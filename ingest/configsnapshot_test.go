package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/kafkatest"
	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/schemas"
)

// changeLog records the changes a config log publishes.
type changeLog struct {
	mu      sync.Mutex
	changes []*catalog.Change
	refuse  error // returned to the config log while set
}

func (c *changeLog) publish(ch *catalog.Change) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse != nil {
		return c.refuse
	}
	c.changes = append(c.changes, ch)
	return nil
}

func (c *changeLog) list() []*catalog.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.changes)
}

func (c *changeLog) setRefuse(err error) {
	c.mu.Lock()
	c.refuse = err
	c.mu.Unlock()
}

func openPublishingNode(t *testing.T, k Kafka, snapshot string, pub *changeLog) *configNode {
	t.Helper()
	l, err := OpenConfigLog(ConfigLogConfig{Kafka: k, Snapshot: snapshot, Publish: pub.publish, MaxWait: 100 * time.Millisecond, CommitTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return startConfigNode(t, l)
}

// A change publishes its delta, from the catalog in force; a change the
// publisher refuses is carried by the next one.
func TestConfigLogPublishesChanges(t *testing.T) {
	k, _ := migrated(t, "pc.")
	w := openConfigNode(t, k, "")
	w.waitLoaded(t)
	ctx := context.Background()
	if _, err := w.mgr.Change(ctx, addKey("k1", "alice", "alice-key-value-0001")); err != nil {
		t.Fatal(err)
	}
	var pub changeLog
	r := openPublishingNode(t, k, "", &pub)
	r.waitLoaded(t)
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "the reader publishes k1", func() bool { return len(pub.list()) > 0 })
	first := pub.list()[0]
	if !first.Full || first.New.Key("k1") == nil || first.Old.NumKeys() != 0 {
		t.Fatalf("first change %+v, want the whole catalog", first.Delta)
	}
	if _, err := w.mgr.Change(ctx, editKey("k1", func(k *catalog.APIKey) { k.Enabled = false })); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "the reader publishes k1 disabled", func() bool { return len(pub.list()) == 2 })
	ch := pub.list()[1]
	if ch.Full || !slices.Equal(ch.Keys, []string{"k1"}) || ch.Old != first.New || ch.New.Key("k1").Enabled || !ch.Old.Key("k1").Enabled {
		t.Fatalf("second change %+v (old is the first's new: %v), want k1 disabled", ch.Delta, ch.Old == first.New)
	}

	// Refused: the catalog in force stays; the next change carries both.
	pub.setRefuse(errors.New("no"))
	if _, err := w.mgr.Change(ctx, addKey("k2", "bob", "bob-key-value-00002")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "the reader tried to publish k2", func() bool { return r.log.Failures() > 0 })
	if r.log.State() != ch.New {
		t.Fatal("a refused change is in force")
	}
	pub.setRefuse(nil)
	if _, err := w.mgr.Change(ctx, addKey("k3", "carol", "carol-key-value-003")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "the reader publishes k3", func() bool { return len(pub.list()) == 3 })
	ch3 := pub.list()[2]
	if !slices.Equal(ch3.Keys, []string{"k2", "k3"}) || ch3.Old != ch.New || r.log.State() != ch3.New || ch3.New.Key("k2") == nil {
		t.Fatalf("change after a refused one %+v, want k2 and k3 from the catalog in force", ch3.Delta)
	}
}

// A node that starts on a long log publishes once, when it has caught
// up, not once per fetch.
func TestConfigLogFirstLoadPublishesOnce(t *testing.T) {
	k, _ := migrated(t, "fl.")
	w := openConfigNode(t, k, "")
	w.waitLoaded(t)
	ctx := context.Background()
	const n = 3000 // records of more than one fetch... and a delta too big to name
	for batch := range 3 {
		if _, err := w.mgr.Change(ctx, func(tx *catalog.Tx) error {
			for i := range n / 3 {
				id := fmt.Sprintf("key%05d", batch*n/3+i)
				addKey(id, id, id+"-value-value-value")(tx)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var pub changeLog
	l, err := OpenConfigLog(ConfigLogConfig{Kafka: k, Publish: pub.publish, MaxWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l.fetchBytes = 64 << 10 // many fetches
	r := startConfigNode(t, l)
	r.waitLoaded(t)
	if got := pub.list(); len(got) != 1 || got[0].New.NumKeys() != n || !got[0].Full {
		t.Fatalf("%d changes published on the first load, want one with the %d keys, whole", len(got), n)
	}
}

// The snapshot keeps the catalog across a restart, in its binary form;
// a snapshot of the JSON form of earlier versions is read too.
func TestConfigLogSnapshotForms(t *testing.T) {
	k, _ := migrated(t, "sf.")
	dir := t.TempDir()
	snap := filepath.Join(dir, "catalog-snapshot")
	a := openConfigNode(t, k, snap)
	a.waitLoaded(t)
	ctx := context.Background()
	for i := range 3 {
		if _, err := a.mgr.Change(ctx, addKey(fmt.Sprintf("k%d", i), fmt.Sprintf("key-%d", i), fmt.Sprintf("key-value-00000%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	want := a.log.State()
	next := a.log.Offset()
	a.stop()
	st, off, err := ReadCatalogSnapshot(snap)
	if err != nil || off != next || !sameCatalog(st, want) {
		t.Fatalf("snapshot: %v, offset %d (want %d), keys %v (want %v)", err, off, next, keyIDs(st), keyIDs(want))
	}

	// The JSON form: the records in force, as earlier versions wrote it.
	legacy := filepath.Join(dir, "legacy.json")
	var recs []map[string]any
	all, _ := catalog.ChangeRecordsOf(&catalog.Change{Old: catalog.NewState(), New: want, Delta: catalog.Delta{Full: true}})
	for i := range all {
		v, _ := schemas.EncodeConfigRecord(&all[i])
		recs = append(recs, map[string]any{"offset": i, "value": json.RawMessage(v)})
	}
	b, _ := json.Marshal(map[string]any{"topic": "sf.config", "next": next, "savedAt": time.Now(), "records": recs})
	if err := os.WriteFile(legacy, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var pub changeLog
	l, err := OpenConfigLog(ConfigLogConfig{Kafka: k, Snapshot: legacy, Publish: pub.publish})
	if err != nil {
		t.Fatal(err)
	}
	if got := pub.list(); len(got) != 1 || !sameCatalog(got[0].New, want) || l.Offset() != next {
		t.Fatalf("from the JSON snapshot: %d changes, offset %d", len(got), l.Offset())
	}

	// A damaged snapshot is refused, saying how to recover.
	b, _ = os.ReadFile(snap)
	b[len(b)-10] ^= 1
	os.WriteFile(snap, b, 0o600)
	if _, err := OpenConfigLog(ConfigLogConfig{Kafka: k, Snapshot: snap}); err == nil || !errors.Is(err, catalog.ErrSnapshotFormat) {
		t.Fatalf("damaged snapshot: %v", err)
	}
}

// A node whose snapshot is of a topic since deleted and created again,
// still empty, holds the empty catalog once it has looked.
func TestConfigLogRebuildOnAnEmptyTopic(t *testing.T) {
	cluster, brokers := kafkatest.Start(t)
	k := Kafka{Brokers: brokers, Prefix: "et.", Partitions: 1, Timeout: 2 * time.Second}
	ctx := context.Background()
	if _, err := Migrate(ctx, k); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(t.TempDir(), "catalog-snapshot")
	a := openConfigNode(t, k, snap)
	a.waitLoaded(t)
	if _, err := a.mgr.Change(ctx, addKey("old", "old", "old-key-value-00001")); err != nil {
		t.Fatal(err)
	}
	a.stop()
	if err := cluster.DeleteTopic("et.config"); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctx, k); err != nil {
		t.Fatal(err)
	}
	var pub changeLog
	b := openPublishingNode(t, k, snap, &pub)
	b.waitLoaded(t)
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "the node holds the empty topic's catalog", func() bool { return b.log.State().NumKeys() == 0 })
	if got := pub.list(); len(got) != 2 || !got[1].Full || got[1].New.NumKeys() != 0 {
		t.Fatalf("published %d changes, want the snapshot's then the empty catalog", len(got))
	}
}
