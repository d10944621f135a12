package enforcer

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// In a fleet of N, a key with no quota signal of the period (a new key,
// a new period, the aggregator down) admits a 1/N share of its limit,
// not the whole; a signal then sets its lease; the next period starts at
// the share again. Alone, the whole limit.
func TestFailSafeLease(t *testing.T) {
	yaml := strings.Replace(rateYAML, "throttle: {rateLimit: 100, burstLimit: 100}", "quota: {limit: 100, period: DAY}", 1)
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	admitted := func(g *Gateway, n int) int {
		got := 0
		for range n {
			var dc decision
			g.table.Load().decide(&dc, "h", "/prod/items", "GET", []string{"rateratelimitkey00001"}, clock.Load())
			if dc.outcome == schemas.DecisionAllowed {
				got++
			} else if dc.outcome != schemas.DecisionQuotaExceeded {
				t.Fatalf("outcome %v", dc.outcome)
			}
		}
		return got
	}
	alone, err := New(Config{Now: clock.Load}, testCatalog(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	if n := admitted(alone, 150); n != 100 {
		t.Fatalf("alone: %d admitted, want the whole 100", n)
	}
	g, err := New(Config{Node: "b", Now: clock.Load, Fleet: 4}, testCatalog(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	if n := admitted(g, 150); n != 25 {
		t.Fatalf("no signal, a fleet of 4: %d admitted, want 25", n)
	}
	// The aggregator counted 25 from b and 5 from a: 70 left, split
	// between the two enforcers named: 35 for b.
	end := time.Unix(0, testEpoch.UnixNano()).UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).UnixNano()
	sig := schemas.QuotaSignal{PlanID: "gold", KeyID: "k1", Used: 30, Limit: 100, PeriodEnd: end, AsOf: clock.Load(),
		Nodes: []schemas.NodeCount{{Node: "a", Counted: 5}, {Node: "b", Counted: 25}}}
	if !g.ApplySignal(&sig) {
		t.Fatal("signal not applied")
	}
	if n := admitted(g, 100); n != 35 {
		t.Fatalf("after a signal: %d admitted, want 35", n)
	}
	// The next day, with no signal yet: the share again.
	clock.Store(end)
	if n := admitted(g, 100); n != 25 {
		t.Fatalf("a new period without a signal: %d admitted, want 25", n)
	}
	// A share that does not divide the limit rounds up: 100/3 → 34.
	g3, err := New(Config{Node: "b", Now: clock.Load, Fleet: 3}, testCatalog(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	if n := admitted(g3, 100); n != 34 {
		t.Fatalf("a fleet of 3: %d admitted, want 34", n)
	}
}

// A restarted enforcer that gets back its local counts neither grants a
// signal's lease again nor the fail-safe lease: it admits what it had
// left before the restart.
func TestLocalCountsSurviveARestart(t *testing.T) {
	yaml := strings.Replace(rateYAML, "throttle: {rateLimit: 100, burstLimit: 100}", "quota: {limit: 100, period: DAY}", 1)
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	take := func(g *Gateway, n int) int {
		got := 0
		for range n {
			var dc decision
			g.table.Load().decide(&dc, "h", "/prod/items", "GET", []string{"rateratelimitkey00001"}, clock.Load())
			if dc.outcome == schemas.DecisionAllowed {
				got++
			}
		}
		return got
	}
	end := time.Unix(0, testEpoch.UnixNano()).UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).UnixNano()
	sig := schemas.QuotaSignal{PlanID: "gold", KeyID: "k1", Used: 0, Limit: 100, PeriodEnd: end, AsOf: clock.Load(),
		Nodes: []schemas.NodeCount{{Node: "a"}, {Node: "b"}}}
	for _, withSignal := range []bool{false, true} {
		g, err := New(Config{Node: "b", Now: clock.Load, Fleet: 2}, testCatalog(t, yaml))
		if err != nil {
			t.Fatal(err)
		}
		if withSignal && !g.ApplySignal(&sig) {
			t.Fatal("signal not applied")
		}
		if n := take(g, 30); n != 30 {
			t.Fatalf("before the restart: %d admitted", n)
		}
		saved := g.LocalCounts()
		if len(saved) != 1 || saved[0] != (LocalCount{KeyID: "k1", PlanID: "gold", PeriodEnd: end, Local: 30}) {
			t.Fatalf("local counts %+v", saved)
		}
		restarted, err := New(Config{Node: "b", Now: clock.Load, Fleet: 2}, testCatalog(t, yaml))
		if err != nil {
			t.Fatal(err)
		}
		if n := restarted.RestoreLocal(saved); n != 1 {
			t.Fatalf("restored %d", n)
		}
		if withSignal && !restarted.ApplySignal(&sig) {
			t.Fatal("signal not applied after the restart")
		}
		// Its share is 50 (signal: 100 left between a and b; fail-safe:
		// half of 100); 30 were admitted before the restart.
		if n := take(restarted, 100); n != 20 {
			t.Fatalf("signal %v: %d admitted after the restart, want the 20 left of the share", withSignal, n)
		}
	}
	// A count of another period is not restored.
	g, _ := New(Config{Node: "b", Now: clock.Load, Fleet: 2}, testCatalog(t, yaml))
	if n := g.RestoreLocal([]LocalCount{{KeyID: "k1", PlanID: "gold", PeriodEnd: end - 86400e9, Local: 30}}); n != 0 {
		t.Fatalf("restored a count of yesterday")
	}
}

// An enforcer whose clock is off the aggregators' grants no fail-safe
// lease: a key without a signal of the period it is in gets 429; a key
// with one keeps its lease; when the clock agrees again, the fail-safe
// lease is back.
func TestNoFailSafeLeaseOnASkewedClock(t *testing.T) {
	yaml := strings.Replace(rateYAML, "throttle: {rateLimit: 100, burstLimit: 100}", "quota: {limit: 100, period: DAY}", 1)
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	g, err := New(Config{Node: "b", Now: clock.Load, Fleet: 2}, testCatalog(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	try := func() schemas.Decision {
		var dc decision
		g.table.Load().decide(&dc, "h", "/prod/items", "GET", []string{"rateratelimitkey00001"}, clock.Load())
		return dc.outcome
	}
	// A request before the skew was known started the period's counter
	// with the fail-safe lease; once it is known, nothing more.
	if d := try(); d != schemas.DecisionAllowed {
		t.Fatalf("before the skew was known: %v", d)
	}
	g.SetClockSkewed(true)
	if d := try(); d != schemas.DecisionQuotaExceeded {
		t.Fatalf("skewed, no signal: %v, want refused", d)
	}
	end := time.Unix(0, testEpoch.UnixNano()).UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).UnixNano()
	sig := schemas.QuotaSignal{PlanID: "gold", KeyID: "k1", Used: 0, Limit: 100, PeriodEnd: end, AsOf: clock.Load(),
		Nodes: []schemas.NodeCount{{Node: "b"}}}
	if !g.ApplySignal(&sig) {
		t.Fatal("signal not applied")
	}
	if d := try(); d != schemas.DecisionAllowed {
		t.Fatalf("skewed, with a signal of its period: %v", d)
	}
	clock.Store(end) // the next day, no signal of it
	if d := try(); d != schemas.DecisionQuotaExceeded {
		t.Fatalf("skewed, a new period: %v, want refused", d)
	}
	g.SetClockSkewed(false)
	clock.Store(end + 86400e9)
	if d := try(); d != schemas.DecisionAllowed {
		t.Fatalf("the clock agrees again, a new period: %v, want the fail-safe lease", d)
	}
}
