package ingest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

func ev(n int64) schemas.UsageEvent { return schemas.UsageEvent{Time: n, KeyID: "k"} }

func TestQueueFIFOAndFull(t *testing.T) {
	q, err := NewQueue(5) // rounds up to 8
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < 8; i++ {
		if !q.Offer(ev(i)) {
			t.Fatalf("offer %d refused", i)
		}
	}
	if q.Offer(ev(8)) {
		t.Fatal("offer to a full queue accepted")
	}
	if q.Dropped() != 1 || q.Len() != 8 {
		t.Fatalf("dropped=%d len=%d, want 1 and 8", q.Dropped(), q.Len())
	}
	got := q.Drain(nil, 3)
	for i, e := range got {
		if e.Time != int64(i) {
			t.Fatalf("drained %d at %d: not FIFO", e.Time, i)
		}
	}
	got = q.Drain(got[:0], 100)
	if len(got) != 5 || got[0].Time != 3 || got[4].Time != 7 {
		t.Fatalf("second drain = %v", got)
	}
}

func TestNewQueueRejectsBadCapacity(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 1 << 27} {
		if _, err := NewQueue(n); err == nil {
			t.Errorf("capacity %d accepted", n)
		}
	}
}

// Producers on every core and a concurrent consumer: every accepted event
// comes out exactly once.
func TestQueueConcurrent(t *testing.T) {
	q, _ := NewQueue(1 << 10)
	const producers, each = 8, 20000
	var accepted atomic.Int64
	seen := make([]int32, producers*each)
	var wg sync.WaitGroup
	done := make(chan struct{})
	var consumed int64
	go func() {
		defer close(done)
		var buf []schemas.UsageEvent
		for {
			buf = q.Drain(buf[:0], 256)
			for _, e := range buf {
				seen[e.Time]++
				consumed++
			}
			if len(buf) == 0 && accepted.Load() == -1 && q.Len() == 0 {
				return
			}
		}
	}()
	var total atomic.Int64
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if q.Offer(ev(int64(p*each + i))) {
					total.Add(1)
				}
			}
		}(p)
	}
	wg.Wait()
	n := total.Load()
	accepted.Store(-1)
	<-done
	if consumed != n || int64(q.Dropped())+n != producers*each {
		t.Fatalf("consumed %d, accepted %d, dropped %d of %d", consumed, n, q.Dropped(), producers*each)
	}
	for i, c := range seen {
		if c > 1 {
			t.Fatalf("event %d seen %d times", i, c)
		}
	}
}

type flakyWriter struct {
	mu     sync.Mutex
	fails  int // fail this many calls first
	calls  int
	events []schemas.UsageEvent
}

func (w *flakyWriter) WriteEvents(_ context.Context, evs []schemas.UsageEvent) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if w.fails > 0 {
		w.fails--
		return errors.New("store unavailable")
	}
	w.events = append(w.events, evs...)
	return nil
}

func TestDrainerRetriesAndKeepsOrder(t *testing.T) {
	q, _ := NewQueue(64)
	w := &flakyWriter{fails: 2}
	d, err := NewDrainer(DrainerConfig{Queue: q, Writer: w, MaxBatch: 10, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < 25; i++ {
		q.Offer(ev(i))
	}
	if err := d.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(w.events) != 25 || d.Written() != 25 || d.Failures() != 2 {
		t.Fatalf("written %d (%d), failures %d", len(w.events), d.Written(), d.Failures())
	}
	for i, e := range w.events {
		if e.Time != int64(i) {
			t.Fatalf("event %d out of order", i)
		}
	}
}

// A batch that cannot be written before the deadline is kept and goes
// first at the next flush: nothing accepted is lost.
func TestDrainerKeepsUnwrittenBatch(t *testing.T) {
	q, _ := NewQueue(64)
	w := &flakyWriter{fails: 1 << 30}
	d, _ := NewDrainer(DrainerConfig{Queue: q, Writer: w, MaxBatch: 10, MaxBackoff: time.Millisecond})
	for i := int64(0); i < 15; i++ {
		q.Offer(ev(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := d.Flush(ctx)
	if err == nil {
		t.Fatal("flush with a dead writer and a cancelled context succeeded")
	}
	w.fails = 0
	if err := d.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(w.events) != 15 || w.events[0].Time != 0 || w.events[14].Time != 14 {
		t.Fatalf("after recovery: %d events", len(w.events))
	}
}

func TestDrainerRunFlushesOnShutdown(t *testing.T) {
	q, _ := NewQueue(1 << 12)
	w := &flakyWriter{}
	d, _ := NewDrainer(DrainerConfig{Queue: q, Writer: w, Interval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	for i := int64(0); i < 1000; i++ {
		q.Offer(ev(i))
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(w.events) != 1000 {
		t.Fatalf("flushed %d of 1000 on shutdown", len(w.events))
	}
}

func TestDrainerConfigValidate(t *testing.T) {
	_, err := NewDrainer(DrainerConfig{Interval: -1})
	if err == nil {
		t.Fatal("empty config accepted")
	}
	for _, want := range []string{"Queue is required", "Writer is required", "must not be negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func BenchmarkQueueOffer(b *testing.B) {
	q, _ := NewQueue(1 << 16)
	e := ev(1)
	var buf []schemas.UsageEvent
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		q.Offer(e)
		if i&4095 == 4095 {
			buf = q.Drain(buf[:0], 1<<16)
		}
	}
}

// Health turns to an error naming the cause after UnhealthyAfter failed
// writes in a row, and back to nil at the next accepted batch.
func TestDrainerHealthFollowsWrites(t *testing.T) {
	q, _ := NewQueue(64)
	var d *Drainer
	var seen []bool // Health() != nil as each write began
	calls := 0
	w := WriterFunc(func(context.Context, []schemas.UsageEvent) error {
		calls++
		seen = append(seen, d.Health() != nil)
		if calls <= 4 {
			return errors.New("database disk image is malformed")
		}
		return nil
	})
	d, _ = NewDrainer(DrainerConfig{Queue: q, Writer: w, MaxBackoff: time.Millisecond, UnhealthyAfter: 3})
	q.Offer(ev(1))
	if err := d.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []bool{false, false, false, true, true}; !slices.Equal(seen, want) {
		t.Fatalf("unhealthy at each write: got %v, want %v", seen, want)
	}
	if err := d.Health(); err != nil {
		t.Fatalf("Health after an accepted batch: %v", err)
	}
	// The reason is the writer's.
	calls = 0
	q.Offer(ev(2))
	ctx, cancel := context.WithCancel(context.Background())
	w2 := WriterFunc(func(context.Context, []schemas.UsageEvent) error {
		if calls++; calls == 3 {
			cancel()
		}
		return errors.New("database disk image is malformed")
	})
	d, _ = NewDrainer(DrainerConfig{Queue: q, Writer: w2, MaxBackoff: time.Millisecond})
	d.Flush(ctx)
	if err := d.Health(); err == nil || !strings.Contains(err.Error(), "malformed") || !strings.Contains(err.Error(), "last 3 batch writes failed") {
		t.Fatalf("Health after 3 failures: %v", err)
	}
}
