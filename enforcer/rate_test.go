package enforcer

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

const rateYAML = `
apis:
  - id: api1
    stages: [{name: prod, upstream: "http://127.0.0.1:1"}]
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}, POST: {apiKeyRequired: true}}
usagePlans:
  - name: gold
    id: gold
    throttle: {rateLimit: 100, burstLimit: 100}
    apiStages: [{apiId: api1, stage: prod, throttle: {"/items/POST": {rateLimit: 40, burstLimit: 20}}}]
apiKeys:
  - {id: k1, name: k1, value: rateratelimitkey00001, enabled: true, usagePlans: [gold]}
`

// admittedOver sends a request every step for d of the gateway's clock
// and counts those admitted.
func admittedOver(g *Gateway, clock *atomic.Int64, method string, d, step time.Duration) int {
	n := 0
	keys := []string{"rateratelimitkey00001"}
	for end := clock.Load() + int64(d); clock.Load() < end; clock.Add(int64(step)) {
		var dc decision
		g.table.Load().decide(&dc, "h", "/prod/items", method, keys, clock.Load())
		if dc.outcome == schemas.DecisionAllowed {
			n++
		}
	}
	return n
}

// A division of a key's throttle scales its plan's bucket and its
// per-method buckets by this enforcer's share, rate and burst alike;
// it holds until its AsOf plus RateStale, then the fleet's default
// share (1/Fleet) applies; an older division never replaces a newer.
func TestRateShareScalesTheKeysBuckets(t *testing.T) {
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	g, err := New(Config{Node: "b", Now: clock.Load, Fleet: 1}, testCatalog(t, rateYAML))
	if err != nil {
		t.Fatal(err)
	}
	// Whole: the burst of 100, then 100 a second.
	if n := admittedOver(g, &clock, "GET", 2*time.Second, time.Millisecond); n < 299 || n > 301 {
		t.Fatalf("alone: %d admitted in 2s, want 300", n)
	}
	clock.Add(int64(time.Hour)) // full again
	div := schemas.RateSignal{PlanID: "gold", KeyID: "k1", AsOf: clock.Load(), Fleet: 4, Floor: 1,
		Shares: []schemas.NodeShare{{Node: "a", Share: schemas.ShareOne * 3 / 4}, {Node: "b", Share: schemas.ShareOne / 4}}}
	if !g.ApplyRate(&div) {
		t.Fatal("division not applied")
	}
	// A quarter: a burst of 25, then 25 a second.
	if n := admittedOver(g, &clock, "GET", 2*time.Second, time.Millisecond); n < 74 || n > 76 {
		t.Fatalf("a quarter share: %d admitted in 2s, want 25+50", n)
	}
	// The per-method bucket too: 40/s burst 20 → 10/s burst 5.
	if n := admittedOver(g, &clock, "POST", time.Second-time.Millisecond, time.Millisecond); n < 14 || n > 16 {
		t.Fatalf("a quarter of the per-method throttle: %d admitted in 1s, want 5+10", n)
	}
	// An older division does not replace it.
	old := div
	old.AsOf -= int64(time.Second)
	old.Shares = []schemas.NodeShare{{Node: "b", Share: schemas.ShareOne}}
	if g.ApplyRate(&old) {
		t.Fatal("an older division applied")
	}
	// Stale: after RateStale the fleet's default, here 1/2.
	g.SetFleet(2)
	clock.Store(div.AsOf + int64(DefaultRateStale) + int64(time.Hour))
	if n := admittedOver(g, &clock, "GET", time.Second, time.Millisecond); n < 99 || n > 101 {
		t.Fatalf("stale division, fleet of 2: %d admitted in 1s, want 50+50", n)
	}
	// A division already stale when it arrives is not applied.
	late := div
	late.AsOf = clock.Load() - int64(DefaultRateStale)
	if g.ApplyRate(&late) {
		t.Fatal("a stale division applied")
	}
	// A key not in the plan has nothing to divide.
	if g.ApplyRate(&schemas.RateSignal{PlanID: "gold", KeyID: "nobody", AsOf: clock.Load()}) {
		t.Fatal("a division of an unknown key applied")
	}
}

// A single gateway (no Fleet) applies whole limits, and a division's
// share for an enforcer it does not name is its floor.
func TestRateShareDefaults(t *testing.T) {
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	g, err := New(Config{Node: "c", Now: clock.Load}, testCatalog(t, rateYAML))
	if err != nil {
		t.Fatal(err)
	}
	if f := g.fleetShare.Load(); f != schemas.ShareOne {
		t.Fatalf("default share alone %d, want %d", f, schemas.ShareOne)
	}
	div := schemas.RateSignal{PlanID: "gold", KeyID: "k1", AsOf: clock.Load(), Fleet: 3, Floor: schemas.ShareOne / 10,
		Shares: []schemas.NodeShare{{Node: "a", Share: schemas.ShareOne * 9 / 10}}}
	if !g.ApplyRate(&div) {
		t.Fatal("not applied")
	}
	if n := admittedOver(g, &clock, "GET", time.Second, time.Millisecond); n < 19 || n > 21 {
		t.Fatalf("floor of a tenth: %d admitted in 1s, want 10+10", n)
	}
}

// scaled keeps the burst's time, so the burst shrinks with the share,
// but never below one request; a whole share is the bucket itself.
func TestBucketScaled(t *testing.T) {
	b := newBucket(100, 100)
	if s := b.scaled(schemas.ShareOne); s != b {
		t.Fatalf("whole share: %+v, want %+v", s, b)
	}
	half := b.scaled(schemas.ShareOne / 2)
	if half.interval != 2*b.interval || half.burst != 50 || half.tolerance != b.tolerance {
		t.Fatalf("half: %+v", half)
	}
	tiny := b.scaled(1)
	if tiny.burst != 1 || tiny.tolerance < tiny.interval {
		t.Fatalf("tiny share admits nothing: %+v", tiny)
	}
	var tat atomic.Int64
	if ok, _, _ := tiny.take(&tat, testEpoch.UnixNano()); !ok {
		t.Fatal("tiny share refused its first request")
	}
	if z := b.scaled(0); z.interval != 0 {
		t.Fatalf("no share admits: %+v", z)
	}
	slow := newBucket(catalogMinRate, 1)
	for _, f := range []uint32{1, 3, 8, schemas.ShareOne / 2, schemas.ShareOne - 1} {
		s := slow.scaled(f)
		if s.interval < slow.interval || s.tolerance < s.interval {
			t.Fatalf("the slowest rate at share %d overflowed: %+v", f, s)
		}
		var tat atomic.Int64
		now := testEpoch.UnixNano()
		if ok, _, _ := s.take(&tat, now); !ok {
			t.Fatalf("share %d: the first request refused", f)
		}
		if ok, _, _ := s.take(&tat, now); ok {
			t.Fatalf("share %d of the slowest rate admitted two at once: %+v", f, s)
		}
	}
	if s := slow.scaled(schemas.ShareOne - 1); s.interval > slow.interval*2 {
		t.Fatalf("nearly whole share of the slowest rate: interval %d, want about %d", s.interval, slow.interval)
	}
	if u := unlimitedBucket.scaled(1); !u.unlimited() {
		t.Fatal("an unlimited bucket was limited")
	}
}

const catalogMinRate = catalog.MinRate

// In a fleet the gateway-wide and stage throttles are divided evenly:
// each enforcer admits 1/Fleet of them.
func TestFleetDividesGatewayAndStageEvenly(t *testing.T) {
	for _, tc := range []struct{ name, yaml string }{
		{"gateway", "gateway:\n  throttle: {rateLimit: 40, burstLimit: 20}\n" + strings.Replace(rateYAML, "rateLimit: 100, burstLimit: 100", "rateLimit: 1000, burstLimit: 1000", 1)},
		{"stage", strings.Replace(strings.Replace(rateYAML, `upstream: "http://127.0.0.1:1"}`, `upstream: "http://127.0.0.1:1", throttle: {rateLimit: 40, burstLimit: 20}}`, 1),
			"rateLimit: 100, burstLimit: 100", "rateLimit: 1000, burstLimit: 1000", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clock atomic.Int64
			clock.Store(testEpoch.UnixNano())
			g, err := New(Config{Node: "a", Now: clock.Load}, testCatalog(t, tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if n := admittedOver(g, &clock, "GET", time.Second, time.Millisecond); n < 59 || n > 61 {
				t.Fatalf("alone: %d admitted in 1s, want 20+40", n)
			}
			g.SetFleet(2)
			clock.Add(int64(time.Hour))
			if n := admittedOver(g, &clock, "GET", time.Second, time.Millisecond); n < 29 || n > 31 {
				t.Fatalf("one of two: %d admitted in 1s, want 10+20", n)
			}
		})
	}
}

// Divisions that cannot be right are not applied as they are: one made
// by a clock far ahead (it would hold, and keep newer ones out), and a
// share of 0 (every request refused); a fleet larger than MaxFleet is
// MaxFleet.
func TestRateDivisionsThatCannotBeRight(t *testing.T) {
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	g, err := New(Config{Node: "b", Now: clock.Load}, testCatalog(t, rateYAML))
	if err != nil {
		t.Fatal(err)
	}
	ahead := schemas.RateSignal{PlanID: "gold", KeyID: "k1", AsOf: clock.Load() + int64(24*time.Hour),
		Shares: []schemas.NodeShare{{Node: "b", Share: 1}}}
	if g.ApplyRate(&ahead) {
		t.Fatal("a division a day ahead applied")
	}
	zero := schemas.RateSignal{PlanID: "gold", KeyID: "k1", AsOf: clock.Load(), Shares: []schemas.NodeShare{{Node: "b", Share: 0}}}
	if !g.ApplyRate(&zero) {
		t.Fatal("not applied")
	}
	if n := admittedOver(g, &clock, "GET", time.Second, time.Millisecond); n == 0 {
		t.Fatal("a share of 0 refused every request")
	}
	g.SetFleet(70_000)
	if g.Fleet() != MaxFleet || g.fleetShare.Load() == 0 || g.failSafe.Load() == 0 {
		t.Fatalf("fleet %d, share %d, fail-safe %d", g.Fleet(), g.fleetShare.Load(), g.failSafe.Load())
	}
}
