package enforcer

import (
	"github.com/prometheus/client_golang/prometheus"

	"sync"
	"testing"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

// testCatalog parses a YAML catalog and applies it to an empty one.
func testCatalog(t testing.TB, yaml string) *catalog.Catalog {
	t.Helper()
	f, err := catalog.ParseFile("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := catalog.Apply(&catalog.Catalog{}, f, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventBuffer is a bounded sink the benchmarks hand events to and drain,
// standing in for the ingest queue (package ingest imports the catalog's
// callers, which the enforcer's tests should not depend on).
type eventBuffer struct {
	mu  sync.Mutex
	evs []schemas.UsageEvent
	n   int
}

func newEventBuffer(capacity int) *eventBuffer {
	return &eventBuffer{evs: make([]schemas.UsageEvent, capacity)}
}

func (b *eventBuffer) Offer(ev schemas.UsageEvent) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n == len(b.evs) {
		return false
	}
	b.evs[b.n] = ev
	b.n++
	return true
}

// Drain appends up to max events to buf and removes them.
func (b *eventBuffer) Drain(buf []schemas.UsageEvent, max int) []schemas.UsageEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(b.n, max)
	buf = append(buf, b.evs[:n]...)
	b.n = copy(b.evs, b.evs[n:b.n])
	return buf
}

// keyPlanOf is what tests read of a key: its id, and its first plan and
// counters under it.
type keyPlanOf struct {
	id    string
	plan  *planRT
	state *keyPlanState
}

// firstPlan looks a key up by value. It fails (nil pointer) for unknown
// values, as tests only ask for keys they made.
func (t *table) firstPlan(v string) *keyPlanOf {
	e := t.keys.lookup(v)
	k := &keyPlanOf{id: e.keyID()}
	if len(e.plans) > 0 {
		k.plan, k.state = t.plans[e.plans[0].plan], e.plans[0].state
	}
	return k
}

// registryOf registers the collector of m on a registry of its own.
func registryOf(t testing.TB, m *metrics) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(m.collector()); err != nil {
		t.Fatal(err)
	}
	return reg
}
