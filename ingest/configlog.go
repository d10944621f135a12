package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/backoff"
	"github.com/tollgate/tollgate/internal/logs"
	"github.com/tollgate/tollgate/internal/metrics"
	"github.com/tollgate/tollgate/schemas"
)

// ConfigLogConfig configures a ConfigLog.
type ConfigLogConfig struct {
	// Kafka names the cluster and the config topic. Required.
	Kafka Kafka
	// Snapshot is the file that keeps the materialised catalog and the
	// offset it reached, so that a node starts and serves while Kafka is
	// unreachable (see configsnapshot.go). "" keeps none.
	Snapshot string
	// Publish hands every change of the catalog to its users (the
	// gateway): the state in force (Old), the new one, and what differs
	// (Delta; Full for the first catalog, a rebuild, or a change of more
	// entities than a delta names). A change it refuses is logged and
	// kept: the next one publishes both, from the same Old. Nil: none.
	Publish func(*catalog.Change) error
	// MaxWait is the longest a fetch waits for new records; changes
	// arrive as soon as they are written whatever it is. Default 500ms.
	MaxWait time.Duration
	// CommitTimeout bounds each produce request of a commit, and how
	// long Commit waits for a change to be read back, plus 100µs a
	// record (a change of a million records is read back in tens of
	// seconds). Default 10s.
	CommitTimeout time.Duration
	// Logger receives rejected records and connection trouble, with
	// component=configlog. Nil discards.
	Logger *slog.Logger
	// Now stamps snapshots. Default time.Now.
	Now func() time.Time
	// Repair makes this node, a writer of the log (an admin API), write
	// back the version in force of every entity whose latest record was
	// rejected, as soon as it sees one (catalog.View.Repairs): whichever
	// writer made the rejected change, and whether or not it survived.
	Repair bool
	// Metrics is where the log registers its metrics (offset, lag,
	// failures: metrics.go). Nil: not registered.
	Metrics prometheus.Registerer
}

// Validate reports every problem with the configuration.
func (c *ConfigLogConfig) Validate() error {
	var errs []error
	if err := c.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxWait < 0 {
		errs = append(errs, fmt.Errorf("config log: MaxWait must not be negative, got %v", c.MaxWait))
	}
	if c.CommitTimeout < 0 {
		errs = append(errs, fmt.Errorf("config log: CommitTimeout must not be negative, got %v", c.CommitTimeout))
	}
	return errors.Join(errs...)
}

// ConfigLog is the catalog shared through the config topic: it
// materialises the topic into a catalog.View (and publishes each change
// of the catalog), and it commits catalog changes by writing the records
// of what they touched to the topic and waiting until its own view has
// applied them, so that whoever made a change reads it back (read your
// writes).
type ConfigLog struct {
	cfg    ConfigLogConfig
	client *kafka.Client
	topic  string

	mu       sync.Mutex
	cond     *sync.Cond
	view     *catalog.View
	next     int64           // the offset to read next
	rejected map[int64]error // recent rejections, for Commit
	// txns are the transactions whose records are held until their
	// marker, held their records by record key (see configtxn.go).
	txns  map[string]*heldTxn
	held  map[string][]heldRef
	fresh bool // the view was rebuilt from the topic's start
	// rebuilding: the view is being rebuilt while the catalog of the
	// snapshot serves; nothing is published until it has caught up.
	rebuilding bool
	target     int64        // the end of the topic when Run (re)started
	end        atomic.Int64 // the end of the topic at the last fetch (Lag)
	last       lastRecord   // the record before next, to recognise the topic
	// repairedTo: repairs were written up to this offset; none are
	// written again until the view has applied them.
	repairedTo int64
	fetchBytes int // how much a fetch asks for (tests make it small)
	maxTxn     int // records of a transaction: maxTxnRecords (tests make it small)

	cur atomic.Pointer[catalog.State]
	// unpublished is what changed since cur and could not be published
	// (the publisher refused it); the next change carries it.
	unpublished catalog.Delta
	// whole: the next publication is of a new view (a rebuild): Full.
	whole    bool
	loaded   chan struct{}
	loadOnce sync.Once
	dirty    bool // changed since the last snapshot
	saved    time.Time
	// saving: a snapshot is being written (in the background: at a
	// million keys it takes a second, which changes must not wait);
	// saveTook is how long the last write took.
	saving   sync.WaitGroup
	writing  atomic.Bool
	saveTook time.Duration
	failures atomic.Uint64
}

var _ catalog.Committer = (*ConfigLog)(nil)

// OpenConfigLog loads the snapshot, if any, and publishes its catalog;
// Run then follows the topic.
func OpenConfigLog(cfg ConfigLogConfig) (*ConfigLog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 500 * time.Millisecond
	}
	if cfg.CommitTimeout == 0 {
		cfg.CommitTimeout = 10 * time.Second
	}
	cfg.Logger = logs.For(cfg.Logger, "configlog")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Publish == nil {
		cfg.Publish = func(*catalog.Change) error { return nil }
	}
	l := &ConfigLog{cfg: cfg, client: cfg.Kafka.client(), topic: cfg.Kafka.Topics().Config,
		view: catalog.NewView(), rejected: map[int64]error{}, txns: map[string]*heldTxn{}, held: map[string][]heldRef{},
		loaded: make(chan struct{}), fetchBytes: fetchBytes, maxTxn: maxTxnRecords}
	l.cond = sync.NewCond(&l.mu)
	if err := metrics.Register(cfg.Metrics, "config log", l.collector()); err != nil {
		return nil, err
	}
	if err := l.loadSnapshot(); err != nil {
		return nil, err
	}
	empty := catalog.NewState()
	l.cur.Store(empty)
	if l.next > 0 {
		st := l.view.State()
		l.view.TakeDelta()
		if err := cfg.Publish(&catalog.Change{Old: empty, New: st, Delta: catalog.Delta{Full: true}}); err != nil {
			return nil, fmt.Errorf("publish the catalog snapshot: %w", err)
		}
		l.cur.Store(st)
	}
	return l, nil
}

func (l *ConfigLog) loadSnapshot() error {
	start := time.Now()
	h, v, err := readConfigSnapshot(l.cfg.Snapshot)
	switch {
	case errors.Is(err, errNoSnapshot):
		return nil
	case err != nil:
		return err
	case h.Topic != l.topic:
		l.cfg.Logger.Warn("catalog snapshot is of another topic; rebuilding from Kafka", "snapshot", h.Topic, "topic", l.topic)
		return nil
	}
	l.view, l.next, l.saved, l.last = v, h.Next, h.SavedAt, h.Last
	l.cfg.Logger.Info("catalog snapshot loaded", "keys", h.Keys, "next", h.Next, "took", time.Since(start))
	return nil
}

// lastRecord identifies a record of the topic: a snapshot names the one
// before its offset, so that a topic deleted and created again (whose
// offsets start over and may pass the snapshot's) is not mistaken for the
// one the snapshot came from.
type lastRecord struct {
	Offset int64  `json:"offset"`
	Key    string `json:"key"`
	SHA256 string `json:"sha256"`
}

func lastOf(r *record) lastRecord {
	sum := sha256.Sum256(r.value)
	return lastRecord{Offset: r.offset, Key: string(r.key), SHA256: hex.EncodeToString(sum[:])}
}

// sameTopic reports whether the topic still holds the snapshot's last
// record (or compaction removed it, which says nothing either way).
func (l *ConfigLog) sameTopic(ctx context.Context) (bool, error) {
	want := l.last
	if want.Key == "" {
		return true, nil
	}
	recs, _, err := fetch(ctx, l.client, l.topic, 0, want.Offset, 10*time.Millisecond)
	switch {
	case errors.Is(err, kafka.OffsetOutOfRange):
		return false, nil
	case err != nil:
		return false, err
	case len(recs) == 0 || recs[0].offset != want.Offset:
		return true, nil
	}
	return lastOf(&recs[0]) == want, nil
}

// State returns the catalog in force: the last one published.
func (l *ConfigLog) State() *catalog.State { return l.cur.Load() }

// Loaded is closed once the view has caught up with the topic as it was
// when Run started.
func (l *ConfigLog) Loaded() <-chan struct{} { return l.loaded }

// Offset returns the offset the view reads next.
func (l *ConfigLog) Offset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next
}

// Lag returns how many records the view has yet to read: the topic's end
// at the last fetch less Offset (0 before the first).
func (l *ConfigLog) Lag() int64 { return max(l.end.Load()-l.Offset(), 0) }

// Failures counts failed fetches and catalogs the publisher refused.
func (l *ConfigLog) Failures() uint64 { return l.failures.Load() }

// Run follows the topic until ctx ends, applying records and publishing
// each change of the catalog; it retries while Kafka is unreachable (the
// catalog in force stays), and saves the snapshot in the background at
// most once a second (less often when writing it takes long: a large
// catalog) and when it returns.
//
// Until the view has caught up with the topic as it was when Run
// started (a first start, a rebuild, a node back after a while), it
// applies what it fetches and publishes nothing: then one change
// publishes it all, not a change per fetch.
func (l *ConfigLog) Run(ctx context.Context) error {
	defer l.saveSnapshot(true)
	wait := time.Duration(0) // the last retry's wait
	var target int64 = -1    // the high watermark to reach before Loaded
	for ctx.Err() == nil {
		if target < 0 {
			first, hwm, err := offsets(ctx, l.client, l.topic, 0)
			if err != nil {
				l.retry(ctx, "read the config topic's offsets (has `tollgate migrate kafka` run?)", err, &wait)
				continue
			}
			same, err := l.sameTopic(ctx)
			if err != nil {
				l.retry(ctx, "read the config topic", err, &wait)
				continue
			}
			l.mu.Lock()
			if stale := l.cfg.Now().Sub(l.saved) > TombstoneRetention-24*time.Hour; !same || l.next > hwm || l.next < first || (l.next > 0 && stale && !l.fresh) {
				// The snapshot may have missed deletes (the topic was
				// recreated, or tombstones expired): rebuild from the
				// start; the catalog in force serves until the new view
				// has caught up.
				l.cfg.Logger.Warn("catalog snapshot cannot be continued; rebuilding from the topic's start", "next", l.next, "first", first, "end", hwm, "sameTopic", same)
				l.view, l.next, l.fresh, l.rebuilding, l.last = catalog.NewView(), first, true, true, lastRecord{}
				l.rejected, l.whole = map[int64]error{}, true
				l.txns, l.held = map[string]*heldTxn{}, map[string][]heldRef{}
			}
			target, l.target = hwm, hwm
			l.end.Store(hwm)
			l.view.Grow(int(hwm - l.next)) // a view that loads makes room at once
			if l.whole && l.next >= l.target {
				// Rebuilt from a topic with nothing to read: its
				// catalog is the empty one.
				l.rebuilding = false
				l.publish()
			}
			l.mu.Unlock()
			if l.Offset() >= target {
				l.markLoaded()
			}
		}
		recs, hwm, err := fetchUpTo(ctx, l.client, l.topic, 0, l.Offset(), l.cfg.MaxWait, l.fetchBytes)
		if errors.Is(err, kafka.OffsetOutOfRange) {
			target = -1 // the topic was truncated or recreated: look again
			l.retry(ctx, "fetch the config topic", err, &wait)
			continue
		}
		if err != nil {
			l.retry(ctx, "fetch the config topic", err, &wait)
			continue
		}
		wait = 0
		l.end.Store(hwm)
		l.apply(recs, hwm)
		if l.Offset() >= target {
			l.markLoaded()
			if l.cfg.Repair {
				l.repair(ctx)
				l.abortAbandoned(ctx)
			}
		}
		l.saveSnapshot(false)
	}
	return nil
}

// repair writes the repairs the view asks for (catalog.View.Repairs),
// once per offset reached: a writer that sees a rejected record puts the
// version in force back on top of it.
func (l *ConfigLog) repair(ctx context.Context) {
	l.mu.Lock()
	if l.next <= l.repairedTo {
		l.mu.Unlock()
		return
	}
	reps := l.view.Repairs()
	l.mu.Unlock()
	if len(reps) == 0 {
		return
	}
	recs := make([]kafka.Record, len(reps))
	for i, r := range reps {
		recs[i] = kafka.Record{Key: kafka.NewBytes([]byte(r.Key)), Value: kafka.NewBytes(r.Value)}
	}
	wctx, cancel := context.WithTimeout(ctx, l.cfg.CommitTimeout)
	defer cancel()
	offs, err := l.produce(wctx, recs)
	if err != nil {
		l.failures.Add(1)
		l.cfg.Logger.Warn("writing repairs of rejected records failed; retrying", "records", len(reps), "err", err)
		return
	}
	l.mu.Lock()
	l.repairedTo = offs[len(offs)-1]
	l.mu.Unlock()
	l.cfg.Logger.Info("repaired rejected records", "records", len(reps))
}

func (l *ConfigLog) retry(ctx context.Context, doing string, err error, wait *time.Duration) {
	if ctx.Err() != nil {
		return
	}
	l.failures.Add(1)
	backoff.Retry(ctx, l.cfg.Logger, wait, 100*time.Millisecond, 5*time.Second, doing+" failed; retrying", "err", err)
}

func (l *ConfigLog) markLoaded() { l.loadOnce.Do(func() { close(l.loaded) }) }

// apply applies fetched records and publishes what changed.
func (l *ConfigLog) apply(recs []record, hwm int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.cond.Broadcast()
	if len(recs) == 0 {
		if hwm > l.next {
			// Records compacted away between next and hwm.
			l.next = hwm
			if l.next >= l.target {
				l.rebuilding = false
				l.publish()
			}
		}
		return
	}
	batch := make([]catalog.Record, 0, len(recs))
	for i := range recs {
		r := &recs[i]
		switch {
		case r.txn != "":
			l.hold(r)
		case isTxnMarker(r.key):
			l.applyRecords(batch)
			batch = batch[:0]
			l.endTxn(r)
		default:
			if len(l.held) > 0 {
				l.supersede(r.key, r.offset)
			}
			batch = append(batch, catalog.Record{Offset: r.offset, Key: r.key, Value: r.value})
		}
	}
	l.applyRecords(batch)
	last := &recs[len(recs)-1]
	l.next, l.last = last.offset+1, lastOf(last)
	for off := range l.rejected {
		if off < l.next-4*maxTxnRecords {
			delete(l.rejected, off) // nobody waits that long
		}
	}
	l.dirty = true
	if l.next < l.target {
		// Catching up: a partial catalog would drop what is not read
		// yet, and a change per fetch would cost the gateway a rebuild
		// each.
		return
	}
	l.rebuilding = false
	l.publish()
}

// applyRecords applies records to the view and keeps its rejections for
// Commit. Called with l.mu held.
func (l *ConfigLog) applyRecords(batch []catalog.Record) {
	if len(batch) == 0 {
		return
	}
	for i, err := range l.view.ApplyBatch(batch) {
		if err != nil {
			l.cfg.Logger.Warn("config record rejected", "offset", batch[i].Offset, "err", err)
			l.rejected[batch[i].Offset] = err
		}
	}
}

// publish hands what changed in the view since the catalog in force to
// the publisher.
func (l *ConfigLog) publish() {
	st, d := l.view.State(), l.view.TakeDelta()
	if l.whole {
		d = catalog.Delta{Full: true}
	}
	d = mergeDeltas(l.unpublished, d)
	if d.Empty() {
		return
	}
	if err := l.cfg.Publish(&catalog.Change{Old: l.cur.Load(), New: st, Delta: d}); err != nil {
		l.failures.Add(1)
		l.unpublished = d
		l.cfg.Logger.Error("the gateway refused the catalog change from the config log; keeping the catalog in force", "next", l.next, "err", err)
		return
	}
	l.cur.Store(st)
	l.unpublished, l.whole = catalog.Delta{}, false
}

// mergeDeltas returns what a and b name together.
func mergeDeltas(a, b catalog.Delta) catalog.Delta {
	if a.Full || b.Full {
		return catalog.Delta{Full: true}
	}
	union := func(x, y []string) []string {
		if len(x) == 0 {
			return y
		}
		return slices.Compact(slices.Sorted(slices.Values(slices.Concat(x, y))))
	}
	return catalog.Delta{Gateway: a.Gateway || b.Gateway, APIs: a.APIs || b.APIs, Webhooks: a.Webhooks || b.Webhooks, Plans: union(a.Plans, b.Plans), Keys: union(a.Keys, b.Keys)}
}

// saveSnapshot writes the snapshot if it changed: in the background, at
// most once a second and once every 20 times as long as the last write
// took (a large catalog's snapshot costs a second or more), unless
// final, which waits for a write in progress and writes now.
func (l *ConfigLog) saveSnapshot(final bool) {
	if l.cfg.Snapshot == "" {
		return
	}
	if final {
		l.saving.Wait()
	} else if l.writing.Load() {
		return
	}
	l.mu.Lock()
	if !l.dirty || (!final && l.cfg.Now().Sub(l.saved) < max(time.Second, 20*l.saveTook)) {
		l.mu.Unlock()
		return
	}
	if l.rebuilding || l.next < l.target || len(l.txns) > 0 {
		// The snapshot in force stays until the view has caught up, and
		// while a transaction is held (its records are behind next).
		l.mu.Unlock()
		return
	}
	h := configSnapshotHeader{Topic: l.topic, Next: l.next, Last: l.last, SavedAt: l.cfg.Now()}
	view := l.view.Snapshot() // O(1): the view goes on while it is written
	h.Keys = view.NumKeys()
	l.dirty, l.saved, l.fresh = false, h.SavedAt, false
	l.mu.Unlock()
	write := func() {
		start := time.Now()
		err := writeConfigSnapshot(l.cfg.Snapshot, &h, view)
		l.mu.Lock()
		l.saveTook = time.Since(start)
		if err != nil {
			l.dirty = true // try again
		}
		l.mu.Unlock()
		if err != nil {
			l.cfg.Logger.Error("save catalog snapshot", "err", err)
		}
	}
	if final {
		write()
		return
	}
	l.writing.Store(true)
	l.saving.Go(func() {
		defer l.writing.Store(false)
		write()
	})
}

// Commit writes the records of the entities ch touched and waits until
// this node's view has applied them. If the view rejected one (another
// writer took a name or key value first), the change is undone — its
// entities written back as they were — and the error wraps
// catalog.ErrConflict. Its cost is that of the change, not of the
// catalog.
func (l *ConfigLog) Commit(ctx context.Context, ch *catalog.Change) (*catalog.State, error) {
	recs, err := catalog.ChangeRecordsOf(ch)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return l.State(), nil
	}
	offs, err := l.write(ctx, recs)
	if err != nil {
		return nil, fmt.Errorf("%w: write the change to %s: %v", catalog.ErrUnavailable, l.topic, err)
	}
	wctx, cancel := context.WithTimeout(ctx, l.cfg.CommitTimeout+time.Duration(len(offs))*100*time.Microsecond)
	defer cancel()
	if err := l.waitApplied(wctx, offs[len(offs)-1]); err != nil {
		return nil, fmt.Errorf("%w: the change was written but not yet read back: %v", catalog.ErrUnavailable, err)
	}
	var conflicts []error
	l.mu.Lock()
	for _, off := range offs {
		if err := l.rejected[off]; err != nil {
			conflicts = append(conflicts, err)
		}
	}
	l.mu.Unlock()
	if len(conflicts) == 0 {
		return l.State(), nil
	}
	// Undo the accepted part at once, and repair the rejected records:
	// a change is whole or not at all, and a rejected record must not
	// stay its key's latest (see catalog.View.Repairs). The undo writes
	// old's version only of entities this change wrote and the log did
	// not change since; the repair puts back the version in force of the
	// rejected ones, as the log holds it now.
	if err := l.undo(context.WithoutCancel(wctx), ch, recs, offs); err != nil {
		l.cfg.Logger.Error("undo the accepted part of a rejected change (repairs follow from any writer)", "err", err)
	}
	return nil, fmt.Errorf("%w: %v", catalog.ErrConflict, errors.Join(conflicts...))
}

// undo puts back the old version of the entities of ch whose records
// (recs, written at offs) were accepted and are still their keys' latest,
// and repairs the rejected ones, then waits until the view has applied
// it.
func (l *ConfigLog) undo(ctx context.Context, ch *catalog.Change, written []schemas.ConfigRecord, offs []int64) error {
	back, err := catalog.ChangeRecordsOf(ch.Reverse())
	if err != nil {
		return err
	}
	at := make(map[string]int64, len(written))
	for i := range written {
		at[written[i].Key()] = offs[i]
	}
	mine := map[string]bool{}
	l.mu.Lock()
	for k, off := range at {
		mine[k] = l.view.InForce(k, off)
	}
	reps := l.view.Repairs()
	l.mu.Unlock()
	var recs []kafka.Record
	for i := range back {
		k := back[i].Key()
		if !mine[k] {
			continue // rejected (repaired below), or changed since by another writer
		}
		var value []byte
		if !back[i].Tombstone() {
			if value, err = schemas.EncodeConfigRecord(&back[i]); err != nil {
				return err
			}
		}
		recs = append(recs, kafka.Record{Key: kafka.NewBytes([]byte(k)), Value: kafka.NewBytes(value)})
	}
	for _, r := range reps {
		recs = append(recs, kafka.Record{Key: kafka.NewBytes([]byte(r.Key)), Value: kafka.NewBytes(r.Value)})
	}
	if len(recs) == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, l.cfg.CommitTimeout)
	defer cancel()
	uoffs, err := l.produce(wctx, recs)
	if err != nil {
		return err
	}
	return l.waitApplied(wctx, uoffs[len(uoffs)-1])
}

// maxProduceBytes bounds one produce request (brokers refuse batches over
// message.max.bytes, 1 MiB by default).
const maxProduceBytes = 512 << 10

// maxTxnRecords bounds a transaction: readers hold its records until its
// marker. It is above what one admin request changes (an ImportApiKeys
// of 100,000 keys in a plan is 200,000 records), so that every admin
// request is all or nothing; a larger change (a whole catalog file
// applied) is written as several transactions, in order, and a crash
// leaves a prefix of them in force, which applying the file again
// completes.
const maxTxnRecords = 1 << 18

// write produces recs in order to partition 0 and returns their offsets.
// Records that do not fit in one produce request are written as a
// transaction (see configtxn.go), of at most maxTxnRecords: the offset
// of each transaction's commit marker follows theirs, and the last
// offset is the last marker's.
func (l *ConfigLog) write(ctx context.Context, recs []schemas.ConfigRecord) ([]int64, error) {
	var offs []int64
	for start := 0; start < len(recs); start += l.maxTxn {
		part := recs[start:min(start+l.maxTxn, len(recs))]
		out := make([]kafka.Record, len(part), len(part)+1)
		size := 0
		for i := range part {
			var value []byte
			if !part[i].Tombstone() {
				var err error
				if value, err = schemas.EncodeConfigRecord(&part[i]); err != nil {
					return nil, err
				}
			}
			size += len(value) + 64
			out[i] = kafka.Record{Key: kafka.NewBytes([]byte(part[i].Key())), Value: kafka.NewBytes(value)}
		}
		if len(out) > 1 && size > maxProduceBytes {
			id := newTxnID()
			h := []kafka.Header{{Key: txnHeader, Value: []byte(id)}}
			for i := range out {
				out[i].Headers = h
			}
			out = append(out, kafka.Record{Key: kafka.NewBytes(txnMarker(txnCommit, id)), Value: kafka.NewBytes([]byte{})})
		}
		o, err := l.produce(ctx, out)
		if err != nil {
			if start > 0 {
				return nil, fmt.Errorf("the first %d of %d records are in force (a change this large is written as transactions of %d), the rest failed: %w", start, len(recs), l.maxTxn, err)
			}
			return nil, err
		}
		offs = append(offs, o...)
	}
	return offs, nil
}

// produce writes recs in order to partition 0, in requests of at most
// maxProduceBytes (each given CommitTimeout), and returns their offsets.
func (l *ConfigLog) produce(ctx context.Context, recs []kafka.Record) ([]int64, error) {
	var offs []int64
	for start := 0; start < len(recs); {
		end, size := start, 0
		for end < len(recs) && (end == start || size < maxProduceBytes) {
			if v := recs[end].Value; v != nil {
				size += v.Len()
			}
			size += 64
			end++
		}
		rctx, cancel := context.WithTimeout(ctx, l.cfg.CommitTimeout)
		res, err := l.client.Produce(rctx, &kafka.ProduceRequest{Topic: l.topic, Partition: 0,
			RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(recs[start:end]...)})
		cancel()
		if err == nil {
			err = res.Error
			for _, e := range res.RecordErrors {
				err = e
				break
			}
		}
		if err != nil {
			if start > 0 {
				return nil, fmt.Errorf("%d of %d records written, the rest failed: %w", start, len(recs), err)
			}
			return nil, err
		}
		for i := start; i < end; i++ {
			offs = append(offs, res.BaseOffset+int64(i-start))
		}
		start = end
	}
	return offs, nil
}

// waitApplied waits until the view has applied the record at offset and
// the catalog in force holds it (it has caught up: see Run).
func (l *ConfigLog) waitApplied(ctx context.Context, offset int64) error {
	stop := context.AfterFunc(ctx, func() {
		l.mu.Lock()
		l.cond.Broadcast()
		l.mu.Unlock()
	})
	defer stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.next <= offset || l.next < l.target {
		if err := ctx.Err(); err != nil {
			return err
		}
		l.cond.Wait()
	}
	return nil
}
