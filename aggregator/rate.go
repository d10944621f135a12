package aggregator

import (
	"cmp"
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

// RateWriter publishes the division of keys' throttles among the
// enforcers: ingest.SignalWriter.
type RateWriter interface {
	WriteRates(ctx context.Context, signals []schemas.RateSignal) error
}

// The fleet-wide throttle. Each enforcer applies a plan's rate and burst
// to its own requests; without a division of them, a key behind a load
// balancer gets its rate once per enforcer. The aggregator sees every
// request of a key (admitted or refused: each is an event with the
// enforcer's name) and divides the rate by where the requests arrive:
//
//	d_i   = requests of the key at enforcer i per second over the
//	        window: rateWindow slots ending rateLag before enforcer i's
//	        now, by its clock (the aggregator's now less the offset its
//	        events are read at: its clock's offset and their quickest
//	        delay); an enforcer of the key silent for the ring's span is
//	        forgotten;
//	        D = Σ d_i; r = the plan's rate;
//	        N = enforcers seen in the last fleetWindow
//	floor = r × rateFloor / N          (an enforcer with no requests)
//	D ≤ r: share_i = min(r, d_i + (r - D)), floor at least
//	       each enforcer may take all of what the fleet leaves unused,
//	       so no request is refused while the fleet stays under its
//	       rate, wherever it moves (until the next division, the fleet
//	       may admit up to D + N(r - D) if every enforcer surged at once)
//	D > r: share_i = floor + (r - N·floor) × d_i / D
//	       Σ share_i = r: the fleet admits its rate, split as it arrives
//
// A share is a fraction of the plan's limits (schemas.ShareOne), applied
// to its rate and burst and to each per-method throttle alike. A key
// whose fleet demand stays under r/(2N) is not divided: every enforcer's
// fallback share, 1/N, is already twice what it needs. Divisions are
// published when a share moves by more than shareStep, or every
// rateRefresh (enforcers take a division as stale after a few seconds,
// see enforcer.Gateway.ApplyRate).
const (
	rateSlot    = 250 * time.Millisecond
	rateSlots   = 8                // the ring of slots kept per key and enforcer: 2 s
	rateWindow  = 4                // slots in the window: 1 s
	rateLag     = 1                // slots between the window's end and the enforcer's now
	divideChunk = 1024             // hot keys divided under one hold of the lock
	maxFleet    = 4096             // enforcers kept, in the fleet and per key: names beyond are not counted
	fleetWindow = 10 * time.Second // an enforcer silent this long has left the fleet
	rateEvery   = rateSlot         // how often keys are divided
	rateRefresh = time.Second      // a division is published again at least this often
	rateFloor   = 0.03             // of the rate, shared by the enforcers that have no requests
	shareStep   = schemas.ShareOne / 64
)

// rates tracks the requests of keys under throttled plans per enforcer,
// and divides their plans' rates.
//
// What it costs at a million keys: counting an event is two map lookups
// at most; dividing looks only at the hot keys (those whose requests in
// one slot reached the division's threshold, and stay there while it
// needs a division), so a pass costs the busy keys, not the catalog's
// (BenchmarkRatesDivide). Keys are kept in two generations of a ring's
// span each: a key read in the current one is in cur, and one not read
// for two spans leaves with prev, with no sweep.
type rates struct {
	mu        sync.Mutex
	cur, prev map[planKey]*keyRate
	genStart  int64                // when cur began (aggregator clock)
	hot       map[planKey]*keyRate // the keys divide looks at
	nodes     map[string]int64     // enforcer → the last time (aggregator clock) one of its events was read
	// name is the aggregator's (Config.Name), the key of its fleet
	// signals; fleetSent when it last published one.
	name      string
	fleetSent int64
	started   int64 // the first pass (aggregator clock)
	// plans caches the plans' rates by id for the catalog plansOf.
	plansOf *catalog.State
	plans   map[string]float64
}

type keyRate struct {
	partition int
	last      int64 // aggregator clock of the last event
	hot       bool  // in rates.hot
	// all counts the key's requests per slot, all enforcers together:
	// how it becomes hot.
	all    [rateSlots]rateCount
	nodes  map[string]*nodeRing
	sent   schemas.RateSignal // the last published; Shares nil before
	sentAt int64
}

// nodeRing is a key's requests at one enforcer by slot of the events'
// times (the enforcer's clock); when (the aggregator's clock) its last
// event was read; and the offset of its events' times from the
// aggregator's clock when they are read (its clock's offset plus the
// events' delay), followed down at once and up slowly, so that it holds
// the quickest deliveries: the aggregator's now, less it, is the
// enforcer's now as its events show it.
type nodeRing struct {
	ring   [rateSlots]rateCount
	read   int64
	offset int64
	seen   bool
}

type rateCount struct {
	slot int64 // event time / rateSlot
	n    int64
}

func newRates(name string) *rates {
	return &rates{name: name, cur: map[planKey]*keyRate{}, prev: map[planKey]*keyRate{}, hot: map[planKey]*keyRate{},
		nodes: map[string]int64{}}
}

// generationLocked starts a new generation when the current one is a
// ring's span old: keys not read since the one before are forgotten.
func (r *rates) generationLocked(now int64) {
	if now-r.genStart < int64(rateSlots*rateSlot) {
		return
	}
	r.prev, r.cur, r.genStart = r.cur, make(map[planKey]*keyRate, len(r.cur)), now
}

// keyLocked returns the key's state, making it if it has none.
func (r *rates) keyLocked(id planKey, partition int) *keyRate {
	if k := r.cur[id]; k != nil {
		return k
	}
	k := r.prev[id]
	if k == nil {
		k = &keyRate{partition: partition, nodes: map[string]*nodeRing{}}
	}
	r.cur[id] = k
	return k
}

// rateOf is the rate a plan's shares divide: its throttle's, or the
// largest of its per-method throttles'; 0 when it has none.
func (r *rates) rateOfLocked(cat *catalog.State, id string) float64 {
	if r.plansOf != cat {
		if r.plans == nil {
			r.plans = map[string]float64{}
		}
		r.plansOf = cat
		clear(r.plans)
	}
	rate, ok := r.plans[id]
	if !ok {
		if p := cat.Plan(id); p != nil {
			if p.Throttle != nil {
				rate = p.Throttle.RateLimit
			}
			for _, as := range p.APIStages {
				for _, t := range as.Throttle {
					rate = max(rate, t.RateLimit)
				}
			}
		}
		if math.IsNaN(rate) || math.IsInf(rate, 0) || rate < 0 {
			rate = 0
		}
		r.plans[id] = rate
	}
	return rate
}

// count adds events, as read, to their keys' demand.
func (r *rates) count(partition int, events []schemas.UsageEvent, cat *catalog.State, now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.generationLocked(now)
	for i := range events {
		e := &events[i]
		if _, known := r.nodes[e.Node]; known || len(r.nodes) < maxFleet {
			r.nodes[e.Node] = now
		}
		if e.KeyID == "" || e.PlanID == "" {
			continue
		}
		switch e.Decision {
		case schemas.DecisionAllowed, schemas.DecisionThrottled, schemas.DecisionQuotaExceeded:
		default:
			continue
		}
		rate := r.rateOfLocked(cat, e.PlanID)
		if rate == 0 {
			continue
		}
		id := planKey{e.PlanID, e.KeyID}
		k := r.keyLocked(id, partition)
		k.last = now
		nr := k.nodes[e.Node]
		if nr == nil {
			if len(k.nodes) >= maxFleet {
				continue
			}
			nr = &nodeRing{}
			k.nodes[e.Node] = nr
		}
		s := e.Time / int64(rateSlot)
		nr.read = now
		switch d := now - e.Time; {
		case !nr.seen || d < nr.offset:
			nr.offset, nr.seen = d, true
		default:
			nr.offset += (d - nr.offset) / 64
		}
		c := &nr.ring[s%rateSlots]
		if c.slot != s {
			if c.slot > s {
				continue // older than the ring
			}
			*c = rateCount{slot: s}
		}
		c.n += e.Requests()
		a := &k.all[s%rateSlots]
		if a.slot < s {
			*a = rateCount{slot: s}
		}
		a.n += e.Requests()
		// Hot once a slot holds more than the division's threshold
		// (r/2N a second) would allow.
		if !k.hot && float64(a.n) > rate*rateSlot.Seconds()/float64(2*max(len(r.nodes), 1)) {
			k.hot = true
			r.hot[id] = k
		}
	}
}

// drop forgets a partition's keys (another aggregator owns them now).
func (r *rates) drop(partition int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range []map[planKey]*keyRate{r.cur, r.prev, r.hot} {
		for id, k := range m {
			if k.partition == partition {
				delete(m, id)
			}
		}
	}
}

// divide returns the divisions to publish at now, sorted by plan and
// key, and records them as sent.
func (r *rates) divide(cat *catalog.State, now int64) []schemas.RateSignal {
	r.mu.Lock()
	var fleet []string
	for n, t := range r.nodes {
		if now-t > int64(fleetWindow) {
			delete(r.nodes, n)
			continue
		}
		fleet = append(fleet, n)
	}
	slices.Sort(fleet)
	r.generationLocked(now)
	if r.started == 0 {
		r.started = now
	}
	ids := make([]planKey, 0, len(r.hot))
	for id := range r.hot {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	// The hot keys a chunk at a time, so that the partition workers,
	// which count each event under the same lock, wait for a chunk, not
	// for the pass.
	var out []schemas.RateSignal
	for from := 0; from < len(ids); from += divideChunk {
		r.mu.Lock()
		for _, id := range ids[from:min(from+divideChunk, len(ids))] {
			k := r.hot[id]
			if k == nil {
				continue // dropped meanwhile
			}
			if s, ok := r.divideLocked(cat, id, k, fleet, now); ok {
				out = append(out, s)
			}
		}
		r.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b schemas.RateSignal) int {
		return cmp.Or(cmp.Compare(a.PlanID, b.PlanID), cmp.Compare(a.KeyID, b.KeyID))
	})
	// The fleet's size, every rateRefresh, busy keys or not, with or
	// without traffic (enforcers take a silence as the aggregators being
	// gone). For its first fleetWindow an aggregator has not heard from
	// every enforcer yet: it says 0, which names no size.
	r.mu.Lock()
	if now-r.fleetSent >= int64(rateRefresh) {
		r.fleetSent = now
		n := int32(len(fleet))
		if now-r.started < int64(fleetWindow) {
			n = 0
		}
		out = append(out, schemas.RateSignal{PlanID: schemas.FleetPlanID, KeyID: cmp.Or(r.name, "aggregator"), AsOf: now, Fleet: n})
	}
	r.mu.Unlock()
	return out
}

// divideLocked divides one hot key, and returns the division when it is
// to be published (it moved, or rateRefresh passed).
func (r *rates) divideLocked(cat *catalog.State, id planKey, k *keyRate, fleet []string, now int64) (schemas.RateSignal, bool) {
	rate := r.rateOfLocked(cat, id.plan)
	if now-k.last > int64(rateSlots*rateSlot) || rate == 0 {
		// No request for the whole ring, or no throttle any more:
		// enforcers fall back.
		delete(r.hot, id)
		k.hot = false
		return schemas.RateSignal{}, false
	}
	s, ok := k.divide(id, fleet, rate, now)
	if !ok {
		if now-k.last > int64(rateSlot) {
			// Quiet for a whole slot: hot again when it is not.
			delete(r.hot, id)
			k.hot = false
		}
		return schemas.RateSignal{}, false
	}
	if k.sent.Shares != nil && now-k.sentAt < int64(rateRefresh) && !moved(&k.sent, &s) {
		return schemas.RateSignal{}, false
	}
	k.sent, k.sentAt = s, now
	return s, true
}

// unsend marks divisions as not sent (their write failed).
func (r *rates) unsend(sigs []schemas.RateSignal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range sigs {
		if s.PlanID == schemas.FleetPlanID {
			r.fleetSent = 0
		}
		if k := r.hot[planKey{s.PlanID, s.KeyID}]; k != nil {
			k.sent = schemas.RateSignal{}
		}
	}
}

// divide computes the key's division (see the const block); false when
// the key's demand needs none.
func (k *keyRate) divide(id planKey, fleet []string, rate float64, now int64) (schemas.RateSignal, bool) {
	// The enforcers: the fleet, and any that sent the key's requests
	// without being in it yet; an enforcer of the key silent for a
	// ring's span is forgotten.
	nodes := fleet
	for n, nr := range k.nodes {
		if now-nr.read > int64(rateSlots*rateSlot) {
			delete(k.nodes, n)
			continue
		}
		if _, found := slices.BinarySearch(fleet, n); !found {
			nodes = append(slices.Clip(nodes), n)
		}
	}
	slices.Sort(nodes)
	window := float64(rateWindow) * rateSlot.Seconds()
	demand := make([]float64, len(nodes))
	var total float64
	for i, n := range nodes {
		nr := k.nodes[n]
		if nr == nil {
			continue
		}
		// The window ends rateLag slots before the enforcer's now (by
		// its clock, as its events show it), so that neither its
		// clock's offset from the aggregator's nor the usual delay of
		// its events moves it, and slides on when its requests stop.
		end := (now-nr.offset)/int64(rateSlot) - rateLag
		var c int64
		for _, rc := range nr.ring {
			if rc.slot >= end-rateWindow && rc.slot < end {
				c += rc.n
			}
		}
		demand[i] = float64(c) / window
		total += demand[i]
	}
	n := float64(max(len(nodes), 1))
	if total <= rate/(2*n) {
		return schemas.RateSignal{}, false
	}
	floor := rate * rateFloor / n
	frac := func(r float64) uint32 {
		f := math.Floor(r/rate*schemas.ShareOne + 1e-6) // a whole share stays whole
		return uint32(min(max(f, 1), schemas.ShareOne))
	}
	s := schemas.RateSignal{PlanID: id.plan, KeyID: id.key, AsOf: now, Fleet: int32(len(nodes)),
		Shares: make([]schemas.NodeShare, len(nodes))}
	if total <= rate {
		slack := rate - total
		s.Floor = frac(max(slack, floor))
		for i, node := range nodes {
			s.Shares[i] = schemas.NodeShare{Node: node, Share: frac(max(min(rate, demand[i]+slack), floor))}
		}
	} else {
		s.Floor = frac(floor)
		for i, node := range nodes {
			s.Shares[i] = schemas.NodeShare{Node: node, Share: frac(floor + (rate-n*floor)*demand[i]/total)}
		}
	}
	return s, true
}

// moved reports whether b differs from a enough to publish.
func moved(a, b *schemas.RateSignal) bool {
	if a.Fleet != b.Fleet || len(a.Shares) != len(b.Shares) || absDiff(a.Floor, b.Floor) > shareStep {
		return true
	}
	for i := range a.Shares {
		if a.Shares[i].Node != b.Shares[i].Node || absDiff(a.Shares[i].Share, b.Shares[i].Share) > shareStep {
			return true
		}
	}
	return false
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}
