package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

// ConfigLogConfig configures a ConfigLog.
type ConfigLogConfig struct {
	// Kafka names the cluster and the config topic. Required.
	Kafka Kafka
	// Snapshot is the file that keeps the materialised catalog and the
	// offset it reached, so that a node starts and serves while Kafka is
	// unreachable. "" keeps none.
	Snapshot string
	// Publish hands every new catalog to its users (the gateway). A
	// catalog it refuses is logged and skipped. Nil: none.
	Publish func(*catalog.Catalog) error
	// MaxWait is the longest a fetch waits for new records; changes
	// arrive as soon as they are written whatever it is. Default 500ms.
	MaxWait time.Duration
	// CommitTimeout bounds how long Commit waits for a change to be
	// written and read back. Default 10s.
	CommitTimeout time.Duration
	// Logger receives rejected records and connection trouble. Nil
	// discards.
	Logger *slog.Logger
	// Now stamps snapshots. Default time.Now.
	Now func() time.Time
}

// ConfigLog is the catalog shared through the config topic: it
// materialises the topic into a catalog.View (and publishes each new
// catalog), and it commits catalog changes by writing them to the topic
// and waiting until its own view has applied them, so that whoever made a
// change reads it back (read your writes).
type ConfigLog struct {
	cfg    ConfigLogConfig
	client *kafka.Client
	topic  string

	mu       sync.Mutex
	cond     *sync.Cond
	view     *catalog.View
	next     int64           // the offset to read next
	rejected map[int64]error // recent rejections, for Commit
	fresh    bool            // the view was rebuilt from the topic's start

	cur      atomic.Pointer[catalog.Catalog]
	loaded   chan struct{}
	loadOnce sync.Once
	dirty    bool // changed since the last snapshot
	saved    time.Time
	failures atomic.Uint64
}

var _ catalog.Committer = (*ConfigLog)(nil)

type configSnapshot struct {
	Topic   string                   `json:"topic"`
	Next    int64                    `json:"next"`
	SavedAt time.Time                `json:"savedAt"`
	Records []catalog.SnapshotRecord `json:"records"`
}

// OpenConfigLog loads the snapshot, if any, and publishes its catalog;
// Run then follows the topic.
func OpenConfigLog(cfg ConfigLogConfig) (*ConfigLog, error) {
	if err := cfg.Kafka.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 500 * time.Millisecond
	}
	if cfg.CommitTimeout == 0 {
		cfg.CommitTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Publish == nil {
		cfg.Publish = func(*catalog.Catalog) error { return nil }
	}
	l := &ConfigLog{cfg: cfg, client: cfg.Kafka.client(), topic: cfg.Kafka.Topics().Config,
		view: catalog.NewView(), rejected: map[int64]error{}, loaded: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	if err := l.loadSnapshot(); err != nil {
		return nil, err
	}
	c := l.view.Catalog()
	if err := cfg.Publish(c); err != nil {
		return nil, fmt.Errorf("publish the catalog snapshot: %w", err)
	}
	l.cur.Store(c)
	return l, nil
}

func (l *ConfigLog) loadSnapshot() error {
	var s configSnapshot
	if ok, err := readSnapshot(l.cfg.Snapshot, "catalog", &s); !ok {
		return err
	}
	if s.Topic != l.topic {
		l.cfg.Logger.Warn("catalog snapshot is of another topic; rebuilding from Kafka", "snapshot", s.Topic, "topic", l.topic)
		return nil
	}
	for _, r := range s.Records {
		if err := l.view.Apply(r.Offset, r.Key(), r.Value); err != nil {
			return fmt.Errorf("catalog snapshot %s: %w (delete it to rebuild from Kafka)", l.cfg.Snapshot, err)
		}
	}
	l.next, l.saved = s.Next, s.SavedAt
	return nil
}

// Current returns the catalog in force.
func (l *ConfigLog) Current() *catalog.Catalog { return l.cur.Load() }

// Loaded is closed once the view has caught up with the topic as it was
// when Run started.
func (l *ConfigLog) Loaded() <-chan struct{} { return l.loaded }

// Offset returns the offset the view reads next.
func (l *ConfigLog) Offset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next
}

// Failures counts failed fetches and catalogs the publisher refused.
func (l *ConfigLog) Failures() uint64 { return l.failures.Load() }

// Run follows the topic until ctx ends, applying records and publishing
// each new catalog; it retries while Kafka is unreachable (the catalog in
// force stays), and saves the snapshot at most once a second and when it
// returns.
func (l *ConfigLog) Run(ctx context.Context) error {
	defer l.saveSnapshot(true)
	wait := 100 * time.Millisecond
	var target int64 = -1 // the high watermark to reach before Loaded
	for ctx.Err() == nil {
		if target < 0 {
			first, hwm, err := offsets(ctx, l.client, l.topic, 0)
			if err != nil {
				l.retry(ctx, "read the config topic's offsets", err, &wait)
				continue
			}
			l.mu.Lock()
			if stale := l.cfg.Now().Sub(l.saved) > TombstoneRetention-24*time.Hour; l.next > hwm || l.next < first || (l.next > 0 && stale && !l.fresh) {
				// The snapshot may have missed deletes (the topic was
				// recreated, or tombstones expired): rebuild from the
				// start; the catalog in force serves meanwhile.
				l.cfg.Logger.Warn("catalog snapshot cannot be continued; rebuilding from the topic's start", "next", l.next, "first", first, "end", hwm)
				l.view, l.next, l.fresh = catalog.NewView(), first, true
			}
			l.mu.Unlock()
			target = hwm
			if l.Offset() >= target {
				l.markLoaded()
			}
		}
		recs, hwm, err := fetch(ctx, l.client, l.topic, 0, l.Offset(), l.cfg.MaxWait)
		if err != nil {
			l.retry(ctx, "fetch the config topic", err, &wait)
			continue
		}
		wait = 100 * time.Millisecond
		l.apply(recs, hwm)
		if l.Offset() >= target {
			l.markLoaded()
		}
		l.saveSnapshot(false)
	}
	return nil
}

func (l *ConfigLog) retry(ctx context.Context, doing string, err error, wait *time.Duration) {
	if ctx.Err() != nil {
		return
	}
	l.failures.Add(1)
	l.cfg.Logger.Warn("config log: "+doing+" failed; retrying", "err", err, "in", *wait)
	sleep(ctx, *wait)
	*wait = min(*wait*2, 5*time.Second)
}

func (l *ConfigLog) markLoaded() { l.loadOnce.Do(func() { close(l.loaded) }) }

// apply applies fetched records and publishes the result.
func (l *ConfigLog) apply(recs []record, hwm int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(recs) == 0 {
		if hwm > l.next {
			// Records compacted away between next and hwm.
			l.next = hwm
			l.cond.Broadcast()
		}
		return
	}
	for _, r := range recs {
		if err := l.view.Apply(r.offset, r.key, r.value); err != nil {
			l.cfg.Logger.Warn("config record rejected", "offset", r.offset, "err", err)
			l.rejected[r.offset] = err
		}
		l.next = r.offset + 1
	}
	for off := range l.rejected {
		if off < l.next-100_000 {
			delete(l.rejected, off) // nobody waits that long
		}
	}
	c := l.view.Catalog()
	if err := l.cfg.Publish(c); err != nil {
		l.failures.Add(1)
		l.cfg.Logger.Error("the gateway refused the catalog from the config log; keeping the one in force", "next", l.next, "err", err)
	} else {
		l.cur.Store(c)
	}
	l.dirty = true
	l.cond.Broadcast()
}

// saveSnapshot writes the snapshot if it changed, at most once a second
// unless final.
func (l *ConfigLog) saveSnapshot(final bool) {
	if l.cfg.Snapshot == "" {
		return
	}
	l.mu.Lock()
	if !l.dirty || (!final && l.cfg.Now().Sub(l.saved) < time.Second) {
		l.mu.Unlock()
		return
	}
	s := configSnapshot{Topic: l.topic, Next: l.next, SavedAt: l.cfg.Now(), Records: l.view.Snapshot()}
	l.dirty, l.saved, l.fresh = false, s.SavedAt, false
	l.mu.Unlock()
	if err := writeSnapshot(l.cfg.Snapshot, &s); err != nil {
		l.cfg.Logger.Error("save catalog snapshot", "err", err)
	}
}

// Commit writes the records that turn old into next and waits until this
// node's view has applied them. If the view rejected one (another writer
// took a name or key value first), the change is undone — its entities
// written back as they were — and the error wraps catalog.ErrConflict.
func (l *ConfigLog) Commit(ctx context.Context, old, next *catalog.Catalog) (*catalog.Catalog, error) {
	recs, err := catalog.ChangeRecords(old, next)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return l.Current(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.CommitTimeout)
	defer cancel()
	offs, err := l.write(ctx, recs)
	if err != nil {
		return nil, fmt.Errorf("%w: write the change to %s: %v", catalog.ErrUnavailable, l.topic, err)
	}
	if err := l.waitApplied(ctx, offs[len(offs)-1]); err != nil {
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
		return l.Current(), nil
	}
	// Undo at once: records rejected now must not survive to be
	// reordered by compaction (see catalog.View), and a change is whole
	// or not at all.
	undo, err := catalog.ChangeRecords(next, old)
	if err == nil {
		var uoffs []int64
		if uoffs, err = l.write(context.WithoutCancel(ctx), undo); err == nil && len(uoffs) > 0 {
			err = l.waitApplied(ctx, uoffs[len(uoffs)-1])
		}
	}
	if err != nil {
		l.cfg.Logger.Error("undo a rejected change", "err", err)
	}
	return nil, fmt.Errorf("%w: %v", catalog.ErrConflict, errors.Join(conflicts...))
}

// maxProduceBytes bounds one produce request (brokers refuse batches over
// message.max.bytes, 1 MiB by default).
const maxProduceBytes = 512 << 10

// write produces recs in order to partition 0 and returns their offsets.
func (l *ConfigLog) write(ctx context.Context, recs []schemas.ConfigRecord) ([]int64, error) {
	var offs []int64
	var batch []kafka.Record
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := l.client.Produce(ctx, &kafka.ProduceRequest{Topic: l.topic, Partition: 0,
			RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(batch...)})
		if err == nil {
			err = res.Error
		}
		if err == nil && len(res.RecordErrors) > 0 {
			for _, e := range res.RecordErrors {
				err = e
				break
			}
		}
		if err != nil {
			return err
		}
		for i := range batch {
			offs = append(offs, res.BaseOffset+int64(i))
		}
		batch, size = batch[:0], 0
		return nil
	}
	for i := range recs {
		var value []byte
		if !recs[i].Tombstone() {
			var err error
			if value, err = schemas.EncodeConfigRecord(&recs[i]); err != nil {
				return nil, err
			}
		}
		if size+len(value) > maxProduceBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		batch = append(batch, kafka.Record{Key: kafka.NewBytes([]byte(recs[i].Key())), Value: kafka.NewBytes(value)})
		size += len(value) + 64
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return offs, nil
}

// waitApplied waits until the view has applied the record at offset.
func (l *ConfigLog) waitApplied(ctx context.Context, offset int64) error {
	stop := context.AfterFunc(ctx, func() {
		l.mu.Lock()
		l.cond.Broadcast()
		l.mu.Unlock()
	})
	defer stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.next <= offset {
		if err := ctx.Err(); err != nil {
			return err
		}
		l.cond.Wait()
	}
	return nil
}
