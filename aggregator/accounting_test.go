package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/aggregator/aggstore"
	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/internal/chtest"
	"github.com/tollgate/tollgate/internal/kafkatest"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/chstore"
	"github.com/twmb/franz-go/pkg/kfake"
)

// rig is a Kafka cluster, a ClickHouse database behind a proxy that can
// cut its connections, and the events written so far.
type rig struct {
	t      testing.TB
	k      ingest.Kafka
	store  *chstore.Store // through the proxy
	direct *chstore.Store // not: for the test's own reads
	proxy  *kafkatest.Proxy
	dsn    string               // the test's database
	sent   []schemas.UsageEvent // every event once, as the oracle counts them
	// insertFailures counts failed WriteBatch calls of every aggregator.
	insertFailures atomic.Int64
	// cut, when set, runs once, at the start of the next WriteBatch of
	// any aggregator (one that runs, unlike a flush whose generation
	// ends before it inserts).
	cut     atomic.Value
	parts   int
	cluster *kfake.Cluster
}

func newRig(t testing.TB) *rig { return newRigN(t, 4) }

// newRigN is newRig with n partitions.
func newRigN(t testing.TB, n int) *rig {
	t.Helper()
	dsn := chtest.Database(t)
	ctx := context.Background()
	direct, err := chstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })
	if _, err := direct.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(dsn)
	px := kafkatest.NewProxy(t, u.Host)
	u.Host = px.Addr()
	store, err := chstore.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cluster, brokers := kafkatest.Start(t)
	k := ingest.Kafka{Brokers: brokers, Partitions: n, Timeout: 5 * time.Second}
	if _, err := ingest.Migrate(ctx, k); err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, k: k, store: store, direct: direct, proxy: px, dsn: dsn, parts: n, cluster: cluster}
}

// produce writes n events with known ids over three days, and writes a
// share dup of them a second time (as producer retries do), close to the
// first copy.
func (r *rig) produce(n int, dup float64, rng *rand.Rand) {
	r.produceOver(n, dup, 72*time.Hour, rng)
}

// produceOver is produce with the events' times spread over span: a
// span of a day or more ends at the start of today, a shorter one now.
func (r *rig) produceOver(n int, dup float64, span time.Duration, rng *rand.Rand) {
	r.t.Helper()
	now := time.Now().Truncate(24 * time.Hour).Add(-span).UnixNano()
	if span < 24*time.Hour {
		now = time.Now().Add(-span).UnixNano()
	}
	const chunk = 4096
	r.sent = slices.Grow(r.sent, n)
	var all []schemas.UsageEvent // in the order written: each chunk, then its copies
	batch := make([]schemas.UsageEvent, 0, chunk+chunk/10)
	for start := 0; start < n; start += chunk {
		batch = batch[:0]
		var again []schemas.UsageEvent
		for i := start; i < min(start+chunk, n); i++ {
			// Time moves forward as in traffic (a batch crosses a
			// midnight at most once), with a little disorder.
			at := now + int64(i)*int64(span)/int64(n) + rng.Int64N(int64(time.Second))
			e := schemas.UsageEvent{ID: schemas.NewEventID(at), Time: at, APIID: "api", Stage: "prod",
				KeyID: fmt.Sprintf("k%03d", rng.IntN(300)), PlanID: "plan", Method: "GET", Resource: "/items",
				Status: 200, Decision: schemas.DecisionAllowed, LatencyMicros: 100, Node: fmt.Sprintf("n%d", rng.IntN(3))}
			if rng.IntN(10) == 0 {
				e.Status, e.Decision = 429, schemas.DecisionThrottled
			}
			batch = append(batch, e)
			if rng.Float64() < dup {
				again = append(again, e)
			}
		}
		all = append(append(all, batch...), again...)
		r.sent = append(r.sent, batch...)
	}
	r.produceEvents(all)
}

// aggregatorRun is one aggregator process.
type aggregatorRun struct {
	a      *Aggregator
	cancel context.CancelFunc
	done   chan error
}

func (r *rig) start(cfg Config) *aggregatorRun {
	r.t.Helper()
	cfg.Kafka = r.k
	switch {
	case cfg.Store != nil: // the test's own
	case os.Getenv("AGG_DIRECT") != "":
		cfg.Store = r.direct
	default:
		cfg.Store = countingStore{r.store, r}
	}
	if cfg.Catalog == nil {
		cfg.Catalog = func() *catalog.State { return catalog.NewState() }
	}
	if cfg.FlushEvents == 0 {
		cfg.FlushEvents = 4096
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 200 * time.Millisecond
	}
	if os.Getenv("AGG_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &aggregatorRun{a: a, cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- a.Run(ctx) }()
	return run
}

func (run *aggregatorRun) stop(t testing.TB) {
	t.Helper()
	run.cancel()
	select {
	case err := <-run.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("aggregator did not stop within 60s")
	}
}

// drained waits until the store holds every partition to its end. It
// reads the watermarks (a scan of each table) every 200ms, so as not to
// take the server from the aggregator.
func (r *rig) drained(timeout time.Duration) {
	t := r.t
	t.Helper()
	f := r.k.Fetcher()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		done := true
		wms, err := r.direct.Watermarks(ctx, r.partitions())
		for p := 0; p < r.parts && err == nil; p++ {
			_, end, ferr := f.Offsets(ctx, r.k.Topics().Events, p)
			if ferr != nil {
				err = ferr
				break
			}
			wm, ok := wms[p]
			if !ok || wm.Covered() < end-1 {
				done = false
			}
		}
		if err == nil && done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not drained after %v (watermarks %v, err %v)", timeout, wms, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// mismatches compares the store's counts per key per day with the
// oracle's, from the ids sent.
func (r *rig) mismatches() (n int, detail string) {
	t := r.t
	t.Helper()
	type kd struct {
		day      int64
		plan, ky string
	}
	want := map[kd][2]int64{}
	minDay, maxDay := int64(1<<62), int64(0)
	for _, e := range r.sent {
		d := e.Time / 86400e9
		minDay, maxDay = min(minDay, d), max(maxDay, d)
		c := want[kd{d, e.PlanID, e.KeyID}]
		if e.Admitted() {
			c[0]++
		} else {
			c[1]++
		}
		want[kd{d, e.PlanID, e.KeyID}] = c
	}
	rows, err := r.direct.Daily(context.Background(), usage.Filter{FromDay: minDay, ToDay: maxDay})
	if err != nil {
		t.Fatal(err)
	}
	got := map[kd][2]int64{}
	for _, row := range rows {
		got[kd{row.Day, row.PlanID, row.KeyID}] = [2]int64{row.Admitted, row.Rejected}
	}
	for k, w := range want {
		if g := got[k]; g != w {
			if n == 0 {
				detail = fmt.Sprintf("day %d key %s: stored %v, sent %v", k.day, k.ky, g, w)
			}
			n++
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			n++
		}
	}
	return n, detail
}

// storedTwice describes the records usage_events holds more than once:
// per partition, how many rows, the range of their offsets and the tags
// of the batches that wrote them, so that a failure says which batches
// were written twice.
func (r *rig) storedTwice() string {
	ctx := context.Background()
	opts, err := clickhouse.ParseDSN(r.dsn)
	if err != nil {
		return err.Error()
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, `SELECT src_partition, groupArray(src_offset), min(kafka_offset), max(kafka_offset), count() FROM (
	SELECT src_partition, kafka_offset, groupArray(src_offset) AS tags, count() AS n FROM usage_events
	WHERE kafka_offset >= 0 GROUP BY src_partition, kafka_offset HAVING n > 1
) ARRAY JOIN tags AS src_offset GROUP BY src_partition ORDER BY src_partition`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var (
			p      uint16
			tags   []int64
			lo, hi int64
			n      uint64
		)
		if err := rows.Scan(&p, &tags, &lo, &hi, &n); err != nil {
			return err.Error()
		}
		slices.Sort(tags)
		tags = slices.Compact(tags)
		fmt.Fprintf(&b, "[partition %d: %d rows of offsets %d-%d, tags %v] ", p, n, lo, hi, tags)
	}
	if b.Len() == 0 {
		return "none in usage_events"
	}
	return b.String()
}

// killer crashes aggregators at chosen flushes: the n-th flush of the
// whole test, before its insert or after it (before the commit).
type killer struct {
	flushes atomic.Int64
	mu      sync.Mutex
	points  map[int64]string // flush number → "before" or "after"
	killed  chan struct{}
}

func newKiller(rng *rand.Rand, kills int, within int64) *killer {
	k := &killer{points: map[int64]string{}, killed: make(chan struct{}, kills)}
	for len(k.points) < kills {
		where := "before"
		if rng.IntN(2) == 0 {
			where = "after"
		}
		k.points[1+rng.Int64N(within)] = where
	}
	return k
}

func (k *killer) hooks() hooks {
	var mu sync.Mutex
	cur := map[int]int64{} // partition → the number of its flush under way
	// A point fires at its flush, or at the first flush of its kind
	// after it (its own flush may never get there: a rebalance, or the
	// kill of another partition's worker, ends it first).
	at := func(n int64, where string) bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		for p, w := range k.points {
			if p <= n && w == where {
				delete(k.points, p)
				k.killed <- struct{}{}
				return true
			}
		}
		return false
	}
	return hooks{
		beforeInsert: func(p int) bool {
			n := k.flushes.Add(1)
			mu.Lock()
			cur[p] = n
			mu.Unlock()
			return at(n, "before")
		},
		afterInsert: func(p int) bool {
			mu.Lock()
			n := cur[p]
			mu.Unlock()
			return at(n, "after")
		},
	}
}

// 200k events with known ids (2% written twice) through Kafka into
// ClickHouse while aggregators are killed at 5 random points (between
// fetch and insert, and between insert and commit), a second aggregator
// joins then leaves (two rebalances), and the connections to ClickHouse
// are cut: afterwards the counts per key per day equal the oracle's.
func TestAccountingExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("200k events through ClickHouse")
	}
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 5))
	r := newRig(t)
	r.produce(200_000, 0.02, rng)
	kill := newKiller(rng, 5, 12)
	a := r.start(Config{hooks: kill.hooks()})
	var second *aggregatorRun
	for kills := 0; kills < 5; {
		select {
		case <-kill.killed:
			kills++
			a.stop(t)
			a = r.start(Config{hooks: kill.hooks()})
			switch kills {
			case 2:
				second = r.start(Config{}) // joins: a rebalance
			case 3:
				// The next insert finds its connections cut, until an
				// insert has failed (at most 5s: the test then fails).
				r.cut.Store(func() {
					r.proxy.CutConnections(t)
					before := r.insertFailures.Load()
					go func() {
						for deadline := time.Now().Add(5 * time.Second); r.insertFailures.Load() == before && time.Now().Before(deadline); {
							time.Sleep(10 * time.Millisecond)
						}
						r.proxy.Restore(t)
					}()
				})
			case 4:
				second.stop(t) // leaves: another rebalance
			}
		case <-time.After(90 * time.Second):
			t.Fatalf("only %d of 5 kills happened in 90s (flushes %d)", kills, kill.flushes.Load())
		}
	}
	r.drained(90 * time.Second)
	a.stop(t)
	if n, detail := r.mismatches(); n != 0 {
		t.Fatalf("%d (day, key) counts differ from the oracle; first: %s; records stored twice: %s", n, detail, r.storedTwice())
	}
	insertFailures := r.insertFailures.Load()
	if insertFailures == 0 {
		t.Fatal("no insert failed: the cut connections were not exercised")
	}
	t.Logf("insert failures (cut connections), all retried: %d", insertFailures)
	t.Logf("flushes %d; last aggregator: %+v", kill.flushes.Load(), a.a.Stats())
}

// testSeed returns the seed of a randomized test: TOLLGATE_ACCOUNTING_SEED
// if set (to replay a failure), else a new one. It is logged either way.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TOLLGATE_ACCOUNTING_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("TOLLGATE_ACCOUNTING_SEED %q: not an unsigned integer: %v", s, err)
		}
	}
	t.Logf("seed %d (replay with TOLLGATE_ACCOUNTING_SEED=%d)", seed, seed)
	return seed
}

// The negative control: without the watermarks and the id window, the
// same kind of run counts events twice, and the comparison catches it.
func TestAccountingNegativeControl(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	r := newRig(t)
	r.produce(20_000, 0.05, rng)
	kill := newKiller(rng, 1, 3)
	for p := range kill.points {
		kill.points[p] = "after" // stored, not committed: read again
	}
	a := r.start(Config{hooks: kill.hooks(), dedupOff: true, FlushEvents: 2048})
	select {
	case <-kill.killed:
	case <-time.After(60 * time.Second):
		t.Fatalf("no kill in 60s (flushes %d, points %v, stats %+v)", kill.flushes.Load(), kill.points, a.a.Stats())
	}
	a.stop(t)
	a = r.start(Config{dedupOff: true, FlushEvents: 2048})
	defer a.stop(t)
	deadline := time.Now().Add(60 * time.Second)
	for a.a.Stats().Stored == 0 || r.lag() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the second aggregator did not catch up in 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n, _ := r.mismatches(); n == 0 {
		t.Fatal("with dedup off the counts still matched the oracle: the accounting test could not catch double counting")
	}
}

// lag is how many records the group has not committed, over partitions.
func (r *rig) lag() int64 {
	f := r.k.Fetcher()
	ctx := context.Background()
	wms, err := r.direct.Watermarks(ctx, r.partitions())
	if err != nil {
		return 1
	}
	var lag int64
	for p := 0; p < r.parts; p++ {
		_, end, err := f.Offsets(ctx, r.k.Topics().Events, p)
		if err != nil {
			return 1
		}
		wm, ok := wms[p]
		if !ok {
			lag += end
			continue
		}
		lag += max(end-1-wm.Done[chstore.TableRaw], 0)
	}
	return lag
}

// A poison record (not a usage event, or one with absurd values) goes to
// the dead-letter topic, counted, and the partition goes on.
func TestPoisonGoesToTheDeadLetterTopic(t *testing.T) {
	r := newRig(t)
	rng := rand.New(rand.NewPCG(3, 4))
	r.produce(1000, 0, rng)
	w := &kafka.Writer{Addr: kafka.TCP(r.k.Brokers...), Topic: r.k.Topics().Events, Balancer: &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	absurd := schemas.UsageEvent{ID: schemas.NewEventID(1), Time: 1, KeyID: "k001", Status: 200, Decision: schemas.DecisionAllowed}
	if err := w.WriteMessages(context.Background(),
		kafka.Message{Key: []byte("k001"), Value: []byte("not a usage event")},
		kafka.Message{Key: []byte("k001"), Value: schemas.AppendUsageEvent(nil, &absurd)}, // 1970
	); err != nil {
		t.Fatal(err)
	}
	r.produce(1000, 0, rng) // after the poison, in the same partitions
	a := r.start(Config{})
	defer a.stop(t)
	r.drained(60 * time.Second)
	if n, detail := r.mismatches(); n != 0 {
		t.Fatalf("%d counts differ: %s", n, detail)
	}
	if st := a.a.Stats(); st.Poison != 2 || st.DeadLetterFailures != 0 {
		t.Fatalf("stats %+v, want 2 poison records, all sent", st)
	}
	dlq := kafka.NewReader(kafka.ReaderConfig{Brokers: r.k.Brokers, Topic: r.k.Topics().DeadLetter, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer dlq.Close()
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		m, err := dlq.ReadMessage(ctx)
		cancel()
		if err != nil {
			t.Fatalf("dead letter %d: %v", i, err)
		}
		var reason string
		for _, h := range m.Headers {
			if h.Key == "tollgate-error" {
				reason = string(h.Value)
			}
		}
		if string(m.Key) != "k001" || reason == "" {
			t.Fatalf("dead letter %d: key %q reason %q", i, m.Key, reason)
		}
	}
}

func (r *rig) partitions() []int {
	out := make([]int, r.parts)
	for i := range out {
		out[i] = i
	}
	return out
}

// countingStore counts failed inserts, and cuts the connections when the
// rig says so.
type countingStore struct {
	*chstore.Store
	r *rig
}

func (s countingStore) WriteBatch(ctx context.Context, b *aggstore.Batch, wm aggstore.Watermark) (aggstore.Watermark, error) {
	if f, ok := s.r.cut.Swap(func() {}).(func()); ok {
		f() // this insert finds its connections cut
	}
	wm, err := s.Store.WriteBatch(ctx, b, wm)
	if err != nil {
		s.r.insertFailures.Add(1)
	}
	return wm, err
}

// An insert that landed although its caller saw an error (its reply was
// lost), then a failure to read back what the store holds: the batch is
// not written again until the store has said what it holds. Each failure
// happens once, in that order, on the first batch.
func TestLostReplyThenFailedReadBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	r := newRigN(t, 1)
	r.produce(3000, 0, rng)
	st := &lostReplyStore{Store: r.direct}
	a := r.start(Config{Store: st, FlushEvents: 1000})
	r.drained(60 * time.Second)
	a.stop(t)
	if st.lost.Load() != 1 || st.unread.Load() != 1 {
		t.Fatalf("lost replies %d, failed read-backs %d: want 1 of each (the failures did not happen as the test means)", st.lost.Load(), st.unread.Load())
	}
	if n, detail := r.mismatches(); n != 0 {
		t.Fatalf("%d (day, key) counts differ from the oracle; first: %s; records stored twice: %s", n, detail, r.storedTwice())
	}
}

// lostReplyStore stores the first batch but answers its WriteBatch with
// an error, then fails the ReadBack that follows.
type lostReplyStore struct {
	*chstore.Store
	lost, unread atomic.Int64
}

var errInjected = errors.New("injected: connection reset by peer")

func (s *lostReplyStore) WriteBatch(ctx context.Context, b *aggstore.Batch, given aggstore.Watermark) (aggstore.Watermark, error) {
	wm, err := s.Store.WriteBatch(ctx, b, given)
	if err == nil && s.lost.CompareAndSwap(0, 1) {
		// Stored, but the reply of the first INSERT was lost: WriteBatch
		// returns at once, with no table known to be written.
		return given, errInjected
	}
	return wm, err
}

func (s *lostReplyStore) ReadBack(ctx context.Context, b *aggstore.Batch, before aggstore.Watermark) (aggstore.Watermark, error) {
	if s.lost.Load() == 1 && s.unread.CompareAndSwap(0, 1) {
		return before, errInjected
	}
	return s.Store.ReadBack(ctx, b, before)
}
