package aggregator

import (
	"hash/maphash"
	"math/bits"

	"github.com/tollgate/tollgate/schemas"
)

// IDWindow remembers the last Size distinct event ids added: a ring of
// them in the order they came, and a hash index over the ring (open
// addressing, linear probing, backward-shift deletion: no tombstones).
// Both grow to size as ids come, then stay: an id added to a full window
// takes the place of the oldest, and adding allocates nothing. 24-28
// bytes an id: the ring's 16 and the index's 4 a slot at a load of 1/4
// to 1/2. (A ring and a Go map took 44-70 bytes an id, measured at 87381
// and 1<<20 ids, the map growing as deletes left tombstones.)
type IDWindow struct {
	size  int
	ring  []schemas.EventID
	old   int     // when the ring is full, the index of its oldest id
	slots []int32 // ring index + 1 of the id whose probe passes there; 0 empty
	seed  maphash.Seed
}

// NewIDWindow returns a window of size ids.
func NewIDWindow(size int) *IDWindow {
	return &IDWindow{size: size, seed: maphash.MakeSeed()}
}

// Add adds id and reports true, or reports false if it is in the window.
func (w *IDWindow) Add(id schemas.EventID) bool {
	if len(w.ring) == cap(w.ring) && len(w.ring) < w.size {
		w.grow()
	}
	i, found := w.find(id)
	if found {
		return false
	}
	r := len(w.ring)
	if r < w.size {
		w.ring = append(w.ring, id)
	} else {
		oldest, _ := w.find(w.ring[w.old])
		w.remove(oldest)
		i, _ = w.find(id) // the slot may have moved into its chain
		r = w.old
		w.ring[r] = id
		w.old = (w.old + 1) % w.size
	}
	w.slots[i] = int32(r + 1)
	return true
}

// find returns the slot holding id, or the empty slot where it would go.
func (w *IDWindow) find(id schemas.EventID) (slot int, found bool) {
	mask := len(w.slots) - 1
	for i := w.home(id); ; i = (i + 1) & mask {
		s := w.slots[i]
		if s == 0 {
			return i, false
		}
		if w.ring[s-1] == id {
			return i, true
		}
	}
}

func (w *IDWindow) home(id schemas.EventID) int {
	return int(maphash.Bytes(w.seed, id[:]) & uint64(len(w.slots)-1))
}

// remove empties slot i, moving back the ids after it in its probe
// chain that may take its place, so that every chain stays unbroken.
func (w *IDWindow) remove(i int) {
	mask := len(w.slots) - 1
	for j := (i + 1) & mask; w.slots[j] != 0; j = (j + 1) & mask {
		h := w.home(w.ring[w.slots[j]-1])
		if (j-h)&mask >= (j-i)&mask { // i lies on the way from h to j
			w.slots[i] = w.slots[j]
			i = j
		}
	}
	w.slots[i] = 0
}

// grow makes room for twice as many ids (size at most) and rebuilds the
// index at a load of at most 1/2. Only while the ring is not yet full,
// so its ids are in order from index 0.
func (w *IDWindow) grow() {
	n := min(max(2*cap(w.ring), 1024), w.size)
	ring := make([]schemas.EventID, len(w.ring), n)
	copy(ring, w.ring)
	w.ring = ring
	w.slots = make([]int32, 1<<bits.Len(uint(2*n-1)))
	for r, id := range w.ring {
		i, _ := w.find(id)
		w.slots[i] = int32(r + 1)
	}
}

// Reset forgets every id, keeping the memory.
func (w *IDWindow) Reset() {
	clear(w.slots)
	w.ring, w.old = w.ring[:0], 0
}

// Size is how many ids the window holds at most.
func (w *IDWindow) Size() int { return w.size }
