package aggregator

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

var rateCatalog = catalog.StateOf(&catalog.Catalog{UsagePlans: []catalog.UsagePlan{
	{ID: "gold", Name: "gold", Throttle: &catalog.Throttle{RateLimit: 100, BurstLimit: 100}},
	{ID: "none", Name: "none"},
}})

var rateEpoch = time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC).UnixNano()

// feed counts, for each enforcer, rps[i] requests a second of key k1
// under plan from the time from to to, evenly spaced, read at to.
func feed(r *rates, plan string, nodes []string, rps []float64, from, to int64) {
	for _, n := range nodes {
		r.count(0, []schemas.UsageEvent{{Node: n}}, rateCatalog, to) // seen in the fleet
	}
	for i, n := range nodes {
		if rps[i] == 0 {
			continue
		}
		step := int64(float64(time.Second) / rps[i])
		var evs []schemas.UsageEvent
		for t := from; t < to; t += step {
			evs = append(evs, schemas.UsageEvent{Time: t, Node: n, KeyID: "k1", PlanID: plan, Decision: schemas.DecisionThrottled})
		}
		r.count(0, evs, rateCatalog, to)
	}
}

// divisions is r.divide without the fleet's size, which TestRatesFleetSize
// checks.
func divisions(r *rates, now int64) []schemas.RateSignal {
	var out []schemas.RateSignal
	for _, s := range r.divide(rateCatalog, now) {
		if s.PlanID != schemas.FleetPlanID {
			out = append(out, s)
		}
	}
	return out
}

// Every second the aggregator publishes the fleet's size, whether or not
// a key is busy or any request came; for its first fleetWindow, before
// it can have heard from every enforcer, it says 0.
func TestRatesFleetSize(t *testing.T) {
	r := newRates("agg1")
	now := rateEpoch + int64(2*time.Second)
	feed(r, "gold", []string{"a", "b", "c"}, []float64{1, 0, 0}, rateEpoch, now)
	fleetOf := func(sigs []schemas.RateSignal) (int32, bool) {
		if len(sigs) != 1 || sigs[0].PlanID != schemas.FleetPlanID || sigs[0].KeyID != "agg1" {
			t.Fatalf("%+v, want the fleet's size alone", sigs)
		}
		return sigs[0].Fleet, true
	}
	if n, _ := fleetOf(r.divide(rateCatalog, now)); n != 0 {
		t.Fatalf("a new aggregator says %d enforcers, want 0 (not heard from all yet)", n)
	}
	if sigs := r.divide(rateCatalog, now+int64(rateEvery)); len(sigs) != 0 {
		t.Fatalf("published again within a second: %+v", sigs)
	}
	later := now + int64(fleetWindow)
	feed(r, "gold", []string{"a", "b", "c"}, []float64{1, 0, 0}, later-int64(time.Second), later)
	if n, _ := fleetOf(r.divide(rateCatalog, later)); n != 3 {
		t.Fatalf("fleet %d, want 3", n)
	}
	r.unsend([]schemas.RateSignal{{PlanID: schemas.FleetPlanID}})
	if n, _ := fleetOf(r.divide(rateCatalog, later+int64(rateEvery))); n != 3 {
		t.Fatalf("not published again after a failed write, or %d", n)
	}
	// No request for longer than fleetWindow: still said, with 0.
	if n, _ := fleetOf(r.divide(rateCatalog, later+int64(fleetWindow)+int64(2*time.Second))); n != 0 {
		t.Fatalf("an idle fleet: %d", n)
	}
}

// Enforcer names beyond maxFleet are not counted: events cannot grow the
// fleet, or a division, without bound.
func TestRatesFleetIsBounded(t *testing.T) {
	r := newRates("agg")
	now := rateEpoch + int64(2*time.Second)
	for i := range maxFleet + 100 {
		r.count(0, []schemas.UsageEvent{{Node: fmt.Sprint("n", i), Time: now, KeyID: "k1", PlanID: "gold", Decision: schemas.DecisionThrottled}}, rateCatalog, now)
	}
	if len(r.nodes) != maxFleet || len(r.cur[planKey{"gold", "k1"}].nodes) != maxFleet {
		t.Fatalf("%d enforcers in the fleet, %d of the key; want %d", len(r.nodes), len(r.cur[planKey{"gold", "k1"}].nodes), maxFleet)
	}
}

// An enforcer whose clock is off the aggregator's, or whose events come
// late, is divided by its own events' times: a slow clock is not a
// smaller demand.
func TestRatesDivideByEachEnforcersClock(t *testing.T) {
	r := newRates("agg")
	now := rateEpoch + int64(3*time.Second)
	feed(r, "gold", []string{"fast"}, []float64{200}, now-int64(2*time.Second), now)
	// "slow" stamps its events 1.5 s behind: read as they come, at the
	// aggregator's now, each 5 ms.
	for t := now - int64(2*time.Second); t < now; t += int64(5 * time.Millisecond) {
		r.count(0, []schemas.UsageEvent{{Time: t - int64(1500*time.Millisecond), Node: "slow", KeyID: "k1", PlanID: "gold",
			Decision: schemas.DecisionThrottled}}, rateCatalog, t)
	}
	sigs := divisions(r, now)
	if len(sigs) != 1 {
		t.Fatalf("%d divisions", len(sigs))
	}
	if a, b := shareOf(sigs[0], "fast"), shareOf(sigs[0], "slow"); a < 0.45 || b < 0.45 {
		t.Fatalf("shares fast %.3f, slow %.3f, want half each", a, b)
	}
	// An enforcer of the key silent for the ring's span is dropped.
	feed(r, "gold", []string{"fast"}, []float64{200}, now, now+int64(3*time.Second))
	sigs = divisions(r, now+int64(3*time.Second))
	if len(sigs) != 1 || shareOf(sigs[0], "fast") < 0.95 {
		t.Fatalf("after slow went quiet: %+v", sigs)
	}
}

func shareOf(s schemas.RateSignal, node string) float64 {
	return float64(s.ShareOf(node)) / schemas.ShareOne
}

func TestRatesDivideByWhereRequestsArrive(t *testing.T) {
	nodes := []string{"a", "b", "c"}
	for _, tc := range []struct {
		name string
		rps  []float64
		want []float64 // shares, ±0.02
	}{
		{"even, over the rate", []float64{100, 100, 100}, []float64{1. / 3, 1. / 3, 1. / 3}},
		{"70/20/10 over the rate", []float64{140, 40, 20}, []float64{0.01 + 0.97*0.7, 0.01 + 0.97*0.2, 0.01 + 0.97*0.1}},
		{"all on one, over the rate", []float64{0, 300, 0}, []float64{0.01, 0.98, 0.01}},
		{"under the rate: each its demand and all the slack", []float64{30, 10, 0}, []float64{0.9, 0.7, 0.6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRates("agg")
			now := rateEpoch + int64(2*time.Second)
			feed(r, "gold", nodes, tc.rps, rateEpoch, now)
			sigs := divisions(r, now)
			if len(sigs) != 1 {
				t.Fatalf("%d divisions, want 1", len(sigs))
			}
			s := sigs[0]
			if s.PlanID != "gold" || s.KeyID != "k1" || s.Fleet != 3 || s.AsOf != now {
				t.Fatalf("division %+v", s)
			}
			var sum float64
			for i, n := range nodes {
				got := shareOf(s, n)
				sum += got
				if d := got - tc.want[i]; d > 0.02 || d < -0.02 {
					t.Errorf("%s: share %.3f, want %.3f", n, got, tc.want[i])
				}
			}
			if over := tc.rps[0] + tc.rps[1] + tc.rps[2]; over > 100 && sum > 1 {
				t.Errorf("over the rate, shares sum to %.4f > 1", sum)
			}
			// Published again only once it moves or is due.
			if again := divisions(r, now+int64(rateEvery)); len(again) != 0 {
				t.Errorf("an unchanged division published again: %+v", again)
			}
		})
	}
}

// Over the rate the shares never sum above the whole, every enforcer
// keeps at least the floor, and under it every enforcer gets at least
// what it asks.
func TestRatesDivisionBounds(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		n := 1 + rnd.IntN(6)
		nodes := make([]string, n)
		rps := make([]float64, n)
		for j := range nodes {
			nodes[j] = string(rune('a' + j))
			if rnd.IntN(4) > 0 {
				rps[j] = float64(1 + rnd.IntN(150))
			}
		}
		r := newRates("agg")
		now := rateEpoch + int64(2*time.Second)
		feed(r, "gold", nodes, rps, rateEpoch, now)
		sigs := divisions(r, now)
		var total float64
		for _, x := range rps {
			total += x
		}
		if total <= 100/(2*float64(n)) {
			if len(sigs) != 0 {
				t.Fatalf("case %d: a division of a key that needs none: %+v", i, sigs)
			}
			continue
		}
		if len(sigs) != 1 {
			t.Fatalf("case %d: %d divisions", i, len(sigs))
		}
		var sum float64
		for j, node := range nodes {
			f := shareOf(sigs[0], node)
			sum += f
			if f < rateFloor/float64(n)-1e-4 {
				t.Fatalf("case %d: %s below the floor: %.4f", i, node, f)
			}
			if total <= 100 && f*100 < rps[j]-1 {
				t.Fatalf("case %d (%.0f req/s in all): %s gets %.1f req/s of its %.0f", i, total, node, f*100, rps[j])
			}
		}
		if total > 100 && sum > 1 {
			t.Fatalf("case %d: shares sum to %.4f", i, sum)
		}
	}
}

// Keys of plans without a throttle are not tracked; quiet keys are not
// looked at; keys whose requests stopped are forgotten within two ring
// spans; so are a partition's keys.
func TestRatesForget(t *testing.T) {
	r := newRates("agg")
	now := rateEpoch + int64(2*time.Second)
	feed(r, "none", []string{"a"}, []float64{500}, rateEpoch, now)
	if len(r.cur)+len(r.prev) != 0 {
		t.Fatalf("a plan without a throttle is tracked: %d keys", len(r.cur)+len(r.prev))
	}
	feed(r, "gold", []string{"a"}, []float64{500}, rateEpoch, now)
	if len(divisions(r, now)) != 1 || len(r.hot) != 1 {
		t.Fatal("no division")
	}
	later := now + int64(rateSlots*rateSlot) + 1
	if divisions(r, later); len(r.hot) != 0 {
		t.Fatal("a key without requests for the whole ring is looked at")
	}
	divisions(r, later+int64(rateSlots*rateSlot))
	if len(r.cur)+len(r.prev) != 0 {
		t.Fatalf("a key without requests for two ring spans is kept: %d", len(r.cur)+len(r.prev))
	}
	// A quiet key (1 request a second) is counted, never divided.
	feed(r, "gold", []string{"a", "b"}, []float64{1, 1}, later, later+int64(2*time.Second))
	if len(r.hot) != 0 || len(divisions(r, later+int64(2*time.Second))) != 0 {
		t.Fatal("a quiet key is hot")
	}
	feed(r, "gold", []string{"a"}, []float64{500}, rateEpoch, now)
	r.drop(0)
	if len(r.cur)+len(r.prev)+len(r.hot) != 0 {
		t.Fatal("a dropped partition's key is kept")
	}
}

// benchRates is r with n keys that had a request each in the last
// second, on one of three enforcers: keys too quiet to divide, as most
// of a million are.
func benchRates(n int, now int64) *rates {
	r := newRates("agg")
	evs := make([]schemas.UsageEvent, 1)
	for i := range n {
		evs[0] = schemas.UsageEvent{Time: now - int64(time.Second) + int64(i%1000)*int64(time.Millisecond), Node: string(rune('a' + i%3)),
			KeyID: fmt.Sprintf("key%07d", i), PlanID: "gold", Decision: schemas.DecisionAllowed}
		r.count(0, evs, rateCatalog, now)
	}
	return r
}

// A pass of divide (every 250 ms; the lock it holds meanwhile keeps
// events from being counted) over quiet keys, which it does not look at,
// and busy ones (200 req/s on three enforcers), which it divides.
func BenchmarkRatesDivide(b *testing.B) {
	for _, c := range []struct{ quiet, busy int }{{100_000, 0}, {1_000_000, 0}, {100_000, 1_000}} {
		b.Run(fmt.Sprintf("quiet=%d/busy=%d", c.quiet, c.busy), func(b *testing.B) {
			now := rateEpoch + int64(2*time.Second)
			r := benchRates(c.quiet, now)
			for i := range c.busy {
				evs := make([]schemas.UsageEvent, 0, 400)
				for j := range 400 {
					evs = append(evs, schemas.UsageEvent{Time: now - int64(2*time.Second) + int64(j)*int64(5*time.Millisecond),
						Node: string(rune('a' + j%3)), KeyID: fmt.Sprintf("busy%05d", i), PlanID: "gold", Decision: schemas.DecisionThrottled})
				}
				r.count(0, evs, rateCatalog, now)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for _, k := range r.hot {
					k.sent = schemas.RateSignal{} // publish every pass: the worst case
				}
				divisions(r, now)
			}
			if c.busy > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(c.busy), "ns/busy-key")
			}
		})
	}
}

// Counting one event, as the partition worker does for each.
func BenchmarkRatesCount(b *testing.B) {
	now := rateEpoch + int64(2*time.Second)
	r := benchRates(100_000, now)
	evs := make([]schemas.UsageEvent, 1)
	ids := make([]string, 100_000)
	for i := range ids {
		ids[i] = fmt.Sprintf("key%07d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		evs[0] = schemas.UsageEvent{Time: now, Node: "a", KeyID: ids[i%len(ids)], PlanID: "gold", Decision: schemas.DecisionAllowed}
		r.count(0, evs, rateCatalog, now)
		i++
	}
}
