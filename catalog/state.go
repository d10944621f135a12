package catalog

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/google/btree"
)

// State is the catalog in force, indexed: an immutable snapshot that any
// number of goroutines may read while a Tx prepares its successor.
//
// Keys and plans live in copy-on-write B-trees (github.com/google/btree):
// a Tx clones them in O(1) and each change copies only the nodes on its
// path (O(log n), a few kilobytes), so a change to one key costs the same
// in a catalog of a thousand keys as in one of a million, and a snapshot
// handed to a reader never changes under it. Names, key value hashes,
// customer ids and plan memberships are indexed the same way, so that
// validation, lookups and pages cost O(log n) plus what they return. APIs
// and the gateway settings are few and small: they are copied whole.
//
// Entities returned by a State are shared: do not modify them; change
// them through a Tx.
type State struct {
	gateway  Gateway
	apis     []API     // sorted by id
	webhooks []Webhook // sorted by id

	plans     *btree.BTreeG[*UsagePlan] // by id
	planNames *btree.BTreeG[pair]       // (name, plan id)
	keys      *btree.BTreeG[*APIKey]    // by id
	keyNames  *btree.BTreeG[pair]       // (name, key id)
	keyHashes *btree.BTreeG[pair]       // (value hash, key id)
	// prevHashes indexes the previous values of keys with a rotation
	// (PreviousValueHash, key id): few, so kept apart from keyHashes,
	// whose bulk paths (snapshots, settling a view) know one value per
	// key. A value is unique across both.
	prevHashes *btree.BTreeG[pair]
	customers  *btree.BTreeG[pair] // (customer id, key id), keys that have one
	members    *btree.BTreeG[pair] // (plan id, key id)
}

// pair is an index entry: a value and the id of the entity that holds
// it. Unique values have one pair; a Tx that gives a value to a second
// entity makes a second pair, which validation reports.
type pair struct{ v, id string }

func pairLess(a, b pair) bool { return a.v < b.v || a.v == b.v && a.id < b.id }

func planLess(a, b *UsagePlan) bool { return a.ID < b.ID }
func keyLess(a, b *APIKey) bool     { return a.ID < b.ID }

// degree is the B-trees' minimum degree: nodes hold up to 2*degree-1
// items, so a change copies about four nodes of ~60 items per tree.
const degree = 32

// NewState returns an empty state.
func NewState() *State {
	return &State{
		plans:      btree.NewG(degree, planLess),
		planNames:  btree.NewG(degree, pairLess),
		keys:       btree.NewG(degree, keyLess),
		keyNames:   btree.NewG(degree, pairLess),
		keyHashes:  btree.NewG(degree, pairLess),
		prevHashes: btree.NewG(degree, pairLess),
		customers:  btree.NewG(degree, pairLess),
		members:    btree.NewG(degree, pairLess),
	}
}

// StateOf indexes a catalog. Entities are copied; c is not kept.
func StateOf(c *Catalog) *State {
	s := NewState()
	s.gateway = c.Gateway
	s.apis = slices.Clone(c.APIs)
	slices.SortStableFunc(s.apis, func(a, b API) int { return cmp.Compare(a.ID, b.ID) })
	for i := range c.UsagePlans {
		p := c.UsagePlans[i]
		s.putPlan(&p)
	}
	for i := range c.APIKeys {
		k := c.APIKeys[i]
		k.UsagePlans = slices.Clone(k.UsagePlans)
		s.putKey(&k)
	}
	return s
}

// clone returns a state that shares every node with s until either is
// changed. Not safe to call concurrently with another clone of s.
func (s *State) clone() *State {
	return &State{
		gateway: s.gateway, apis: s.apis, webhooks: s.webhooks,
		plans: s.plans.Clone(), planNames: s.planNames.Clone(),
		keys: s.keys.Clone(), keyNames: s.keyNames.Clone(), keyHashes: s.keyHashes.Clone(),
		prevHashes: s.prevHashes.Clone(), customers: s.customers.Clone(), members: s.members.Clone(),
	}
}

// Gateway returns the gateway settings.
func (s *State) Gateway() Gateway { return s.gateway }

// APIs returns the APIs sorted by id (shared: do not modify).
func (s *State) APIs() []API { return s.apis }

// API returns the API with the given id, or nil.
func (s *State) API(id string) *API {
	i, ok := slices.BinarySearchFunc(s.apis, id, func(a API, id string) int { return strings.Compare(a.ID, id) })
	if !ok {
		return nil
	}
	return &s.apis[i]
}

// NumKeys returns the number of keys.
func (s *State) NumKeys() int { return s.keys.Len() }

// NumPlans returns the number of plans.
func (s *State) NumPlans() int { return s.plans.Len() }

// Key returns the key with the given id, or nil.
func (s *State) Key(id string) *APIKey {
	probe := keyProbes.Get().(*APIKey)
	probe.ID = id
	k, _ := s.keys.Get(probe)
	probe.ID = ""
	keyProbes.Put(probe)
	return k
}

// keyProbes and planProbes hold the search values of Key and Plan. The
// trees hold pointers and compare them through a func value, so a probe
// made on the spot escapes: it was a 176-byte allocation per lookup, and
// a start that applies a million keys looks keys up millions of times.
var (
	keyProbes  = sync.Pool{New: func() any { return new(APIKey) }}
	planProbes = sync.Pool{New: func() any { return new(UsagePlan) }}
)

// KeyByName returns the key with the given name, or nil.
func (s *State) KeyByName(name string) *APIKey { return s.Key(first(s.keyNames, name)) }

// KeyByHash returns the key whose value has the given hash, as its
// current value or as the previous one of a rotation, or nil: a value
// either holds is taken.
func (s *State) KeyByHash(hash string) *APIKey {
	if id := first(s.keyHashes, hash); id != "" {
		return s.Key(id)
	}
	return s.Key(first(s.prevHashes, hash))
}

// hashHolders returns up to two ids of keys holding a value hash, as
// their current or previous value.
func (s *State) hashHolders(hash string) []string {
	h := holders(s.keyHashes, hash)
	if len(h) < 2 && s.prevHashes.Len() > 0 {
		for _, id := range holders(s.prevHashes, hash) {
			if len(h) < 2 && !slices.Contains(h, id) {
				h = append(h, id)
			}
		}
	}
	return h
}

// KeyByNameOrID finds a key by id first, then by name.
func (s *State) KeyByNameOrID(v string) *APIKey {
	if k := s.Key(v); k != nil {
		return k
	}
	return s.KeyByName(v)
}

// Plan returns the plan with the given id, or nil.
func (s *State) Plan(id string) *UsagePlan {
	probe := planProbes.Get().(*UsagePlan)
	probe.ID = id
	p, _ := s.plans.Get(probe)
	probe.ID = ""
	planProbes.Put(probe)
	return p
}

// PlanByName returns the plan with the given name, or nil.
func (s *State) PlanByName(name string) *UsagePlan { return s.Plan(first(s.planNames, name)) }

// PlanByNameOrID finds a plan by id first, then by name.
func (s *State) PlanByNameOrID(v string) *UsagePlan {
	if p := s.Plan(v); p != nil {
		return p
	}
	return s.PlanByName(v)
}

// Keys calls f for each key with an id greater than after, in id order,
// until f returns false.
func (s *State) Keys(after string, f func(*APIKey) bool) {
	s.keys.AscendGreaterOrEqual(&APIKey{ID: after}, func(k *APIKey) bool {
		return after != "" && k.ID == after || f(k)
	})
}

// KeysByName calls f for each key whose name starts with prefix and
// sorts after the name after, in name order, until f returns false.
func (s *State) KeysByName(prefix, after string, f func(*APIKey) bool) {
	from := pair{v: max(prefix, after)}
	s.keyNames.AscendGreaterOrEqual(from, func(p pair) bool {
		if !strings.HasPrefix(p.v, prefix) {
			return false
		}
		if after != "" && p.v == after {
			return true
		}
		return f(s.Key(p.id))
	})
}

// KeysOfCustomer calls f for each key of the customer id with an id
// greater than after, in id order, until f returns false.
func (s *State) KeysOfCustomer(customer, after string, f func(*APIKey) bool) {
	each(s.customers, customer, after, func(id string) bool { return f(s.Key(id)) })
}

// PlanKeys calls f for each key of the plan with an id greater than
// after, in id order, until f returns false.
func (s *State) PlanKeys(planID, after string, f func(*APIKey) bool) {
	each(s.members, planID, after, func(id string) bool { return f(s.Key(id)) })
}

// NumPlanKeys counts the keys of a plan, in O(keys of the plan).
func (s *State) NumPlanKeys(planID string) int {
	n := 0
	each(s.members, planID, "", func(string) bool { n++; return true })
	return n
}

// Plans calls f for each plan with an id greater than after, in id
// order, until f returns false.
func (s *State) Plans(after string, f func(*UsagePlan) bool) {
	s.plans.AscendGreaterOrEqual(&UsagePlan{ID: after}, func(p *UsagePlan) bool {
		return after != "" && p.ID == after || f(p)
	})
}

// Catalog returns the whole catalog as a plain value, entities sorted by
// id: O(size), for exports and files, never on a change's path.
func (s *State) Catalog() *Catalog {
	c := &Catalog{Gateway: s.gateway, APIs: slices.Clone(s.apis),
		UsagePlans: make([]UsagePlan, 0, s.plans.Len()), APIKeys: make([]APIKey, 0, s.keys.Len())}
	s.plans.Ascend(func(p *UsagePlan) bool { c.UsagePlans = append(c.UsagePlans, *p); return true })
	s.keys.Ascend(func(k *APIKey) bool {
		kk := *k
		kk.UsagePlans = slices.Clone(k.UsagePlans)
		c.APIKeys = append(c.APIKeys, kk)
		return true
	})
	return c
}

// first returns the id of the first entity that holds v in idx, or "".
func first(idx *btree.BTreeG[pair], v string) string {
	id := ""
	idx.AscendGreaterOrEqual(pair{v: v}, func(p pair) bool {
		if p.v == v {
			id = p.id
		}
		return false
	})
	return id
}

// holders returns up to two ids that hold v in idx.
func holders(idx *btree.BTreeG[pair], v string) []string {
	var out []string
	each(idx, v, "", func(id string) bool { out = append(out, id); return len(out) < 2 })
	return out
}

// each calls f for the ids holding v in idx that are greater than after.
func each(idx *btree.BTreeG[pair], v, after string, f func(id string) bool) {
	idx.AscendGreaterOrEqual(pair{v: v, id: after}, func(p pair) bool {
		if p.v != v {
			return false
		}
		if after != "" && p.id == after {
			return true
		}
		return f(p.id)
	})
}

// putKey replaces or adds a key, keeping the indexes. k is kept: the
// caller gives up its copy.
func (s *State) putKey(k *APIKey) {
	if old, ok := s.keys.ReplaceOrInsert(k); ok {
		s.unindexKey(old)
	}
	s.keyNames.ReplaceOrInsert(pair{k.Name, k.ID})
	s.keyHashes.ReplaceOrInsert(pair{k.ValueHash, k.ID})
	if k.PreviousValueHash != "" {
		s.prevHashes.ReplaceOrInsert(pair{k.PreviousValueHash, k.ID})
	}
	if k.CustomerID != "" {
		s.customers.ReplaceOrInsert(pair{k.CustomerID, k.ID})
	}
	for _, p := range k.UsagePlans {
		s.members.ReplaceOrInsert(pair{p, k.ID})
	}
}

// deleteKey removes a key and its index entries; it returns the key
// removed, or nil.
func (s *State) deleteKey(id string) *APIKey {
	old, ok := s.keys.Delete(&APIKey{ID: id})
	if !ok {
		return nil
	}
	s.unindexKey(old)
	return old
}

func (s *State) unindexKey(k *APIKey) {
	s.keyNames.Delete(pair{k.Name, k.ID})
	s.keyHashes.Delete(pair{k.ValueHash, k.ID})
	if k.PreviousValueHash != "" {
		s.prevHashes.Delete(pair{k.PreviousValueHash, k.ID})
	}
	if k.CustomerID != "" {
		s.customers.Delete(pair{k.CustomerID, k.ID})
	}
	for _, p := range k.UsagePlans {
		s.members.Delete(pair{p, k.ID})
	}
}

// putPlan replaces or adds a plan, keeping the name index.
func (s *State) putPlan(p *UsagePlan) {
	if old, ok := s.plans.ReplaceOrInsert(p); ok {
		s.planNames.Delete(pair{old.Name, old.ID})
	}
	s.planNames.ReplaceOrInsert(pair{p.Name, p.ID})
}

// deletePlan removes a plan (not its memberships); it returns the plan
// removed, or nil.
func (s *State) deletePlan(id string) *UsagePlan {
	old, ok := s.plans.Delete(&UsagePlan{ID: id})
	if !ok {
		return nil
	}
	s.planNames.Delete(pair{old.Name, old.ID})
	return old
}

// putAPI replaces or adds an API (copying the small APIs slice).
func (s *State) putAPI(a API) {
	apis := slices.Clone(s.apis)
	i, ok := slices.BinarySearchFunc(apis, a.ID, func(x API, id string) int { return strings.Compare(x.ID, id) })
	if ok {
		apis[i] = a
	} else {
		apis = slices.Insert(apis, i, a)
	}
	s.apis = apis
}

// deleteAPI removes an API; it reports whether there was one.
func (s *State) deleteAPI(id string) bool {
	i, ok := slices.BinarySearchFunc(s.apis, id, func(x API, id string) int { return strings.Compare(x.ID, id) })
	if ok {
		s.apis = slices.Delete(slices.Clone(s.apis), i, i+1)
	}
	return ok
}

// DiffStates returns the change from old to next, comparing every
// entity: O(size), for tests, rebuilds and whole-catalog tools.
func DiffStates(old, next *State) *Change {
	ch := &Change{Old: old, New: next}
	ch.Gateway = !sameJSON(old.gateway, next.gateway)
	ch.APIs = !sameJSON(old.apis, next.apis)
	ch.Webhooks = !sameJSON(old.webhooks, next.webhooks)
	ids := map[string]bool{}
	old.Plans("", func(p *UsagePlan) bool { ids[p.ID] = true; return true })
	next.Plans("", func(p *UsagePlan) bool { ids[p.ID] = true; return true })
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		if o, n := old.Plan(id), next.Plan(id); o == nil || n == nil || !sameJSON(o, n) {
			ch.Plans = append(ch.Plans, id)
		}
	}
	clear(ids)
	old.Keys("", func(k *APIKey) bool { ids[k.ID] = true; return true })
	next.Keys("", func(k *APIKey) bool { ids[k.ID] = true; return true })
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		if o, n := old.Key(id), next.Key(id); o == nil || n == nil || !sameJSON(o, n) {
			ch.Keys = append(ch.Keys, id)
		}
	}
	return ch
}

// Builder builds a State from entities read in bulk (a store's rows, a
// snapshot, the new keys of a file). Entities are gathered, then State
// sorts each tree's items and inserts them in one pass, the trees side
// by side; a later Add of an id given before replaces it. Not safe for
// concurrent use.
type Builder struct {
	s     *State
	plans []*UsagePlan
	keys  []*APIKey
}

// NewBuilder returns an empty builder.
func NewBuilder() *Builder { return &Builder{s: NewState()} }

// Add adds an entity: a Gateway, an API, a Webhook, a *UsagePlan or an
// *APIKey (kept: the caller gives it up). Anything else is ignored.
func (b *Builder) Add(v any) {
	switch e := v.(type) {
	case Gateway:
		b.s.gateway = e
	case API:
		b.s.putAPI(e)
	case Webhook:
		b.s.putWebhook(e)
	case *UsagePlan:
		b.plans = append(b.plans, e)
	case *APIKey:
		b.keys = append(b.keys, e)
	}
}

// State returns the state built; the builder must not be used after.
func (b *Builder) State() *State {
	s := b.s
	plans := lastByID(b.plans, func(p *UsagePlan) string { return p.ID })
	keys := lastByID(b.keys, func(k *APIKey) string { return k.ID })
	b.plans, b.keys = nil, nil
	var wg sync.WaitGroup
	wg.Go(func() {
		fill(&s.plans, planLess, plans)
		fill(&s.planNames, pairLess, pairsOf(plans, func(p *UsagePlan, add func(pair)) { add(pair{p.Name, p.ID}) }))
	})
	s.fillKeys(&wg, keys)
	wg.Wait()
	return s
}

// fillPrevHashes adds the previous values of keys (new to s) to its
// index: a pass over the keys, few of which have one.
func (s *State) fillPrevHashes(keys []*APIKey) {
	var ps []pair
	for _, k := range keys {
		if k.PreviousValueHash != "" {
			ps = append(ps, pair{k.PreviousValueHash, k.ID})
		}
	}
	sortPairs(ps)
	fill(&s.prevHashes, pairLess, ps)
}

// fillKeys adds keys (sorted by id, ids unique and new to s) to the key
// tree and its indexes, each tree on a goroutine of wg.
func (s *State) fillKeys(wg *sync.WaitGroup, keys []*APIKey) {
	wg.Go(func() { fill(&s.keys, keyLess, keys) })
	wg.Go(func() {
		fill(&s.keyNames, pairLess, pairsOf(keys, func(k *APIKey, add func(pair)) { add(pair{k.Name, k.ID}) }))
	})
	wg.Go(func() {
		fill(&s.keyHashes, pairLess, pairsOf(keys, func(k *APIKey, add func(pair)) { add(pair{k.ValueHash, k.ID}) }))
		s.fillPrevHashes(keys)
	})
	wg.Go(func() {
		fill(&s.customers, pairLess, pairsOf(keys, func(k *APIKey, add func(pair)) {
			if k.CustomerID != "" {
				add(pair{k.CustomerID, k.ID})
			}
		}))
	})
	wg.Go(func() {
		fill(&s.members, pairLess, pairsOf(keys, func(k *APIKey, add func(pair)) {
			for i, p := range k.UsagePlans {
				if !slices.Contains(k.UsagePlans[:i], p) { // a plan named twice is one membership
					add(pair{p, k.ID})
				}
			}
		}))
	})
}

// lastByID sorts list by id, keeping the last of the entities given
// with one id (as inserting them one by one would). A list already in
// id order, as a store reads it, is only checked.
func lastByID[T any](list []T, id func(T) string) []T {
	if !slices.IsSortedFunc(list, func(a, b T) int { return cmp.Compare(id(a), id(b)) }) {
		slices.SortStableFunc(list, func(a, b T) int { return cmp.Compare(id(a), id(b)) })
	}
	out := list[:0]
	for i, e := range list {
		if i+1 < len(list) && id(list[i+1]) == id(e) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// pairsOf returns the index pairs of list that index gives, sorted.
func pairsOf[T any](list []T, index func(T, func(pair))) []pair {
	out := make([]pair, 0, len(list))
	add := func(p pair) { out = append(out, p) }
	for _, e := range list {
		index(e, add)
	}
	sortPairs(out)
	return out
}

// sortPairs sorts index pairs. The strings of a million pairs lie all
// over the heap, and a comparison sort reads two of them per comparison:
// a cache miss each, most of the time of the sort. So each pair is
// sorted with the first 16 bytes of its value beside it, which decide
// nearly every comparison (a key name, an SHA-256 in hex), and only ties
// read the strings. A slice already in order (the memberships of keys
// read in id order) is left as it is.
func sortPairs(ps []pair) {
	if slices.IsSortedFunc(ps, comparePairs) {
		return
	}
	type keyed struct {
		k0, k1 uint64
		p      pair
	}
	ks := make([]keyed, len(ps))
	for i, p := range ps {
		ks[i] = keyed{prefix(p.v, 0), prefix(p.v, 8), p}
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		if a.k0 != b.k0 {
			return cmp.Compare(a.k0, b.k0)
		}
		if a.k1 != b.k1 {
			return cmp.Compare(a.k1, b.k1)
		}
		return comparePairs(a.p, b.p)
	})
	for i := range ks {
		ps[i] = ks[i].p
	}
}

// prefix returns bytes [from, from+8) of s as a big-endian number, zero
// past the end of s: numbers that differ order their strings as the
// strings compare (a string that ends sorts before any that goes on);
// equal ones decide nothing.
func prefix(s string, from int) uint64 {
	var x uint64
	for i := from; i < from+8; i++ {
		x <<= 8
		if i < len(s) {
			x |= uint64(s[i])
		}
	}
	return x
}

func comparePairs(a, b pair) int {
	if c := strings.Compare(a.v, b.v); c != 0 {
		return c
	}
	return strings.Compare(a.id, b.id)
}

// fill inserts sorted items into t, last first.
//
// Descending order is what makes the nodes full. The tree splits a full
// node (63 items) in the middle, moving the upper half to a new node
// whose slice is allocated for those 31 items (32 slots); the lower
// half stays in the old node and takes the following (smaller) items.
// So every node left behind is a split-off upper half: 31 items in 32
// slots. Ascending order would leave the lower halves behind instead,
// 31 items in the 64 slots of the split node (half the memory wasted),
// and random order about two thirds full, after a search of the whole
// tree per item. The BenchmarkBuild figures are in build_test.go.
//
// An empty tree (a start, a first apply) is replaced by one built
// without comparisons: see bulkTree. Items must then be unique: ids are
// (lastByID), and so are the index pairs that hold them.
func fill[T any](t **btree.BTreeG[T], less func(a, b T) bool, sorted []T) {
	if (*t).Len() == 0 && len(sorted) > 0 {
		*t = bulkTree(less, sorted)
		return
	}
	for i := len(sorted) - 1; i >= 0; i-- {
		(*t).ReplaceOrInsert(sorted[i])
	}
}

// bulkTree returns a new tree of sorted (ascending, unique) items,
// inserted last first while its comparison answers true.
//
// Each item inserted last first is less than every item in the tree,
// and ReplaceOrInsert asks only less(item, x) (is the new item before
// x?) until it has its place; less(x, item) is asked only when the
// first answer was false. So "true" puts each item at the front of its
// leaf, as the real comparison would, without the ~24 comparisons of
// strings spread over the heap that each insert cost: at a million keys
// those were 2.7 s of a 8.4 s restart. Once built the tree compares for
// real. TestBuilderMatchesIncremental checks the trees (order, lookups,
// later changes) against ones built by inserting items one by one, so a
// version of the B-tree that asked otherwise would fail it.
func bulkTree[T any](less func(a, b T) bool, sorted []T) *btree.BTreeG[T] {
	building := true
	t := btree.NewG(degree, func(a, b T) bool { return building || less(a, b) })
	for i := len(sorted) - 1; i >= 0; i-- {
		t.ReplaceOrInsert(sorted[i])
	}
	building = false
	return t
}
