package enforcer

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

// TestEntryTable runs random puts, replacements and deletes on an
// entryTable against a map, with hashes drawn from a small set so that
// entries collide on the whole hash and probe runs cross tombstones, the
// table's end and its rebuilds.
func TestEntryTable(t *testing.T) {
	for _, hashes := range []uint64{4, 64, 1 << 62} {
		t.Run(fmt.Sprint(hashes), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(hashes, 7))
			var tab entryTable
			tab.init(0)
			model := map[string]*keyEntry{}
			hashOf := map[string]uint64{}
			byID := func(id string) func(*keyEntry) bool {
				return func(e *keyEntry) bool { return e.keyID() == id }
			}
			for i := range 20000 {
				id := fmt.Sprintf("k%d", rnd.IntN(300))
				h, ok := hashOf[id]
				if !ok {
					h = rnd.Uint64N(hashes) * 0x9e3779b97f4a7c15 // spread over the table
					hashOf[id] = h
				}
				switch rnd.IntN(3) {
				case 0, 1:
					e := &keyEntry{id: [1]string{id}}
					tab.put(h, e, byID(id), true)
					model[id] = e
				case 2:
					if got := tab.del(h, byID(id)); got != (model[id] != nil) {
						t.Fatalf("op %d: del(%s) = %v, want %v", i, id, got, model[id] != nil)
					}
					delete(model, id)
				}
				if tab.live != len(model) {
					t.Fatalf("op %d: %d live, want %d", i, tab.live, len(model))
				}
				if i%97 == 0 {
					for id, h := range hashOf {
						if got := tab.get(h, byID(id)); got != model[id] {
							t.Fatalf("op %d: get(%s) = %p, want %p", i, id, got, model[id])
						}
					}
					n := 0
					tab.each(func(*keyEntry) bool { n++; return true })
					if n != len(model) {
						t.Fatalf("op %d: each saw %d, want %d", i, n, len(model))
					}
				}
			}
			if s := tab.arr.Load().s; (tab.live+tab.dead)*maxLoadDen > len(s)*maxLoadNum {
				t.Errorf("%d live + %d dead in %d slots", tab.live, tab.dead, len(s))
			}
		})
	}
}

// A full table refuses a put that may not grow it (a request recording a
// value), and lookups still end.
func TestEntryTableFullWithoutGrowing(t *testing.T) {
	var tab entryTable
	tab.init(0)
	n := len(tab.arr.Load().s)
	added := 0
	for i := range n {
		id := fmt.Sprint(i)
		if tab.put(uint64(i)*0x9e3779b97f4a7c15, &keyEntry{id: [1]string{id}}, func(*keyEntry) bool { return false }, false) {
			added++
		}
	}
	if added*maxLoadDen > n*maxLoadNum || added == 0 {
		t.Fatalf("%d of %d slots filled", added, n)
	}
	// Ends (on an empty slot) although nothing matches.
	if tab.get(12345, func(*keyEntry) bool { return false }) != nil {
		t.Fatal("found an entry nothing matches")
	}
}

// Readers never wait for writers and always find the entries no writer
// removes, whatever the writers do around them; run with -race.
func TestEntryTableConcurrentReaders(t *testing.T) {
	var tab entryTable
	tab.init(0)
	var mu sync.Mutex
	keep := make([]*keyEntry, 50)
	for i := range keep {
		keep[i] = &keyEntry{id: [1]string{fmt.Sprint("keep", i)}}
		tab.put(uint64(i)<<40, keep[i], func(*keyEntry) bool { return false }, true)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := r; !stop.Load(); i++ {
				e := keep[i%len(keep)]
				if got := tab.get(uint64(i%len(keep))<<40, func(x *keyEntry) bool { return x.keyID() == e.keyID() }); got != e {
					t.Errorf("reader lost %s", e.keyID())
					return
				}
			}
		}()
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 4000 {
		id := fmt.Sprint("churn", rnd.IntN(200))
		h := uint64(rnd.IntN(256)) << 40 // some collide with the kept ones
		eq := func(x *keyEntry) bool { return x.keyID() == id }
		mu.Lock()
		if i%2 == 0 {
			tab.put(h, &keyEntry{id: [1]string{id}}, eq, true)
		} else {
			tab.del(h, eq)
		}
		mu.Unlock()
	}
	stop.Store(true)
	wg.Wait()
}

// An unknown value is refused from keySet.unknown the second time, and
// is a key at once when a change makes it one (the change moves the
// keySet's generation on).
func TestUnknownValuesAreRemembered(t *testing.T) {
	e := newChangeEnv(t, gwYAML)
	const value = "a-new-value-for-widget-0000001"
	e.want("GET", "/prod/items", value, schemas.DecisionForbidden)
	e.want("GET", "/prod/items", value, schemas.DecisionForbidden)
	ks := e.gw.table.Load().keys
	remembered := 0
	for i := range ks.unknown {
		if ks.unknown[i].Load() != 0 {
			remembered++
		}
	}
	if remembered != 1 {
		t.Errorf("%d values remembered as unknown, want 1", remembered)
	}
	k := e.key("widget")
	k.ValueHash = catalog.HashKey(value)
	e.change(func(tx *catalog.Tx) { tx.PutKey(k) })
	if e.gw.table.Load().keys != ks {
		t.Fatal("the change built a new keySet; this test is of one that changes")
	}
	e.want("GET", "/prod/items", value, schemas.DecisionAllowed)
}
