package aggregator

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tollgate/tollgate/schemas"
)

// TestIDWindow checks the window against a model: the last size distinct
// ids added, over ids from a small pool so that ids come back, also just
// after they left the window, and probe chains wrap around the index.
func TestIDWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, size := range []int{1, 2, 3, 7, 64, 1000, 3000} {
		t.Run(fmt.Sprint("size=", size), func(t *testing.T) {
			pool := make([]schemas.EventID, 2*size+3)
			for i := range pool {
				pool[i] = schemas.NewEventID(int64(i))
			}
			w := NewIDWindow(size)
			var (
				model []schemas.EventID // the window's ids, oldest first
				in    = map[schemas.EventID]bool{}
			)
			for i := range 20 * len(pool) {
				if i == 10*len(pool) {
					w.Reset()
					model, in = model[:0], map[schemas.EventID]bool{}
				}
				id := pool[rng.IntN(len(pool))]
				want := !in[id]
				if want {
					model, in[id] = append(model, id), true
					if len(model) > size {
						delete(in, model[0])
						model = model[1:]
					}
				}
				if got := w.Add(id); got != want {
					t.Fatalf("add %d: got %v, want %v", i, got, want)
				}
			}
			for _, id := range pool {
				if _, found := w.find(id); found != in[id] {
					t.Fatalf("find(%v) = %v, want %v", id, found, in[id])
				}
			}
			if len(w.ring) != len(model) || cap(w.ring) > size {
				t.Errorf("ring: len %d cap %d, want len %d cap at most %d", len(w.ring), cap(w.ring), len(model), size)
			}
		})
	}
}

// BenchmarkIDWindow measures adding fresh ids to a full window: what each
// event loaded costs in dedup.
func BenchmarkIDWindow(b *testing.B) {
	for _, size := range []int{1 << 12, 1 << 18} {
		b.Run(fmt.Sprint("size=", size), func(b *testing.B) {
			w := NewIDWindow(size)
			ids := make([]schemas.EventID, 2*size)
			for i := range ids {
				ids[i] = schemas.NewEventID(int64(i))
			}
			for _, id := range ids[:size] {
				w.Add(id)
			}
			b.ReportAllocs()
			i := size
			for b.Loop() {
				w.Add(ids[i]) // each id leaves the window before it comes again
				if i++; i == len(ids) {
					i = 0
				}
			}
		})
	}
}
