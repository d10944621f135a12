package catalog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/google/btree"
)

// treeItems lists a tree's items in order.
func treeItems[T any](t *btree.BTreeG[T]) []T {
	var out []T
	t.Ascend(func(v T) bool { out = append(out, v); return true })
	return out
}

// sameState fails t unless a and b hold the same entities and the same
// index entries.
func sameState(t *testing.T, a, b *State) {
	t.Helper()
	if !a.Catalog().Equal(b.Catalog()) {
		t.Fatalf("catalogs differ:\n%+v\n%+v", a.Catalog(), b.Catalog())
	}
	for _, idx := range []struct {
		name string
		a, b *btree.BTreeG[pair]
	}{{"planNames", a.planNames, b.planNames}, {"keyNames", a.keyNames, b.keyNames}, {"keyHashes", a.keyHashes, b.keyHashes}, {"prevHashes", a.prevHashes, b.prevHashes},
		{"customers", a.customers, b.customers}, {"members", a.members, b.members}} {
		if x, y := treeItems(idx.a), treeItems(idx.b); !slices.Equal(x, y) {
			t.Fatalf("index %s differs:\n%v\n%v", idx.name, x, y)
		}
		for _, x := range treeItems(idx.a) {
			if !idx.a.Has(x) {
				t.Fatalf("index %s: %v is listed but not found", idx.name, x)
			}
		}
	}
	for _, k := range treeItems(a.keys) {
		if a.Key(k.ID) != k {
			t.Fatalf("key %s is listed but not found by id", k.ID)
		}
	}
	for _, p := range treeItems(a.plans) {
		if a.Plan(p.ID) != p {
			t.Fatalf("plan %s is listed but not found by id", p.ID)
		}
	}
}

// A Builder gives the state that adding the same entities one by one
// gives, whatever their order and however often an id comes back.
func TestBuilderMatchesIncremental(t *testing.T) {
	for seed := range uint64(200) {
		w := txWorld{rand.New(rand.NewPCG(seed, 7))}
		b := NewBuilder()
		inc := NewState()
		n := w.r.IntN(60)
		for range n {
			switch w.r.IntN(4) {
			case 0:
				p := w.plan()
				q := p
				b.Add(&p)
				inc.putPlan(&q)
			case 1:
				a := w.api()
				b.Add(a)
				inc.putAPI(a)
			default:
				k := w.key()
				k2 := k
				k2.UsagePlans = slices.Clone(k.UsagePlans)
				b.Add(&k)
				inc.putKey(&k2)
			}
		}
		built := b.State()
		sameState(t, built, inc)
		// The built trees take later changes as the others do.
		for range 10 {
			k := w.key()
			k2 := k
			k2.UsagePlans = slices.Clone(k.UsagePlans)
			built.putKey(&k)
			inc.putKey(&k2)
		}
		sameState(t, built, inc)
	}
}

// The builder on a million keys: time, allocations, and the heap the
// state keeps per key (keys' own strings included), against inserting
// them one by one in id order (as the builder did before it sorted and
// filled).
func BenchmarkBuild(b *testing.B) {
	const n = 1000000
	keys := make([]APIKey, n)
	for i := range keys {
		id := fmt.Sprintf("k%08d", i)
		keys[i] = APIKey{ID: id, Name: fmt.Sprintf("name-%08d", (i*7919)%n), Enabled: true, ValueHash: HashKey(id), ValuePrefix: "k000", UsagePlans: []string{"plan1"}}
	}
	run := func(b *testing.B, build func() *State) {
		b.ReportAllocs()
		var s *State
		for b.Loop() {
			s = nil
			s = build()
		}
		b.StopTimer()
		var before, after runtime.MemStats
		s = nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		s = build()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heapB/key")
		runtime.KeepAlive(s)
	}
	b.Run("builder", func(b *testing.B) {
		run(b, func() *State {
			bl := NewBuilder()
			for i := range keys {
				bl.Add(&keys[i])
			}
			return bl.State()
		})
	})
	b.Run("one-by-one", func(b *testing.B) {
		run(b, func() *State {
			s := NewState()
			for i := range keys {
				s.putKey(&keys[i])
			}
			return s
		})
	})
}

// Looking a key up allocates nothing.
func BenchmarkStateKey(b *testing.B) {
	s := bigState(100000)
	ids := make([]string, 100000)
	for i := range ids {
		ids[i] = fmt.Sprintf("k%08d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if s.Key(ids[i%len(ids)]) == nil {
			b.Fatal("missing")
		}
		i++
	}
}

func TestOnEveryCore(t *testing.T) {
	for _, n := range []int{0, 1, 3, 1000} {
		calls := make([]atomic.Int32, n)
		if err := onEveryCore(n, func(i int) error { calls[i].Add(1); return nil }); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		for i := range calls {
			if c := calls[i].Load(); c != 1 {
				t.Fatalf("n=%d: f(%d) called %d times, want once", n, i, c)
			}
		}
	}
	// A failing call stops its worker; the others finish the rest.
	bad := errors.New("bad")
	var done atomic.Int32
	err := onEveryCore(100, func(i int) error {
		if i == 0 {
			return fmt.Errorf("item %d: %w", i, bad)
		}
		done.Add(1)
		return nil
	})
	if !errors.Is(err, bad) {
		t.Fatalf("err %v, want the failure", err)
	}
	want := int32(99)
	if runtime.GOMAXPROCS(0) == 1 {
		want = 0 // the one worker stopped at the first item
	}
	if got := done.Load(); got != want {
		t.Fatalf("%d items done after the failure, want %d", got, want)
	}
}
