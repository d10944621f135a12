package ingest

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tollgate/tollgate/internal/kafkatest"
	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/schemas"
)

// These tests run a Sink with a real EventProducer against an in-process
// broker (kfake over TCP) and read the topics back. Where an outage must
// start and end at a known point, a switchProducer stands in front of the
// EventProducer; everything on the Kafka side is real.

const sinkKeys = 10

// sinkEvents returns events from..from+n-1 (see spillEvent), spread over
// sinkKeys API keys so that they land on every partition. Time grows with
// the index: within a key it gives the order the sink was handed them.
func sinkEvents(from, n int) []schemas.UsageEvent {
	out := spillEvents(from, n)
	for i := range out {
		out[i].KeyID = "key-" + strconv.Itoa((from+i)%sinkKeys)
	}
	return out
}

// sinkCluster starts a broker with tollgate's topics, four events
// partitions.
func sinkCluster(t testing.TB) (*kfake.Cluster, Kafka) {
	t.Helper()
	cluster, brokers := kafkatest.Start(t)
	k := Kafka{Brokers: brokers, Partitions: 4, Timeout: 5 * time.Second}
	if _, err := Migrate(context.Background(), k); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return cluster, k
}

func newTestEventProducer(t testing.TB, k Kafka) *EventProducer {
	t.Helper()
	p, err := NewEventProducer(k)
	if err != nil {
		t.Fatalf("NewEventProducer: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newTestSink(t testing.TB, cfg SinkConfig) *Sink {
	t.Helper()
	if cfg.ProduceTimeout == 0 {
		// Far above the producer's own retries (100ms + 400ms of
		// backoff), so that only the tests that mean to see a timeout
		// see one.
		cfg.ProduceTimeout = 5 * time.Second
	}
	cfg.RetryMin, cfg.RetryMax = 5*time.Millisecond, 50*time.Millisecond
	s, err := NewSink(cfg)
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	return s
}

// runSink runs s.Run until the returned stop is called (or the test ends).
func runSink(t testing.TB, s *Sink) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func sinkWrite(t testing.TB, s *Sink, events []schemas.UsageEvent) {
	t.Helper()
	if err := s.WriteEvents(context.Background(), events); err != nil {
		t.Fatalf("WriteEvents(%d events): %v", len(events), err)
	}
}

// switchProducer fails every batch, writing nothing, until it is switched
// up; then it hands batches to up. down, if set, is called instead of
// failing outright (a real producer to a dead broker).
type switchProducer struct {
	up, down Producer
	isUp     atomic.Bool
	calls    atomic.Int64
}

var _ Producer = (*switchProducer)(nil)

var errKafkaDown = errors.New("kafka is down (test)")

func (p *switchProducer) Produce(ctx context.Context, events []schemas.UsageEvent) ([]schemas.UsageEvent, error) {
	p.calls.Add(1)
	switch {
	case p.isUp.Load():
		return p.up.Produce(ctx, events)
	case p.down != nil:
		return p.down.Produce(ctx, events)
	default:
		return events, errKafkaDown
	}
}

// readTopic returns every record of topic, per partition in offset order.
func readTopic(t testing.TB, k Kafka, topic string) [][]record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := k.client()
	meta, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		t.Fatalf("metadata of %s: %+v, %v", topic, meta, err)
	}
	out := make([][]record, len(meta.Topics[0].Partitions))
	for p := range out {
		_, next, err := offsets(ctx, c, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		for off := int64(0); off < next; {
			recs, _, err := fetch(ctx, c, topic, p, off, 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				out[p] = append(out[p], r)
				off = r.offset + 1
			}
		}
	}
	return out
}

// readEvents decodes the events topic, per partition in offset order, and
// checks that every record is keyed by its event's API key id.
func readEvents(t testing.TB, k Kafka) [][]schemas.UsageEvent {
	t.Helper()
	parts := readTopic(t, k, k.Topics().Events)
	out := make([][]schemas.UsageEvent, len(parts))
	for p, recs := range parts {
		for _, r := range recs {
			var e schemas.UsageEvent
			if err := schemas.DecodeUsageEvent(r.value, &e); err != nil {
				t.Fatalf("partition %d offset %d: %v", p, r.offset, err)
			}
			if string(r.key) != e.KeyID {
				t.Fatalf("partition %d offset %d: record key %q, event key %q", p, r.offset, r.key, e.KeyID)
			}
			out[p] = append(out[p], e)
		}
	}
	return out
}

// checkDelivered checks that the topic holds every written event and no
// other, and returns how many records were second copies (allowed: the
// consumer drops them by id).
func checkDelivered(t testing.TB, written []schemas.UsageEvent, topic [][]schemas.UsageEvent) (dups int) {
	t.Helper()
	want := make(map[schemas.EventID]bool, len(written))
	for i := range written {
		want[written[i].ID] = true
	}
	seen := make(map[schemas.EventID]bool, len(written))
	for _, evs := range topic {
		for i := range evs {
			id := evs[i].ID
			switch {
			case !want[id]:
				t.Fatalf("the topic holds event %v (time %d), which was never written", id, evs[i].Time)
			case seen[id]:
				dups++
			}
			seen[id] = true
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("the topic holds %d distinct events, want %d (%d lost)", len(seen), len(want), len(want)-len(seen))
	}
	return dups
}

// checkKeyOrder checks that each key is in one partition and that its
// events, second copies skipped, come in the order they were written
// (increasing Time, see sinkEvents).
func checkKeyOrder(t testing.TB, topic [][]schemas.UsageEvent) {
	t.Helper()
	partOf := map[string]int{}
	last := map[string]int64{}
	seen := map[schemas.EventID]bool{}
	for p, evs := range topic {
		for i := range evs {
			e := &evs[i]
			if q, ok := partOf[e.KeyID]; ok && q != p {
				t.Fatalf("key %s in partitions %d and %d", e.KeyID, q, p)
			}
			partOf[e.KeyID] = p
			if seen[e.ID] {
				continue
			}
			seen[e.ID] = true
			if prev, ok := last[e.KeyID]; ok && e.Time <= prev {
				t.Fatalf("partition %d: key %s: event %d after event %d", p, e.KeyID, e.Time-spillT0, prev-spillT0)
			}
			last[e.KeyID] = e.Time
		}
	}
}

// produceError answers a produce request with code for every partition,
// writing nothing.
func produceError(req *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// The broker refuses produce requests for a while, then writes some but
// answers with an error (so they are written again): every event ends up
// in the topic, in order per key, none lost. Second copies are allowed —
// consumers drop them by event id — but the distinct ids must be exactly
// the events written.
func TestSinkProduceFailuresLoseNothing(t *testing.T) {
	cluster, k := sinkCluster(t)
	// 4 partitions x 3 attempts: the first batch fails on every
	// partition it touches, whichever way the attempts interleave.
	const refuse = 12
	var refused atomic.Int64
	cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if refused.Load() >= refuse {
			return nil, nil, false // from now on the broker answers
		}
		refused.Add(1)
		cluster.KeepControl()
		return produceError(req.(*kmsg.ProduceRequest), kerr.NotEnoughReplicas.Code), nil, true
	})
	// Then two requests are written but answered with an error: the
	// producer retries them, which writes their events twice.
	afterAppend := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicasAfterAppend, Count: 2})

	spill := openTestSpill(t, SpillConfig{Dir: t.TempDir()})
	sink := newTestSink(t, SinkConfig{Producer: newTestEventProducer(t, k), Spill: spill})
	runSink(t, sink)
	var written []schemas.UsageEvent
	for b := range 8 {
		batch := sinkEvents(b*250, 250)
		sinkWrite(t, sink, batch)
		written = append(written, batch...)
	}
	// Replayed is counted just after the log shrinks: wait for both.
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "the spill log to be replayed", func() bool {
		st := sink.Stats()
		return st.Pending == 0 && st.Replayed == st.Spilled
	})
	// Kafka is back: batches go straight to it again.
	batch := sinkEvents(2000, 250)
	sinkWrite(t, sink, batch)
	written = append(written, batch...)

	st := sink.Stats()
	if refused.Load() != refuse || afterAppend.Hits() != 2 {
		t.Fatalf("broker refused %d requests (want %d), failed %d after appending (want 2)", refused.Load(), refuse, afterAppend.Hits())
	}
	if st.Spilled == 0 || st.Failures == 0 || st.Produced < 250 {
		t.Fatalf("stats %+v: the refused batch was not spilled, or the last not produced", st)
	}
	if st.Produced+st.Spilled != uint64(len(written)) || st.Replayed != st.Spilled || st.Dropped != 0 {
		t.Fatalf("stats %+v: produced + spilled must be the %d events written, all spilled replayed, none dropped", st, len(written))
	}
	topic := readEvents(t, k)
	dups := checkDelivered(t, written, topic)
	checkKeyOrder(t, topic)
	if dups == 0 {
		t.Fatal("no second copies: the after-append failures were not retried")
	}
	t.Logf("%d events, %d spilled and replayed, %d second copies", len(written), st.Spilled, dups)
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// While the broker is down (refusing connections, or taking produce
// requests and never answering), WriteEvents spills and returns nil,
// waiting on the producer at most ProduceTimeout once per outage; when it
// is back, Run replays the log in order, and later batches follow it.
func TestSinkBrokerDownSpillsThenReplaysInOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		down func(t *testing.T) Producer
	}{
		{"refused", func(t *testing.T) Producer {
			return newTestEventProducer(t, Kafka{Brokers: []string{closedAddr(t)}, Timeout: time.Second})
		}},
		{"silent", func(t *testing.T) Producer {
			// A broker that takes produce requests and never answers.
			cluster, k := sinkCluster(t)
			cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				cluster.KeepControl()
				return nil, nil, true
			})
			k.Timeout = time.Second
			p := newTestEventProducer(t, k)
			// Closed before the producer, so that its Close does not
			// wait out the requests still in flight.
			t.Cleanup(cluster.Close)
			return p
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, k := sinkCluster(t)
			p := &switchProducer{up: newTestEventProducer(t, k), down: tc.down(t)}
			spill := openTestSpill(t, SpillConfig{Dir: t.TempDir()})
			const timeout = 200 * time.Millisecond
			sink := newTestSink(t, SinkConfig{Producer: p, Spill: spill, ProduceTimeout: timeout})

			var written []schemas.UsageEvent
			for b := range 4 {
				batch := sinkEvents(b*100, 100)
				start := time.Now()
				sinkWrite(t, sink, batch)
				// Only the first batch waits on the producer; the others
				// go straight to the spill log (an fsync).
				if took, limit := time.Since(start), timeout+time.Second; b == 0 && took > limit || b > 0 && took > timeout {
					t.Fatalf("batch %d: WriteEvents took %v", b, took)
				}
				written = append(written, batch...)
			}
			st := sink.Stats()
			if p.calls.Load() != 1 || st.Produced != 0 || st.Spilled != uint64(len(written)) || st.Pending != int64(len(written)) {
				t.Fatalf("broker down: %d produce calls (want 1), stats %+v", p.calls.Load(), st)
			}
			// Nothing was acknowledged: every byte written is pending.
			if st.SpilledBytes == 0 || st.SpilledBytes != uint64(st.PendingBytes) {
				t.Errorf("broker down: %d bytes spilled, %d pending, want the same, not 0", st.SpilledBytes, st.PendingBytes)
			}
			var h dto.Metric
			if err := sink.produceTime.Write(&h); err != nil || h.GetHistogram().GetSampleCount() != 1 {
				t.Errorf("produce latency: %v observations (%v), want the one call", h.GetHistogram().GetSampleCount(), err)
			}

			// The outage's sink stops here, its log on disk. A sink over
			// the same log takes over with a producer timeout that leaves
			// room for -race: a write that times out is still in flight,
			// and would be written twice. Its Run retries while Kafka is
			// still down, then replays once it is back.
			live := &switchProducer{up: p.up}
			sink = newTestSink(t, SinkConfig{Producer: live, Spill: spill})
			runSink(t, sink)
			poll.Until(t, 10*time.Second, 5*time.Millisecond, "failed replays", func() bool { return sink.Stats().Failures >= 2 })
			live.isUp.Store(true)
			// Replayed is counted just after the log shrinks: wait for both.
			poll.Until(t, 10*time.Second, 5*time.Millisecond, "the spill log to be replayed", func() bool {
				st := sink.Stats()
				return st.Pending == 0 && st.Replayed == 400
			})
			batch := sinkEvents(400, 100)
			sinkWrite(t, sink, batch)
			written = append(written, batch...)
			if st := sink.Stats(); st.Produced != 100 || st.Spilled != 0 {
				t.Fatalf("after recovery: stats %+v, want the last 100 events produced", st)
			}

			topic := readEvents(t, k)
			if dups := checkDelivered(t, written, topic); dups != 0 {
				t.Fatalf("%d second copies; the dead broker wrote nothing and replays succeeded first time", dups)
			}
			checkKeyOrder(t, topic)
		})
	}
}

// Batches spilled before a restart are produced by the next process: a
// new Spill on the same folder, a new Sink, Drain.
func TestSinkDrainAfterRestart(t *testing.T) {
	_, k := sinkCluster(t)
	dir := t.TempDir()

	spill, err := OpenSpill(SpillConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	down := newTestSink(t, SinkConfig{Producer: &switchProducer{}, Spill: spill})
	var written []schemas.UsageEvent
	for b := range 5 {
		batch := sinkEvents(b*200, 200)
		sinkWrite(t, down, batch)
		written = append(written, batch...)
	}
	if err := spill.Close(); err != nil {
		t.Fatal(err)
	}

	spill = openTestSpill(t, SpillConfig{Dir: dir})
	if n := spill.Len(); n != int64(len(written)) {
		t.Fatalf("reopened spill holds %d events, want %d", n, len(written))
	}
	sink := newTestSink(t, SinkConfig{Producer: newTestEventProducer(t, k), Spill: spill})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sink.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if st := sink.Stats(); st.Pending != 0 || st.Replayed != uint64(len(written)) {
		t.Fatalf("after Drain: stats %+v", st)
	}
	topic := readEvents(t, k)
	if dups := checkDelivered(t, written, topic); dups != 0 {
		t.Fatalf("%d second copies", dups)
	}
	checkKeyOrder(t, topic)
}

// At its cap the spill log drops events; Dropped counts exactly those,
// and once Kafka is back the lost-usage topic reports them: per key, the
// same count, admitted count and node.
func TestSinkSpillCapReportsLostUsage(t *testing.T) {
	_, k := sinkCluster(t)
	const n = 100
	recBytes := spillRecordSize(sinkEvents(0, n))
	spill := openTestSpill(t, SpillConfig{Dir: t.TempDir(), MaxBytes: 2*recBytes + recBytes/2, Node: "node-1"})
	p := &switchProducer{up: newTestEventProducer(t, k)}
	lost := NewLostProducer(k)
	t.Cleanup(func() { lost.Close() })
	sink := newTestSink(t, SinkConfig{Producer: p, Spill: spill, Lost: lost})

	var written []schemas.UsageEvent
	var kept []int
	for b := range 4 {
		before := sink.Stats().Spilled
		batch := sinkEvents(b*n, n)
		sinkWrite(t, sink, batch)
		written = append(written, batch...)
		kept = append(kept, int(sink.Stats().Spilled-before))
	}
	// Two batches fit, about half of the third, none of the fourth.
	if kept[0] != n || kept[1] != n || kept[2] <= 0 || kept[2] >= n || kept[3] != 0 {
		t.Fatalf("kept per batch %v", kept)
	}
	notKept := 4*n - kept[0] - kept[1] - kept[2] - kept[3]
	if st := sink.Stats(); st.Dropped != uint64(notKept) || st.Pending != int64(len(written)-notKept) {
		t.Fatalf("stats %+v: want %d dropped, %d pending", st, notKept, len(written)-notKept)
	}

	p.isUp.Store(true)
	runSink(t, sink)
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "replay and the lost-usage report", func() bool {
		st := sink.Stats()
		return st.Pending == 0 && st.Replayed == st.Spilled && len(spill.Lost()) == 0
	})

	// What the topic lacks is what was dropped; the report must say so.
	inTopic := map[schemas.EventID]bool{}
	for _, evs := range readEvents(t, k) {
		for i := range evs {
			inTopic[evs[i].ID] = true
		}
	}
	want := map[string]schemas.LostUsage{}
	for i := range written {
		e := &written[i]
		if inTopic[e.ID] {
			continue
		}
		l := want[e.KeyID]
		l.Count++
		if e.Admitted() {
			l.Admitted++
		}
		want[e.KeyID] = l
	}
	got := map[string]schemas.LostUsage{}
	var total int64
	for _, r := range readTopic(t, k, k.Topics().LostUsage)[0] {
		var l schemas.LostUsage
		if err := schemas.DecodeLostUsage(r.value, &l); err != nil {
			t.Fatalf("lost-usage offset %d: %v", r.offset, err)
		}
		if string(r.key) != l.KeyID || l.Node != "node-1" {
			t.Fatalf("lost-usage offset %d: key %q, record %+v", r.offset, r.key, l)
		}
		g := got[l.KeyID]
		g.Count += l.Count
		g.Admitted += l.Admitted
		got[l.KeyID] = g
		total += l.Count
	}
	if total != int64(notKept) || total != int64(sink.Stats().Dropped) {
		t.Fatalf("lost-usage counts sum to %d, want %d dropped", total, notKept)
	}
	if len(got) != len(want) {
		t.Fatalf("lost usage for %d keys, want %d: got %v, want %v", len(got), len(want), got, want)
	}
	for key, w := range want {
		if g := got[key]; g != w {
			t.Errorf("key %s: lost %d (%d admitted), want %d (%d admitted)", key, g.Count, g.Admitted, w.Count, w.Admitted)
		}
	}
}

// lostRecorder is a LostReporter that keeps what it was given.
type lostRecorder struct {
	mu   sync.Mutex
	lost []schemas.LostUsage
}

func (r *lostRecorder) ReportLost(_ context.Context, lost []schemas.LostUsage) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lost = append(r.lost, lost...)
	return nil
}

func (r *lostRecorder) all() []schemas.LostUsage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lost)
}

// Under pressure (Kafka slow: the queue filling) batches go to the spill
// log without waiting on the producer; the queue's drops are reported as
// lost usage.
func TestSinkSpillsUnderPressureAndReportsQueueDrops(t *testing.T) {
	_, k := sinkCluster(t)
	p := &switchProducer{up: newTestEventProducer(t, k)}
	p.isUp.Store(true)
	var pressure atomic.Bool
	var dropped atomic.Uint64
	rec := &lostRecorder{}
	s := newTestSink(t, SinkConfig{Producer: p, Spill: openTestSpill(t, SpillConfig{Dir: t.TempDir()}), Lost: rec,
		Pressure: pressure.Load, QueueDropped: dropped.Load, Node: "edge-1"})
	pressure.Store(true)
	events := sinkEvents(0, 300)
	sinkWrite(t, s, events[:100])
	sinkWrite(t, s, events[100:200])
	if n := p.calls.Load(); n != 0 {
		t.Fatalf("under pressure the producer was called %d times, want 0", n)
	}
	if st := s.Stats(); st.Spilled != 200 {
		t.Fatalf("spilled %d, want 200", st.Spilled)
	}
	dropped.Store(7)
	pressure.Store(false)
	runSink(t, s)
	sinkWrite(t, s, events[200:])
	poll.Until(t, 10*time.Second, 5*time.Millisecond, "everything produced and the queue's drops reported", func() bool {
		st := s.Stats()
		return st.Replayed+st.Produced == 300 && len(rec.all()) == 1
	})
	if got := rec.all()[0]; got.Reason != schemas.LostQueueFull || got.Count != 7 || got.Node != "edge-1" {
		t.Fatalf("reported %+v, want 7 queue-full drops of edge-1", got)
	}
	checkDelivered(t, events, readEvents(t, k))
}

// failingOnce is a LostReporter whose first report fails, as the first
// write after an outage may on a connection the outage broke.
type failingOnce struct {
	lostRecorder
	failed atomic.Bool
}

func (f *failingOnce) ReportLost(ctx context.Context, lost []schemas.LostUsage) error {
	if f.failed.CompareAndSwap(false, true) {
		return errors.New("broken pipe")
	}
	return f.lostRecorder.ReportLost(ctx, lost)
}

// Drain reports the drops even when its first report fails: it retries,
// as it retries the replay.
func TestSinkDrainRetriesTheLostReport(t *testing.T) {
	const n = 100
	recBytes := spillRecordSize(sinkEvents(0, n))
	spill := openTestSpill(t, SpillConfig{Dir: t.TempDir(), MaxBytes: 2*recBytes + recBytes/2, Node: "node-1"})
	rep := &failingOnce{}
	sink := newTestSink(t, SinkConfig{Producer: &switchProducer{}, Spill: spill, Lost: rep})
	for b := range 4 { // the fourth batch is dropped at the cap
		sinkWrite(t, sink, sinkEvents(b*n, n))
	}
	if spill.Dropped() == 0 {
		t.Fatal("nothing dropped at the cap")
	}
	spill.Close()
	spill = openTestSpill(t, SpillConfig{Dir: spill.cfg.Dir, Node: "node-1"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, k := sinkCluster(t)
	drain := newTestSink(t, SinkConfig{Producer: newTestEventProducer(t, k), Spill: spill, Lost: rep})
	if err := drain.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	var total int64
	for _, l := range rep.all() {
		total += l.Count
	}
	if !rep.failed.Load() || total == 0 {
		t.Fatalf("failed first %v, reported %d lost", rep.failed.Load(), total)
	}
}
