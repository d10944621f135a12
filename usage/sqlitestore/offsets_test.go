package sqlitestore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/schemas"
)

func offsetsOf(t *testing.T, s *Store, source string) map[int]int64 {
	t.Helper()
	got, err := s.Offsets(context.Background(), source)
	if err != nil {
		t.Fatalf("Offsets(%q): %v", source, err)
	}
	return got
}

// stateWith returns the state of a store into which batches were written
// by InsertEvents: what InsertEventsAt must leave, offsets aside.
func stateWith(t *testing.T, batches ...[]schemas.UsageEvent) state {
	t.Helper()
	ref, _ := openTemp(t)
	for i, b := range batches {
		if err := ref.InsertEvents(context.Background(), b); err != nil {
			t.Fatalf("reference InsertEvents(batch %d): %v", i, err)
		}
	}
	return stateOf(t, ref)
}

func TestInsertEventsAt(t *testing.T) {
	b1 := many(150, day20000+59e9, "pro", "k1") // across a minute boundary
	b1[7].Decision, b1[8].KeyID = throttled, ""
	b2 := many(10, day20000+60e9, "free", "k2")
	b3 := many(20, day20000+day, "pro", "k3")
	type call struct {
		events    []schemas.UsageEvent
		partition int
		next      int64
		stale     bool // refused: the offset is not past the stored one
	}
	at := func(events []schemas.UsageEvent, partition int, next int64) call {
		return call{events, partition, next, false}
	}
	refused := func(events []schemas.UsageEvent, partition int, next int64) call {
		return call{events, partition, next, true}
	}
	tests := []struct {
		name        string
		calls       []call
		want        [][]schemas.UsageEvent // the batches InsertEvents would have stored
		wantOffsets map[int]int64
	}{
		{
			name:  "batches in order",
			calls: []call{at(b1, 0, 150), at(b2, 0, 160)},
			want:  [][]schemas.UsageEvent{b1, b2}, wantOffsets: map[int]int64{0: 160},
		},
		{
			name:  "partitions are independent",
			calls: []call{at(b1, 3, 1000), at(b2, 0, 10), at(b3, 3, 1001)},
			want:  [][]schemas.UsageEvent{b1, b2, b3}, wantOffsets: map[int]int64{0: 10, 3: 1001},
		},
		{
			// A range of records with nothing to store (duplicates only)
			// moves the offset all the same.
			name:  "offsets without events",
			calls: []call{at(b1, 0, 150), at(nil, 0, 200), at([]schemas.UsageEvent{}, 0, 201), at(nil, 1, 7)},
			want:  [][]schemas.UsageEvent{b1}, wantOffsets: map[int]int64{0: 201, 1: 7},
		},
		{
			name:  "stale: the stored offset again",
			calls: []call{at(b1, 0, 150), refused(b2, 0, 150), refused(nil, 0, 150)},
			want:  [][]schemas.UsageEvent{b1}, wantOffsets: map[int]int64{0: 150},
		},
		{
			name:  "stale: an offset behind the stored one",
			calls: []call{at(b1, 0, 150), refused(b2, 0, 149), refused(b3, 0, 0)},
			want:  [][]schemas.UsageEvent{b1}, wantOffsets: map[int]int64{0: 150},
		},
		{
			// An earlier attempt committed but its caller did not learn
			// it: the retry is refused and nothing counts twice.
			name:  "stale: the same batch retried",
			calls: []call{at(b1, 0, 150), refused(b1, 0, 150)},
			want:  [][]schemas.UsageEvent{b1}, wantOffsets: map[int]int64{0: 150},
		},
		{
			name:  "a refused write does not stop the next one",
			calls: []call{at(b1, 0, 150), refused(b2, 0, 150), at(b2, 0, 160)},
			want:  [][]schemas.UsageEvent{b1, b2}, wantOffsets: map[int]int64{0: 160},
		},
		{
			// The batch's first event is a stored batch's first event: a
			// duplicate the loader missed. It is dropped, not the batch.
			name:  "a batch starting with a stored event",
			calls: []call{at(b1, 0, 150), at(slices.Concat(b1[:1], b2), 0, 161)},
			want:  [][]schemas.UsageEvent{b1, b2}, wantOffsets: map[int]int64{0: 161},
		},
		{
			name:  "a batch of stored first events only",
			calls: []call{at(b1, 0, 150), at(b2, 0, 160), at([]schemas.UsageEvent{b1[0], b2[0]}, 0, 162)},
			want:  [][]schemas.UsageEvent{b1, b2}, wantOffsets: map[int]int64{0: 162},
		},
		{
			// Only the first event is known by its id: the caller drops
			// duplicates (see InsertEventsAt).
			name:  "a stored event that is not first is stored again",
			calls: []call{at(b1, 0, 150), at(slices.Concat(b2, b1[5:6]), 0, 161)},
			want:  [][]schemas.UsageEvent{b1, slices.Concat(b2, b1[5:6])}, wantOffsets: map[int]int64{0: 161},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			ctx := context.Background()
			for i, c := range tt.calls {
				err := s.InsertEventsAt(ctx, c.events, "events", c.partition, c.next)
				var stale *StaleOffsetError
				switch {
				case c.stale && !errors.As(err, &stale):
					t.Fatalf("call %d (next %d): got error %v, want a *StaleOffsetError", i, c.next, err)
				case !c.stale && err != nil:
					t.Fatalf("call %d (next %d): %v", i, c.next, err)
				}
			}
			if d := stateOf(t, s).diff(stateWith(t, tt.want...)); d != "" {
				t.Errorf("store differs from InsertEvents of the same batches:\n%s", d)
			}
			if got := offsetsOf(t, s, "events"); !maps.Equal(got, tt.wantOffsets) {
				t.Errorf("Offsets = %v, want %v", got, tt.wantOffsets)
			}
		})
	}
}

func TestStaleOffsetError(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	if err := s.InsertEventsAt(ctx, many(3, day20000, "pro", "k1"), "events", 2, 40); err != nil {
		t.Fatal(err)
	}
	err := s.InsertEventsAt(ctx, many(3, day20000, "pro", "k1"), "events", 2, 39)
	var stale *StaleOffsetError
	if !errors.As(err, &stale) {
		t.Fatalf("got %v, want a *StaleOffsetError", err)
	}
	if want := (StaleOffsetError{Source: "events", Partition: 2, Next: 39, Stored: 40}); *stale != want {
		t.Errorf("got %+v, want %+v", *stale, want)
	}
	// How a package with its own store interface recognises it.
	var iface interface{ StaleOffset() bool }
	if !errors.As(err, &iface) || !iface.StaleOffset() {
		t.Errorf("%v does not match interface{ StaleOffset() bool }", err)
	}
	if want := "insert events at events/2: "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q does not start with %q", err, want)
	}
	if err := s.InsertEventsAt(ctx, nil, "events", 2, -1); err == nil || errors.As(err, &stale) {
		t.Errorf("negative offset: got %v, want an error that is not stale", err)
	}
}

func TestOffsetsBySource(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	if got := offsetsOf(t, s, "events"); got == nil || len(got) != 0 {
		t.Errorf("Offsets of an empty store = %#v, want an empty map", got)
	}
	for _, c := range []struct {
		source    string
		partition int
		next      int64
	}{{"events", 0, 5}, {"events", 1, 7}, {"other.events", 0, 100}, {"events", 0, 6}} {
		if err := s.InsertEventsAt(ctx, nil, c.source, c.partition, c.next); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]map[int]int64{"events": {0: 6, 1: 7}, "other.events": {0: 100}, "nope": {}}
	for source, w := range want {
		if got := offsetsOf(t, s, source); !maps.Equal(got, w) {
			t.Errorf("Offsets(%q) = %v, want %v", source, got, w)
		}
	}

	// They are in the file.
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := offsetsOf(t, s2, "events"); !maps.Equal(got, want["events"]) {
		t.Errorf("after reopening: Offsets = %v, want %v", got, want["events"])
	}
}

// TestInsertEventsAtFailure checks that a batch that fails leaves neither
// its events nor its offset, and goes in once when retried.
func TestInsertEventsAtFailure(t *testing.T) {
	baseline := many(10, day20000, "pro", "k1")
	batch := many(200, day20000+day, "pro", "k2")
	tests := []struct {
		name    string
		trigger string
		cancel  bool // test_cancel() cancels the context part way
	}{
		{name: "error in a rollup", trigger: `CREATE TRIGGER boom BEFORE INSERT ON usage_minute WHEN NEW.key_id = 'k2' BEGIN SELECT RAISE(ABORT, 'boom'); END`},
		{name: "error in the offset", trigger: `CREATE TRIGGER boom BEFORE UPDATE ON source_offsets BEGIN SELECT RAISE(ABORT, 'boom'); END`},
		{name: "error that ends the transaction itself", trigger: `CREATE TRIGGER boom BEFORE INSERT ON usage_daily WHEN NEW.key_id = 'k2' BEGIN SELECT RAISE(ROLLBACK, 'boom'); END`},
		{
			name:    "context cancelled after the batch row",
			trigger: `CREATE TRIGGER boom AFTER INSERT ON usage_event_batches BEGIN SELECT test_cancel(); END`,
			cancel:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			if err := s.InsertEventsAt(context.Background(), baseline, "events", 0, 10); err != nil {
				t.Fatal(err)
			}
			before := stateOf(t, s)
			if _, err := s.db.Exec(tt.trigger); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancelMidBatch.Store(&cancel)
				defer cancelMidBatch.Store(nil)
			}
			err := s.InsertEventsAt(ctx, batch, "events", 0, 210)
			if err == nil {
				t.Fatal("InsertEventsAt: got no error")
			}
			if tt.cancel && !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want context.Canceled", err)
			}
			if d := stateOf(t, s).diff(before); d != "" {
				t.Errorf("after the failed batch:\n%s", d)
			}
			if got, want := offsetsOf(t, s, "events"), map[int]int64{0: 10}; !maps.Equal(got, want) {
				t.Errorf("after the failed batch: Offsets = %v, want %v", got, want)
			}

			cancelMidBatch.Store(nil)
			if _, err := s.db.Exec("DROP TRIGGER boom"); err != nil {
				t.Fatal(err)
			}
			if err := s.InsertEventsAt(context.Background(), batch, "events", 0, 210); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if d := stateOf(t, s).diff(stateWith(t, baseline, batch)); d != "" {
				t.Errorf("after the retry:\n%s", d)
			}
			if got, want := offsetsOf(t, s, "events"), map[int]int64{0: 210}; !maps.Equal(got, want) {
				t.Errorf("after the retry: Offsets = %v, want %v", got, want)
			}
		})
	}
}

// TestInsertEventsAtRace runs writers of the same ranges of a partition
// at once, as retries of a batch whose reply was lost may overlap: each
// range is stored by exactly one, the others are refused. Run with -race.
func TestInsertEventsAtRace(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	const writers, ranges, size = 4, 25, 20
	batches := make([][]schemas.UsageEvent, ranges)
	for i := range batches {
		batches[i] = many(size, day20000+int64(i)*1e9, "pro", "k1")
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		stored = make([]int, ranges)
	)
	for range writers {
		wg.Go(func() {
			for i, b := range batches {
				err := s.InsertEventsAt(ctx, b, "events", 0, int64((i+1)*size))
				var stale *StaleOffsetError
				switch {
				case err == nil:
					mu.Lock()
					stored[i]++
					mu.Unlock()
				case !errors.As(err, &stale):
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for i, n := range stored {
		if n != 1 {
			t.Errorf("range %d stored by %d writers, want 1", i, n)
		}
	}
	if d := stateOf(t, s).diff(stateWith(t, batches...)); d != "" {
		t.Errorf("store differs from InsertEvents of each range once:\n%s", d)
	}
}

// BenchmarkInsertEventsAt is BenchmarkInsertEvents with the offset
// recorded in each batch's transaction: the difference is its cost.
func BenchmarkInsertEventsAt(b *testing.B) {
	for _, size := range []int{100, 4096} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "usage.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			batch := make([]schemas.UsageEvent, size)
			t := int64(1_750_000_000e9)
			var next int64
			b.ReportAllocs()
			for b.Loop() {
				fillBatch(batch, &t)
				next += int64(size)
				if err := s.InsertEventsAt(ctx, batch, "events", 0, next); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
