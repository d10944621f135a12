package enforcer

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

// scaleValue is the value of key i of a scale catalog: 30 characters.
func scaleValue(i int) string { return fmt.Sprintf("bench-key-%020d", i) }

// scaleState returns benchYAML's catalog with n keys in its plan, as a
// State. States of the sizes asked for are kept for the benchmarks that
// follow (a million keys take seconds to index).
func scaleState(b testing.TB, n int) *catalog.State {
	scaleMu.Lock()
	defer scaleMu.Unlock()
	if s := scaleStates[n]; s != nil {
		return s
	}
	c := testCatalog(b, benchYAML)
	plan := c.UsagePlans[0].ID
	c.APIKeys = make([]catalog.APIKey, n)
	for i := range c.APIKeys {
		id := fmt.Sprintf("k%09d", i)
		c.APIKeys[i] = catalog.APIKey{ID: id, Name: id, Enabled: true, ValueHash: catalog.HashKey(scaleValue(i)),
			UsagePlans: []string{plan}}
	}
	s := catalog.StateOf(c)
	scaleStates[n] = s
	return s
}

var (
	scaleMu     sync.Mutex
	scaleStates = map[int]*catalog.State{}
)

// requestValues returns the x-api-key values of m requests, each the
// value of a key drawn uniformly from the first hot of n keys, laid out
// one after the other in one string: a request's value is in cache when
// it is decided, as a header just parsed is, and the benchmark's own
// reading of it costs no cache miss.
func requestValues(n, hot, m int) []string {
	var sb strings.Builder
	sb.Grow(m * 30)
	rnd := rand.New(rand.NewPCG(1, uint64(n)))
	for range m {
		sb.WriteString(scaleValue(rnd.IntN(min(hot, n))))
	}
	all := sb.String()
	vs := make([]string, m)
	for i := range vs {
		vs[i] = all[i*30 : (i+1)*30]
	}
	return vs
}

// BenchmarkDecideScale is BenchmarkDecide with n keys, each request
// using a key drawn at random from all n (or from the first hot of
// them): at a million keys nothing of a key is in cache when its request
// comes, so each request pays the memory latency of what it reads (the
// key's slot in the verified-value table, its entry, its counters).
// Every key made one request before the timer starts (its value is
// recorded, so requests compare it rather than hash it).
func BenchmarkDecideScale(b *testing.B) {
	for _, c := range []struct {
		name   string
		n, hot int
	}{
		{"keys=1k", 1_000, 1_000},
		{"keys=1M", 1_000_000, 1_000_000},
		{"keys=1M/hot=10k", 1_000_000, 10_000},
	} {
		b.Run(c.name, func(b *testing.B) {
			g, q, vs := warmGateway(b, c.n, c.hot)
			t := g.table.Load()
			keys := []string{""}
			const m = 1 << 20
			var buf []schemas.UsageEvent
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				keys[0] = vs[i&(m-1)]
				now := g.cfg.Now()
				var d decision
				t.decide(&d, "127.0.0.1:8080", "/prod/items/42", "GET", keys, now)
				if d.outcome != schemas.DecisionAllowed {
					b.Fatal(d.outcome)
				}
				g.emit(&d, "GET", now, now, 200, 0, 100)
				if i&1023 == 1023 {
					b.StopTimer()
					buf = q.Drain(buf[:0], 1<<16)
					b.StartTimer()
				}
			}
		})
	}
}

// warmGateway returns a gateway of n keys each of which made a request,
// its event sink, and the values of 1<<20 requests from the first hot
// keys. The gateway is kept for the rounds that follow (testing runs a
// benchmark again with growing b.N).
func warmGateway(b *testing.B, n, hot int) (*Gateway, *eventBuffer, []string) {
	if warm.n != n {
		warm.g = nil // one at a time: a million keys take a few hundred MB
		q := newEventBuffer(1 << 16)
		g, err := New(Config{Events: q}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := g.Load(scaleState(b, n)); err != nil {
			b.Fatal(err)
		}
		t := g.table.Load()
		keys := []string{""}
		now := g.cfg.Now()
		for i := range n {
			keys[0] = scaleValue(i)
			var d decision
			t.decide(&d, "h", "/prod/items/42", "GET", keys, now)
			if d.outcome != schemas.DecisionAllowed {
				b.Fatalf("key %d: %v", i, d.outcome)
			}
		}
		q.Drain(nil, 1<<16)
		warm.n, warm.g, warm.q = n, g, q
	}
	return warm.g, warm.q, requestValues(n, hot, 1<<20)
}

var warm struct {
	n int
	g *Gateway
	q *eventBuffer
}

// loadedGateway returns a gateway loaded with scaleState(n) and that
// state, kept for the rounds that follow under name (the benchmark goes
// on from the state it left).
func loadedGateway(b *testing.B, name string, n int) *loaded {
	if l := loadedGW[name]; l != nil {
		return l
	}
	s := scaleState(b, n)
	g, err := New(Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Load(s); err != nil {
		b.Fatal(err)
	}
	clear(loadedGW)
	l := &loaded{g: g, s: s}
	loadedGW[name] = l
	return l
}

type loaded struct {
	g *Gateway
	s *catalog.State
}

var loadedGW = map[string]*loaded{}

// BenchmarkApplyKey is one key changed (its enabled flag flipped: a new
// entry, the counters kept) by Apply, with n keys: it costs the same
// whatever n. The changes are prepared (catalog Tx, validation) outside
// the timer, a batch at a time.
func BenchmarkApplyKey(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%s", count(n)), func(b *testing.B) {
			rnd := rand.New(rand.NewPCG(2, uint64(b.N)))
			benchApply(b, n, func(s *catalog.State, i int) *catalog.Change {
				k := *s.Key(fmt.Sprintf("k%09d", rnd.IntN(n)))
				k.Enabled = !k.Enabled
				tx := s.Begin()
				tx.PutKey(k)
				return &catalog.Change{Old: s, New: tx.State, Delta: tx.Delta()}
			})
		})
	}
}

// BenchmarkApplyPlan is one plan's limits changed by Apply, with n keys
// in it: the keys are not touched.
func BenchmarkApplyPlan(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%s", count(n)), func(b *testing.B) {
			benchApply(b, n, func(s *catalog.State, i int) *catalog.Change {
				var p catalog.UsagePlan
				s.Plans("", func(pl *catalog.UsagePlan) bool { p = *pl; return false })
				p.Throttle = &catalog.Throttle{RateLimit: float64(1000 + i%2), BurstLimit: 2000}
				tx := s.Begin()
				tx.PutPlan(p)
				return &catalog.Change{Old: s, New: tx.State, Delta: tx.Delta()}
			})
		})
	}
}

// benchApply applies b.N changes made by next to a gateway of n keys,
// timing Apply alone: the changes are made in batches, between which the
// timer stops.
func benchApply(b *testing.B, n int, next func(s *catalog.State, i int) *catalog.Change) {
	l := loadedGateway(b, b.Name(), n)
	batch := make([]*catalog.Change, 0, 1024)
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; {
		b.StopTimer()
		batch = batch[:0]
		for j := 0; j < cap(batch) && i+j < b.N; j++ {
			ch := next(l.s, i+j)
			batch = append(batch, ch)
			l.s = ch.New
		}
		b.StartTimer()
		for _, ch := range batch {
			if err := l.g.Apply(ch); err != nil {
				b.Fatal(err)
			}
		}
		i += len(batch)
	}
}

func count(n int) string {
	if n >= 1_000_000 {
		return fmt.Sprintf("%dM", n/1_000_000)
	}
	return fmt.Sprintf("%dk", n/1_000)
}
