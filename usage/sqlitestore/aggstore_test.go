package sqlitestore

import (
	"context"
	"errors"
	"maps"
	"testing"

	"github.com/tollgate/tollgate/aggregator/aggstore"
	"github.com/tollgate/tollgate/schemas"
)

// otherMark is a watermark of another store.
type otherMark struct{}

func (otherMark) Covered() int64 { return 0 }

// WriteBatch stores the events past the watermark it is given and the
// offset after the batch, in one transaction; a batch behind the store is
// refused as stale and ReadBack says where the store is.
func TestWriteBatch(t *testing.T) {
	evs := many(10, day20000+59e9, "pro", "k1")
	offs := []int64{3, 4, 6, 7, 8, 10, 11, 12, 13, 15}
	batch := func(from, to int, last int64) *aggstore.Batch {
		return &aggstore.Batch{Partition: 2, Last: last, Offsets: offs[from:to], Events: evs[from:to]}
	}
	type call struct {
		b       *aggstore.Batch
		wm      aggstore.Watermark
		want    aggstore.Watermark // returned
		wantErr string             // "stale", "other", or "" for none
	}
	tests := []struct {
		name  string
		calls []call
		want  [][]schemas.UsageEvent // the batches InsertEvents would have stored
		next  int64                  // the stored offset of partition 2
	}{
		{
			name:  "batches in order, from no watermark",
			calls: []call{{b: batch(0, 5, 9), wm: nil, want: NextOffset(10)}, {b: batch(5, 10, 16), wm: NextOffset(10), want: NextOffset(17)}},
			want:  [][]schemas.UsageEvent{evs[:5], evs[5:]}, next: 17,
		},
		{
			// ReadBack after a lost reply says part of the batch is
			// stored: only the rest is written.
			name:  "the events past the watermark",
			calls: []call{{b: batch(0, 3, 6), wm: NextOffset(0), want: NextOffset(7)}, {b: batch(0, 10, 16), wm: NextOffset(7), want: NextOffset(17)}},
			want:  [][]schemas.UsageEvent{evs[:3], evs[3:]}, next: 17,
		},
		{
			name:  "a batch the watermark covers writes nothing",
			calls: []call{{b: batch(0, 10, 16), wm: nil, want: NextOffset(17)}, {b: batch(0, 10, 16), wm: NextOffset(17), want: NextOffset(17)}},
			want:  [][]schemas.UsageEvent{evs}, next: 17,
		},
		{
			name:  "a watermark behind the store: stale",
			calls: []call{{b: batch(0, 10, 16), wm: nil, want: NextOffset(17)}, {b: batch(0, 10, 16), wm: nil, want: nil, wantErr: "stale"}},
			want:  [][]schemas.UsageEvent{evs}, next: 17,
		},
		{
			name:  "a watermark of another store",
			calls: []call{{b: batch(0, 10, 16), wm: otherMark{}, want: otherMark{}, wantErr: "other"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			ctx := context.Background()
			for i, c := range tt.calls {
				got, err := s.WriteBatch(ctx, c.b, c.wm)
				var stale *StaleOffsetError
				switch {
				case c.wantErr == "stale" && !errors.As(err, &stale):
					t.Fatalf("call %d: got error %v, want a *StaleOffsetError", i, err)
				case c.wantErr == "other" && err == nil:
					t.Fatalf("call %d: a watermark of another store was taken", i)
				case c.wantErr == "" && err != nil:
					t.Fatalf("call %d: %v", i, err)
				case c.wantErr == "" && got != c.want:
					t.Fatalf("call %d: watermark %v, want %v", i, got, c.want)
				}
				if c.wantErr == "stale" {
					back, err := s.ReadBack(ctx, c.b, c.wm)
					if err != nil || back != NextOffset(tt.next) {
						t.Fatalf("call %d: ReadBack = %v, %v; want %v", i, back, err, NextOffset(tt.next))
					}
				}
			}
			if d := stateOf(t, s).diff(stateWith(t, tt.want...)); d != "" {
				t.Errorf("store differs from InsertEvents of the same batches:\n%s", d)
			}
			wantOffsets := map[int]int64{}
			if tt.next > 0 {
				wantOffsets[2] = tt.next
			}
			if got := offsetsOf(t, s, EventsSource); !maps.Equal(got, wantOffsets) {
				t.Errorf("Offsets = %v, want %v", got, wantOffsets)
			}
			wm, err := s.Watermark(ctx, 2)
			if err != nil || aggstore.Covered(wm) != tt.next-1 {
				t.Errorf("Watermark = %v, %v; want one covering %d", wm, err, tt.next-1)
			}
		})
	}
}
