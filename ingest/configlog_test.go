package ingest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/kafkatest"
	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/schemas"
)

// configNode is one node's config log, running until the test ends.
type configNode struct {
	log    *ConfigLog
	mgr    *catalog.Manager
	cancel context.CancelFunc
	done   chan struct{}
}

// openConfigNode opens a writer's config log (an admin API's: it
// repairs rejected records).
func openConfigNode(t *testing.T, k Kafka, snapshot string) *configNode {
	t.Helper()
	l, err := OpenConfigLog(ConfigLogConfig{Kafka: k, Snapshot: snapshot, MaxWait: 100 * time.Millisecond, CommitTimeout: 5 * time.Second, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	return startConfigNode(t, l)
}

func startConfigNode(t testing.TB, l *ConfigLog) *configNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n := &configNode{log: l, mgr: catalog.NewManagerOn(l), cancel: cancel, done: make(chan struct{})}
	go func() { defer close(n.done); l.Run(ctx) }()
	t.Cleanup(n.stop)
	return n
}

func (n *configNode) stop() {
	n.cancel()
	<-n.done
}

func (n *configNode) waitLoaded(t *testing.T) {
	t.Helper()
	select {
	case <-n.log.Loaded():
	case <-time.After(10 * time.Second):
		t.Fatal("config log not loaded after 10s")
	}
}

func migrated(t testing.TB, prefix string) (Kafka, func()) {
	t.Helper()
	cluster, brokers := kafkatest.Start(t)
	k := Kafka{Brokers: brokers, Prefix: prefix, Partitions: 2, Timeout: 2 * time.Second}
	if _, err := Migrate(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	return k, cluster.Close
}

func addKey(id, name, value string) func(tx *catalog.Tx) error {
	return func(tx *catalog.Tx) error {
		tx.PutKey(catalog.APIKey{ID: id, Name: name, Enabled: true,
			ValueHash: catalog.HashKey(value), ValuePrefix: value[:4], CreatedDate: 1_700_000_000})
		return nil
	}
}

// editKey changes key id with f.
func editKey(id string, f func(k *catalog.APIKey)) func(tx *catalog.Tx) error {
	return func(tx *catalog.Tx) error {
		k := *tx.Key(id)
		f(&k)
		tx.PutKey(k)
		return nil
	}
}

func deleteKeys(ids ...string) func(tx *catalog.Tx) error {
	return func(tx *catalog.Tx) error {
		for _, id := range ids {
			tx.DeleteKey(id)
		}
		return nil
	}
}

// changeOf makes a change of old with f, as a Manager does, without
// checking it against the catalog in force.
func changeOf(t *testing.T, old *catalog.State, f func(tx *catalog.Tx) error) *catalog.Change {
	t.Helper()
	tx := old.Begin()
	if err := f(tx); err != nil {
		t.Fatal(err)
	}
	return &catalog.Change{Old: old, New: tx.State, Delta: tx.Delta()}
}

// sameCatalog reports whether two states hold the same catalog.
func sameCatalog(a, b *catalog.State) bool { return a.Catalog().Equal(b.Catalog()) }

func keyIDs(s *catalog.State) []string {
	var ids []string
	s.Keys("", func(k *catalog.APIKey) bool { ids = append(ids, k.ID); return true })
	return ids
}

func TestConfigLogReadYourWritesAndPropagation(t *testing.T) {
	k, _ := migrated(t, "rw.")
	a, b := openConfigNode(t, k, ""), openConfigNode(t, k, "")
	a.waitLoaded(t)
	b.waitLoaded(t)
	ctx := context.Background()

	cur, err := a.mgr.Change(ctx, addKey("k1", "alice", "alice-key-value-0001"))
	if err != nil {
		t.Fatal(err)
	}
	// Read your writes: the change is in force on the node that made it
	// when Change returns.
	if cur.Key("k1") == nil || a.log.State().Key("k1") == nil {
		t.Fatalf("after Change, node A's catalog has keys %v", keyIDs(a.log.State()))
	}
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "node B sees k1", func() bool { return b.log.State().Key("k1") != nil })

	// A change made on B (disable, then delete) reaches A.
	if _, err := b.mgr.Change(ctx, editKey("k1", func(k *catalog.APIKey) { k.Enabled = false })); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "node A sees k1 disabled", func() bool { k := a.log.State().Key("k1"); return k != nil && !k.Enabled })
	if _, err := b.mgr.Change(ctx, deleteKeys("k1")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "node A sees k1 deleted", func() bool { return a.log.State().Key("k1") == nil })
	if !sameCatalog(a.log.State(), b.log.State()) {
		t.Fatalf("nodes differ:\nA %+v\nB %+v", a.log.State(), b.log.State())
	}
}

func TestConfigLogConflictsResolveIdenticallyEverywhere(t *testing.T) {
	k, _ := migrated(t, "cf.")
	nodes := []*configNode{openConfigNode(t, k, ""), openConfigNode(t, k, ""), openConfigNode(t, k, "")}
	for _, n := range nodes {
		n.waitLoaded(t)
	}
	ctx := context.Background()
	for round := range 5 {
		// Three nodes create three keys with one value at once: the first
		// written wins on every node, the others get a conflict.
		value := fmt.Sprintf("shared-value-round-%d", round)
		errs := make([]error, len(nodes))
		var wg sync.WaitGroup
		for i, n := range nodes {
			wg.Go(func() {
				_, errs[i] = n.mgr.Change(ctx, addKey(fmt.Sprintf("r%dn%d", round, i), fmt.Sprintf("key-%d-%d", round, i), value))
			})
		}
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil && won >= 0:
				t.Fatalf("round %d: nodes %d and %d both created a key with one value", round, won, i)
			case err == nil:
				won = i
			case !errors.Is(err, catalog.ErrConflict) && !errors.As(err, new(*catalog.ValidationError)):
				// A node that already applied the winner refuses the
				// change before writing it; one that had not yet gets
				// the conflict back from the log.
				t.Fatalf("round %d node %d: %v, want a conflict or a validation error", round, i, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: every node got a conflict: %v", round, errs)
		}
		winner := fmt.Sprintf("r%dn%d", round, won)
		for i, n := range nodes {
			poll.Until(t, 10*time.Second, 5*time.Millisecond, fmt.Sprintf("node %d has %s", i, winner), func() bool { return n.log.State().Key(winner) != nil })
		}
	}
	// The losers' records were undone; every node holds the same catalog.
	want := nodes[0].log.State()
	for i, n := range nodes[1:] {
		poll.Until(t, 10*time.Second, 5*time.Millisecond, fmt.Sprintf("node %d equals node 0", i+1), func() bool { return sameCatalog(n.log.State(), want) })
	}
	if got := want.NumKeys(); got != 5 {
		t.Fatalf("%d keys (%v), want one per round", got, keyIDs(want))
	}

	// The log's own verdict, deterministically: a node commits a change
	// made on a catalog older than the log (as when two writes race), the
	// view rejects it, Commit undoes it and reports the conflict.
	stale := catalog.NewState()
	if _, err := nodes[1].log.Commit(ctx, changeOf(t, stale, addKey("late", "late", "shared-value-round-0"))); !errors.Is(err, catalog.ErrConflict) {
		t.Fatalf("stale commit: %v, want ErrConflict", err)
	}
	for i, n := range nodes {
		poll.Until(t, 10*time.Second, 5*time.Millisecond, fmt.Sprintf("node %d has undone the rejected key", i), func() bool {
			return n.log.State().Key("late") == nil && sameCatalog(n.log.State(), want)
		})
	}
}

func TestConfigLogSnapshotServesWithoutKafka(t *testing.T) {
	k, stopKafka := migrated(t, "snap.")
	snap := filepath.Join(t.TempDir(), "catalog.json")
	a := openConfigNode(t, k, snap)
	a.waitLoaded(t)
	if _, err := a.mgr.Change(context.Background(), addKey("k1", "alice", "alice-key-value-0001")); err != nil {
		t.Fatal(err)
	}
	a.stop() // saves the snapshot
	stopKafka()

	var published []*catalog.Change
	l, err := OpenConfigLog(ConfigLogConfig{Kafka: k, Snapshot: snap, Publish: func(ch *catalog.Change) error {
		published = append(published, ch)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(published) != 1 || published[0].New.Key("k1") == nil || !published[0].Full || published[0].Old.NumKeys() != 0 {
		t.Fatalf("opening with Kafka down published %d changes, want the snapshot's catalog with k1, whole", len(published))
	}
	// Run keeps retrying, the snapshot's catalog stays in force, and a
	// change cannot be committed: 503, not a hang.
	b := startConfigNode(t, l)
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "a failed fetch is counted", func() bool { return l.Failures() > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = b.mgr.Change(ctx, addKey("k2", "bob", "bob-key-value-00002"))
	if !errors.Is(err, catalog.ErrUnavailable) {
		t.Fatalf("change with Kafka down: %v, want ErrUnavailable", err)
	}
	if l.State().Key("k1") == nil || l.State().Key("k2") != nil {
		t.Fatalf("catalog in force has keys %v, want [k1]", keyIDs(l.State()))
	}
}

func TestConfigLogSnapshotOfAnotherLogIsRebuilt(t *testing.T) {
	// The snapshot is ahead of the topic (the cluster was rebuilt): the
	// node rebuilds from the topic's start and drops what it no longer
	// holds.
	snap := filepath.Join(t.TempDir(), "catalog.json")
	k1, _ := migrated(t, "re.")
	a := openConfigNode(t, k1, snap)
	a.waitLoaded(t)
	for i := range 3 {
		if _, err := a.mgr.Change(context.Background(), addKey(fmt.Sprintf("old%d", i), fmt.Sprintf("old-%d", i), fmt.Sprintf("old-key-value-000%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	a.stop()

	k2, _ := migrated(t, "re.")
	fresh := openConfigNode(t, k2, "")
	fresh.waitLoaded(t)
	if _, err := fresh.mgr.Change(context.Background(), addKey("new", "new", "new-key-value-00001")); err != nil {
		t.Fatal(err)
	}
	b := openConfigNode(t, k2, snap)
	b.waitLoaded(t)
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "the rebuilt node holds only the new log's key", func() bool {
		ids := keyIDs(b.log.State())
		return len(ids) == 1 && ids[0] == "new"
	})
}

func TestConfigLogSkipsBadRecordsAndFollowsCompaction(t *testing.T) {
	cluster, brokers := kafkatest.Start(t)
	k := Kafka{Brokers: brokers, Prefix: "cp.", Partitions: 1, Timeout: 2 * time.Second}
	// Compaction in tests must not wait for the production lag.
	if err := cluster.CreateTopic("cp.config", 1, map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "delete.retention.ms": "0"}); err != nil {
		t.Fatal(err)
	}
	migrateAllBut(t, k, "cp.config")
	// Another tool wrote garbage to the topic: it is rejected, logged and
	// skipped, and the log goes on.
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "cp.config", BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte("apiKey/zz"), Value: []byte("not a record")}); err != nil {
		t.Fatal(err)
	}
	a := openConfigNode(t, k, "")
	a.waitLoaded(t)
	ctx := context.Background()
	for i := range 4 {
		if _, err := a.mgr.Change(ctx, addKey(fmt.Sprintf("k%d", i), fmt.Sprintf("key-%d", i), fmt.Sprintf("key-value-00000%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.mgr.Change(ctx, deleteKeys("k0", "k1")); err != nil {
		t.Fatal(err)
	}
	want := a.log.State()
	if want.NumKeys() != 2 {
		t.Fatalf("keys %v, want k2 and k3", keyIDs(want))
	}
	cluster.Compact()
	b := openConfigNode(t, k, "")
	b.waitLoaded(t)
	if got := b.log.State(); !sameCatalog(got, want) {
		t.Fatalf("after compaction a new node has keys %v, want %v", keyIDs(got), keyIDs(want))
	}
}

func TestConfigLogConfigErrors(t *testing.T) {
	if _, err := OpenConfigLog(ConfigLogConfig{}); err == nil {
		t.Fatal("a config log without brokers was accepted")
	}
}

// A change rejected on one node is undone without reverting what another
// writer changed meanwhile: the undo writes back what the log holds now.
func TestConfigLogUndoKeepsAConcurrentChange(t *testing.T) {
	k, _ := migrated(t, "un.")
	a, b := openConfigNode(t, k, ""), openConfigNode(t, k, "")
	a.waitLoaded(t)
	b.waitLoaded(t)
	ctx := context.Background()
	if _, err := a.mgr.Change(ctx, addKey("x", "x", "x-value-00000000001")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.mgr.Change(ctx, addKey("z", "z", "z-value-00000000001")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "B has x and z", func() bool { return b.log.State().Key("z") != nil })
	stale := a.log.State()
	// B revokes x; then A, working from before that, renames x to a name
	// z holds: rejected.
	if _, err := b.mgr.Change(ctx, editKey("x", func(k *catalog.APIKey) { k.Enabled = false })); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "A sees x disabled", func() bool { return !a.log.State().Key("x").Enabled })
	if _, err := a.log.Commit(ctx, changeOf(t, stale, editKey("x", func(k *catalog.APIKey) { k.Name = "z" }))); !errors.Is(err, catalog.ErrConflict) {
		t.Fatalf("rename to a taken name: %v, want a conflict", err)
	}
	for name, n := range map[string]*configNode{"A": a, "B": b} {
		poll.Until(t, 10*time.Second, 5*time.Millisecond, name+" keeps x disabled and named x", func() bool {
			x := n.log.State().Key("x")
			return x != nil && !x.Enabled && x.Name == "x"
		})
	}
}

// A rejected record whose writer never undid it (it crashed) is repaired
// by any writer, so that compaction keeps the version in force.
func TestConfigLogRepairsRejectedRecordsOfOthers(t *testing.T) {
	cluster, brokers := kafkatest.Start(t)
	k := Kafka{Brokers: brokers, Prefix: "rp.", Partitions: 1, Timeout: 2 * time.Second}
	if err := cluster.CreateTopic("rp.config", 1, map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "delete.retention.ms": "0"}); err != nil {
		t.Fatal(err)
	}
	migrateAllBut(t, k, "rp.config")
	a := openConfigNode(t, k, "")
	a.waitLoaded(t)
	ctx := context.Background()
	if _, err := a.mgr.Change(ctx, addKey("y", "y", "shared-value-000001")); err != nil {
		t.Fatal(err)
	}
	// A crashed writer's record: x with y's value, rejected, never
	// undone. Then y is renamed: x's rejected record stays its latest.
	recs, _ := catalog.ChangeRecordsOf(changeOf(t, catalog.NewState(), addKey("x", "x", "shared-value-000001")))
	value, _ := schemas.EncodeConfigRecord(&recs[0])
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "rp.config", BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(recs[0].Key()), Value: value}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.mgr.Change(ctx, editKey("y", func(k *catalog.APIKey) { k.Name = "y2" })); err != nil {
		t.Fatal(err)
	}
	// The repair (a tombstone for x) is written at once; after it, a
	// node rebuilding from the compacted topic holds what A holds.
	// (Without it, x's rejected record would outlive y's first version
	// and win y's value in a rebuild.)
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "A repaired x", func() bool {
		a.log.mu.Lock()
		defer a.log.mu.Unlock()
		return len(a.log.view.Repairs()) == 0 && a.log.repairedTo > 0
	})
	// One more change, so that the repair is not the log's last record
	// (compaction leaves the newest records alone).
	if _, err := a.mgr.Change(ctx, addKey("w", "w", "w-value-00000000001")); err != nil {
		t.Fatal(err)
	}
	want := a.log.State()
	cluster.Compact()
	b := openConfigNode(t, k, "")
	b.waitLoaded(t)
	if got := b.log.State(); !sameCatalog(got, want) {
		t.Fatalf("after repair and compaction a new node has keys %v, want %v", keyIDs(got), keyIDs(want))
	}
}

// A node whose snapshot is of a config topic since deleted and created
// again rebuilds from the new topic, even once the new topic has passed
// the snapshot's offset.
func TestConfigLogNoticesARecreatedTopic(t *testing.T) {
	cluster, brokers := kafkatest.Start(t)
	k := Kafka{Brokers: brokers, Prefix: "rc.", Partitions: 1, Timeout: 2 * time.Second}
	ctx := context.Background()
	if _, err := Migrate(ctx, k); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(t.TempDir(), "catalog.json")
	a := openConfigNode(t, k, snap)
	a.waitLoaded(t)
	for i := range 3 {
		if _, err := a.mgr.Change(ctx, addKey(fmt.Sprintf("old%d", i), fmt.Sprintf("old-%d", i), fmt.Sprintf("old-key-value-000%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	a.stop()
	if err := cluster.DeleteTopic("rc.config"); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctx, k); err != nil {
		t.Fatal(err)
	}
	b := openConfigNode(t, k, "")
	b.waitLoaded(t)
	for i := range 6 { // past the old topic's offsets
		if _, err := b.mgr.Change(ctx, addKey(fmt.Sprintf("new%d", i), fmt.Sprintf("new-%d", i), fmt.Sprintf("new-key-value-000%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	want := b.log.State()
	c := openConfigNode(t, k, snap)
	c.waitLoaded(t)
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "the node with the old snapshot holds the new topic's catalog", func() bool { return sameCatalog(c.log.State(), want) })
}

// migrateAllBut creates the topics, one of which the test made by hand
// with settings Migrate refuses (compaction at once).
func migrateAllBut(t *testing.T, k Kafka, handMade string) {
	t.Helper()
	_, err := Migrate(context.Background(), k)
	if err == nil || !strings.Contains(err.Error(), "topic "+handMade+" has min.compaction.lag.ms=0") {
		t.Fatalf("migrate: %v, want only a complaint about %s", err, handMade)
	}
}
