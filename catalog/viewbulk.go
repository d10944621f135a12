package catalog

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/tollgate/tollgate/schemas"
)

// A new view loads the log into plain maps: a record costs a few map
// operations, where the State's B-trees would cost a few random inserts
// each (microseconds apiece at a million keys). The first read builds
// the State from them in one go (settle): references resolved, every
// index sorted, then built by appending, all indexes at once.

// bulkStore holds the records in force of a view that has only been
// loaded, as their records hold them.
type bulkStore struct {
	gateway    Gateway
	gatewaySet bool
	apis       map[string]*API
	webhooks   map[string]*Webhook
	plans      map[string]*UsagePlan
	keys       map[string]*APIKey
	members    map[string]planKeyEntity // record id → membership
	planNames  map[string]string        // name → plan id
	keyNames   map[string]string        // name → key id
	keyHashes  map[string]string        // value hash (current or previous) → key id
	changed    bool                     // anything was applied
}

func newBulkStore() *bulkStore {
	return &bulkStore{apis: map[string]*API{}, webhooks: map[string]*Webhook{}, plans: map[string]*UsagePlan{}, keys: map[string]*APIKey{},
		members: map[string]planKeyEntity{}, planNames: map[string]string{}, keyNames: map[string]string{}, keyHashes: map[string]string{}}
}

// grow makes room for about n keys and as many memberships: a map that
// grows a million entries one at a time rebuilds itself all along.
func (b *bulkStore) grow(n int) {
	if n <= len(b.keys) {
		return
	}
	keys, names, hashes, members := make(map[string]*APIKey, n), make(map[string]string, n), make(map[string]string, n), make(map[string]planKeyEntity, n)
	maps.Copy(keys, b.keys)
	maps.Copy(names, b.keyNames)
	maps.Copy(hashes, b.keyHashes)
	maps.Copy(members, b.members)
	b.keys, b.keyNames, b.keyHashes, b.members = keys, names, hashes, members
}

func (b *bulkStore) setGateway(g Gateway, set bool) {
	b.gateway, b.gatewaySet, b.changed = g, set, true
}

func (b *bulkStore) apiList() []API {
	out := make([]API, 0, len(b.apis))
	for _, id := range slices.Sorted(maps.Keys(b.apis)) {
		out = append(out, *b.apis[id])
	}
	return out
}

func (b *bulkStore) putAPI(a *API)       { b.apis[a.ID], b.changed = a, true }
func (b *bulkStore) deleteAPI(id string) { delete(b.apis, id) }

func (b *bulkStore) webhookNamed(name string) string {
	for id, w := range b.webhooks {
		if w.Name == name {
			return id
		}
	}
	return ""
}

func (b *bulkStore) putWebhook(w *Webhook)   { b.webhooks[w.ID], b.changed = w, true }
func (b *bulkStore) deleteWebhook(id string) { delete(b.webhooks, id) }

func (b *bulkStore) planNamed(name string) string { return b.planNames[name] }

func (b *bulkStore) putPlan(p *UsagePlan) {
	b.deletePlan(p.ID)
	b.plans[p.ID], b.planNames[p.Name], b.changed = p, p.ID, true
}

func (b *bulkStore) deletePlan(id string) {
	if old := b.plans[id]; old != nil {
		delete(b.planNames, old.Name)
		delete(b.plans, id)
	}
}

func (b *bulkStore) keyNamed(name string) string  { return b.keyNames[name] }
func (b *bulkStore) keyValued(hash string) string { return b.keyHashes[hash] }

func (b *bulkStore) putKey(k *APIKey) {
	b.deleteKey(k.ID)
	b.keys[k.ID], b.keyNames[k.Name], b.keyHashes[k.ValueHash], b.changed = k, k.ID, k.ID, true
	if k.PreviousValueHash != "" {
		b.keyHashes[k.PreviousValueHash] = k.ID
	}
}

func (b *bulkStore) deleteKey(id string) {
	if old := b.keys[id]; old != nil {
		delete(b.keyNames, old.Name)
		delete(b.keyHashes, old.ValueHash)
		if old.PreviousValueHash != "" {
			delete(b.keyHashes, old.PreviousValueHash)
		}
		delete(b.keys, id)
	}
}

func (b *bulkStore) memberAt(recordID string) (planKeyEntity, bool) {
	m, ok := b.members[recordID]
	return m, ok
}

func (b *bulkStore) putMember(recordID string, m planKeyEntity) {
	b.members[recordID], b.changed = m, true
}

func (b *bulkStore) deleteMember(recordID string, _ planKeyEntity) { delete(b.members, recordID) }

func (b *bulkStore) entityInForce(kind, id string) any {
	switch kind {
	case schemas.KindGateway:
		if b.gatewaySet {
			return b.gateway
		}
	case schemas.KindAPI:
		if a := b.apis[id]; a != nil {
			return a
		}
	case schemas.KindWebhook:
		if w := b.webhooks[id]; w != nil {
			return w
		}
	case schemas.KindUsagePlan:
		if p := b.plans[id]; p != nil {
			return p
		}
	case schemas.KindAPIKey:
		if k := b.keys[id]; k != nil {
			return k
		}
	case schemas.KindUsagePlanKey:
		if m, ok := b.members[id]; ok {
			return m
		}
	}
	return nil
}

// settle builds the view's State from its bulk store, if it has one:
// O(size), once.
func (v *View) settle() {
	b := v.bulk
	if b == nil {
		return
	}
	v.bulk = nil
	v.initTrees()
	if b.changed {
		v.delta = viewDelta{full: true}
	}
	st := v.st
	st.gateway, v.gatewaySet = b.gateway, b.gatewaySet
	if len(b.apis) > 0 {
		st.apis = b.apiList()
	}
	for _, id := range slices.Sorted(maps.Keys(b.webhooks)) {
		st.webhooks = append(st.webhooks, *b.webhooks[id])
	}
	planIDs := slices.Sorted(maps.Keys(b.plans))
	for _, id := range planIDs {
		p := b.plans[id]
		v.plans.ReplaceOrInsert(p)
		rp := resolvePlan(*p, st.API)
		st.putPlan(&rp)
	}
	// The memberships of each key: most keys have one.
	first := make(map[string]string, len(b.members))
	more := map[string][]string{}
	for _, m := range b.members {
		if _, ok := first[m.KeyID]; !ok {
			first[m.KeyID] = m.UsagePlanID
		} else {
			more[m.KeyID] = append(more[m.KeyID], m.UsagePlanID)
		}
	}
	// Sorted as (id, key) pairs side by side, not through the keys.
	type byID struct {
		id string
		k  *APIKey
	}
	ids := make([]byID, 0, len(b.keys))
	for id, k := range b.keys {
		ids = append(ids, byID{id, k})
	}
	sortParallel(ids, func(a, b byID) int { return strings.Compare(a.id, b.id) })
	keys := make([]*APIKey, len(ids))
	for i := range ids {
		keys[i] = ids[i].k
	}
	ids = nil
	var raw []string
	kept := make([]string, 0, len(b.members)) // the keys' UsagePlans, one allocation
	for _, k := range keys {
		raw = raw[:0]
		if p, ok := first[k.ID]; ok {
			raw = append(raw, p)
			raw = append(raw, more[k.ID]...)
			slices.Sort(raw)
		}
		start := len(kept)
		kept = v.keepAppend(kept, raw)
		k.UsagePlans = kept[start:len(kept):len(kept)]
		if len(k.UsagePlans) < len(raw) {
			v.setDropped(k.ID, raw, k.UsagePlans)
		}
		delete(first, k.ID)
	}
	for id, p := range first { // memberships of missing keys
		v.addDropped(id, p)
		for _, p := range more[id] {
			v.addDropped(id, p)
		}
	}
	st.loadKeys(keys, keyOrdersOf(keys), planIDs)
}

// keyOrdersOf sorts keys (sorted by id) by name, value hash and customer
// id, all at once.
func keyOrdersOf(keys []*APIKey) *keyOrders {
	var o keyOrders
	// Sorted as (value, position) pairs side by side: comparing through
	// the keys would fetch one from memory at each step.
	type item struct {
		v   string
		pos int32
	}
	order := func(value func(*APIKey) string, all bool) []int32 {
		items := make([]item, 0, len(keys))
		for i, k := range keys {
			if v := value(k); all || v != "" {
				items = append(items, item{v, int32(i)})
			}
		}
		slices.SortFunc(items, func(a, b item) int { return cmp.Or(strings.Compare(a.v, b.v), cmp.Compare(a.pos, b.pos)) })
		out := make([]int32, len(items))
		for i := range items {
			out[i] = items[i].pos
		}
		return out
	}
	var wg sync.WaitGroup
	wg.Go(func() { o.names = order(func(k *APIKey) string { return k.Name }, true) })
	wg.Go(func() { o.hashes = order(func(k *APIKey) string { return k.ValueHash }, true) })
	wg.Go(func() { o.customers = order(func(k *APIKey) string { return k.CustomerID }, false) }) // keys that have one
	wg.Wait()
	return &o
}

// sortParallel sorts list, its halves on two cores.
func sortParallel[T any](list []T, cmp func(a, b T) int) {
	if len(list) < 1<<14 {
		slices.SortFunc(list, cmp)
		return
	}
	mid := len(list) / 2
	a, b := list[:mid], list[mid:]
	var wg sync.WaitGroup
	wg.Go(func() { slices.SortFunc(a, cmp) })
	slices.SortFunc(b, cmp)
	wg.Wait()
	merged := make([]T, 0, len(list))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if cmp(b[j], a[i]) < 0 {
			merged = append(merged, b[j])
			j++
		} else {
			merged = append(merged, a[i])
			i++
		}
	}
	merged = append(append(merged, a[i:]...), b[j:]...)
	copy(list, merged)
}
