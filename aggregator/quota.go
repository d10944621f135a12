package aggregator

import (
	"cmp"
	"slices"
	"sync"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

// authority is the quota state of the keys of the partitions this
// aggregator owns: per key and plan, the requests admitted in the plan's
// current period, by the enforcer that admitted them. A key's events all
// land in one partition, so the owner of the partition is the only
// aggregator counting the key.
type authority struct {
	mu   sync.Mutex
	keys map[planKey]*keyUsage
	// plans caches the quotas of plans of the catalog plansOf, by plan
	// id: a catalog lookup per event cost a sync.Pool round and a B-tree
	// search.
	plansOf *catalog.State
	plans   map[string]planQuota
	// urgent is signalled when a key crosses 80% or 100% of its quota,
	// for the publisher not to wait for its tick.
	urgent chan struct{}
}

// planKey names a key's usage under a plan.
type planKey struct{ plan, key string }

type keyUsage struct {
	partition   int
	plan, key   string
	idx, end    int64            // the period counted, and its end (Unix ns)
	limit       int64            // the period's limit
	nodes       map[string]int64 // admitted in the period, by enforcer
	admitted    int64            // the sum of nodes
	adjustments int64            // UpdateUsage deltas in the period
	asOf        int64            // time of the newest event counted
	changed     bool             // since the last signal
	sentUsed    int64            // Used of the last signal
}

func (k *keyUsage) used() int64 { return k.adjustments + k.admitted }

// setNode sets the count of an enforcer.
func (k *keyUsage) setNode(node string, n int64) {
	k.admitted += n - k.nodes[node]
	k.nodes[node] = n
}

func newAuthority() *authority {
	return &authority{keys: map[planKey]*keyUsage{}, urgent: make(chan struct{}, 1)}
}

// quotaLocked is quotaOf(cat.Plan(id)), cached per catalog.
func (a *authority) quotaLocked(cat *catalog.State, id string) (planQuota, bool) {
	if a.plansOf != cat { // another snapshot (a State never changes)
		if a.plans == nil {
			a.plans = map[string]planQuota{}
		}
		a.plansOf = cat
		clear(a.plans)
	}
	pq, ok := a.plans[id]
	if !ok {
		var valid bool
		if pq, valid = quotaOf(cat.Plan(id)); !valid {
			pq = planQuota{} // Period invalid: no quota
		}
		a.plans[id] = pq
	}
	return pq, pq.q.Period.Valid()
}

// planQuota is what the authority needs of a plan.
type planQuota struct {
	q       catalog.Quota
	created int64 // Unix seconds
}

func quotaOf(p *catalog.UsagePlan) (planQuota, bool) {
	if p == nil || p.Quota == nil || !p.Quota.Period.Valid() {
		return planQuota{}, false
	}
	return planQuota{q: *p.Quota, created: p.CreatedDate}, true
}

// limit is the period's limit (AWS's offset applies to the period the
// plan was created in).
func (pq planQuota) limit(idx int64) int64 { return pq.q.LimitAt(idx, pq.created) }

// restore replaces the state of a partition's keys with what the store
// holds for their current periods.
func (a *authority) restore(partition int, rows []usage.NodeDayCount, cat *catalog.State, now int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dropLocked(partition)
	a.mergeLocked(partition, rows, cat, now)
}

// merge takes from the store's rows the adjustments of the partition's
// keys, and raises their counts per enforcer to the store's where the
// store has more (it never has while the partition is owned: events are
// counted when read, before they are stored; restore starts from it).
func (a *authority) merge(partition int, rows []usage.NodeDayCount, cat *catalog.State, now int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mergeLocked(partition, rows, cat, now)
}

func (a *authority) mergeLocked(partition int, rows []usage.NodeDayCount, cat *catalog.State, now int64) {
	type kn struct {
		id   planKey
		node string
	}
	nodes := map[kn]int64{}
	adj := map[planKey]int64{}
	keys := map[planKey]*keyUsage{}
	for _, r := range rows {
		pq, ok := a.quotaLocked(cat, r.PlanID)
		if !ok {
			continue
		}
		// The period's days only: a row dated after it (a fast clock,
		// an event stamped ahead) is not this period's use.
		start, end := pq.q.Period.Bounds(now)
		if day := utc.DayStart(r.Day); day < start || day >= end {
			continue
		}
		id := planKey{r.PlanID, r.KeyID}
		keys[id] = a.keyLocked(partition, r.PlanID, r.KeyID, pq, now)
		if r.Admitted > 0 {
			nodes[kn{id, r.Node}] += r.Admitted
		}
		adj[id] += r.Adjustment
	}
	// A changed state is as of now: enforcers ignore a signal older than
	// one they applied.
	for id, k := range keys {
		if k.adjustments != adj[id] || len(k.nodes) == 0 {
			k.adjustments, k.changed, k.asOf = adj[id], true, max(k.asOf, now)
		}
	}
	for x, n := range nodes {
		if k := keys[x.id]; k.nodes[x.node] < n {
			k.setNode(x.node, n)
			k.changed, k.asOf = true, max(k.asOf, now)
		}
	}
}

// drop forgets a partition's keys (another aggregator owns them now).
func (a *authority) drop(partition int) {
	a.mu.Lock()
	a.dropLocked(partition)
	a.mu.Unlock()
}

func (a *authority) dropLocked(partition int) {
	for id, k := range a.keys {
		if k.partition == partition {
			delete(a.keys, id)
		}
	}
}

func (a *authority) keyLocked(partition int, plan, key string, pq planQuota, now int64) *keyUsage {
	id := planKey{plan, key}
	k := a.keys[id]
	idx := pq.q.Period.Index(now)
	if k == nil || k.idx < idx {
		k = &keyUsage{partition: partition, plan: plan, key: key, idx: idx, end: pq.q.Period.Start(idx + 1),
			nodes: map[string]int64{}}
		a.keys[id] = k
	}
	k.limit = pq.limit(k.idx)
	return k
}

// count adds admitted events to their keys' usage as the worker reads
// them, before their batch is stored (signals must not wait for the
// store; a restart restores the counts from the store, see restoreQuota).
func (a *authority) count(partition int, events []schemas.UsageEvent, cat *catalog.State, now int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	urgent := false
	for i := range events {
		e := &events[i]
		if !e.Admitted() || e.PlanID == "" || e.KeyID == "" {
			continue
		}
		pq, ok := a.quotaLocked(cat, e.PlanID)
		if !ok {
			continue
		}
		k := a.keyLocked(partition, e.PlanID, e.KeyID, pq, now)
		if pq.q.Period.Index(e.Time) != k.idx {
			continue // another period's event, late or early
		}
		before := k.used()
		k.nodes[e.Node]++
		k.admitted++
		k.asOf = max(k.asOf, e.Time)
		k.changed = true
		if crossed(before, before+1, k.limit) {
			urgent = true
		}
	}
	if urgent {
		select {
		case a.urgent <- struct{}{}:
		default:
		}
	}
}

// crossed reports whether going from before to after passes 80% or 100%
// of limit: the points where enforcers must hear at once.
func crossed(before, after, limit int64) bool {
	if limit <= 0 {
		return false
	}
	at80 := (limit*8 + 9) / 10
	return (before < at80 && after >= at80) || (before < limit && after >= limit)
}

// changed returns the signals of the keys that changed since the last
// call, sorted by plan and key, and marks them sent.
func (a *authority) changed(now int64) []schemas.QuotaSignal {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []schemas.QuotaSignal
	for id, k := range a.keys {
		if k.end <= now && !k.changed {
			delete(a.keys, id) // a period that ended: its state is in the store
			continue
		}
		if !k.changed {
			continue
		}
		used := k.used()
		s := schemas.QuotaSignal{PlanID: k.plan, KeyID: k.key, Used: used, Limit: k.limit, PeriodEnd: k.end,
			AsOf: k.asOf, Exhausted: used >= k.limit}
		for n, c := range k.nodes {
			s.Nodes = append(s.Nodes, schemas.NodeCount{Node: n, Counted: c})
		}
		slices.SortFunc(s.Nodes, func(a, b schemas.NodeCount) int { return cmp.Compare(a.Node, b.Node) })
		out = append(out, s)
		k.changed, k.sentUsed = false, used
	}
	slices.SortFunc(out, func(a, b schemas.QuotaSignal) int {
		return cmp.Or(cmp.Compare(a.PlanID, b.PlanID), cmp.Compare(a.KeyID, b.KeyID))
	})
	return out
}

// unsend marks signals as changed again (their write failed).
func (a *authority) unsend(sigs []schemas.QuotaSignal) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range sigs {
		if k := a.keys[planKey{s.PlanID, s.KeyID}]; k != nil {
			k.changed = true
		}
	}
}
