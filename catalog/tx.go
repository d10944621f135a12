package catalog

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/google/btree"
)

// Tx prepares a change of a State: reads see the change so far (the
// embedded *State is the successor being built), writes replace or
// delete whole entities. Nothing is visible to others until a Manager
// validates and commits it. A Tx is not safe for concurrent use.
type Tx struct {
	*State
	base *State
	// touched entities, by id (an id whose entity is gone was deleted).
	keys, plans             map[string]bool
	apis, gateway, webhooks bool
	// validated is set when the Tx was validated since its last write.
	validated bool
	// keyIDs caches the sorted ids of keys, delta what Delta returns
	// (nil: to compute again).
	keyIDs []string
	delta  *Delta
}

// touched notes a write: the Tx must be validated again, and what it
// touched is to be listed again.
func (tx *Tx) touched() { tx.validated, tx.keyIDs, tx.delta = false, nil, nil }

// touchedKeys returns the ids of the keys the Tx touched, sorted. Delta,
// validation and the text checks each walk them: with a file of a
// million keys, sorting them once rather than three times is seconds.
func (tx *Tx) touchedKeys() []string {
	if tx.keyIDs == nil {
		tx.keyIDs = slices.Sorted(maps.Keys(tx.keys))
	}
	return tx.keyIDs
}

// Begin returns a Tx on s; s itself never changes.
func (s *State) Begin() *Tx {
	return &Tx{State: s.clone(), base: s, keys: map[string]bool{}, plans: map[string]bool{}}
}

// Base returns the state the Tx started from.
func (tx *Tx) Base() *State { return tx.base }

// PutKey adds k, or replaces the key with its id. Its UsagePlans are
// plan ids.
func (tx *Tx) PutKey(k APIKey) {
	k.UsagePlans = slices.Clone(k.UsagePlans)
	k.Value = ""
	tx.putKey(&k)
	tx.keys[k.ID] = true
	tx.touched()
}

// DeleteKey removes a key; it reports whether there was one.
func (tx *Tx) DeleteKey(id string) bool {
	if tx.deleteKey(id) == nil {
		return false
	}
	tx.keys[id] = true
	tx.touched()
	return true
}

// PutPlan adds p, or replaces the plan with its id.
func (tx *Tx) PutPlan(p UsagePlan) {
	tx.putPlan(&p)
	tx.plans[p.ID] = true
	tx.touched()
}

// DeletePlan removes a plan; it reports whether there was one. The keys
// in it must be taken out of it in the same Tx (see PlanKeys), or the
// change is invalid.
func (tx *Tx) DeletePlan(id string) bool {
	if tx.deletePlan(id) == nil {
		return false
	}
	tx.plans[id] = true
	tx.touched()
	return true
}

// PutAPI adds a, or replaces the API with its id.
func (tx *Tx) PutAPI(a API) {
	tx.putAPI(a)
	tx.apis = true
	tx.touched()
}

// DeleteAPI removes an API; it reports whether there was one.
func (tx *Tx) DeleteAPI(id string) bool {
	if !tx.deleteAPI(id) {
		return false
	}
	tx.apis = true
	tx.touched()
	return true
}

// SetGateway replaces the gateway settings.
func (tx *Tx) SetGateway(g Gateway) {
	tx.gateway = true
	tx.touched()
	tx.State.gateway = g
}

// Delta names what a change touched: a consumer of changes (the gateway,
// a store, the config log) updates those entities and nothing else.
type Delta struct {
	// Full: anything may have changed (a first load, a rebuild); the
	// other fields are then empty.
	Full    bool
	Gateway bool
	APIs    bool
	// Webhooks: the webhooks changed (they are few: a consumer reads
	// them all again).
	Webhooks bool
	// Plans and Keys are the ids of the plans and keys put or deleted,
	// sorted.
	Plans []string
	Keys  []string
}

// Empty reports whether the delta names nothing.
func (d Delta) Empty() bool {
	return !d.Full && !d.Gateway && !d.APIs && !d.Webhooks && len(d.Plans) == 0 && len(d.Keys) == 0
}

// Change is a validated change: the state before, the state after, and
// what differs.
type Change struct {
	Old, New *State
	Delta
}

// Delta returns what the Tx changed, leaving out entities written back
// unchanged.
func (tx *Tx) Delta() Delta {
	if tx.delta == nil {
		d := tx.diff()
		tx.delta = &d
	}
	return *tx.delta
}

func (tx *Tx) diff() Delta {
	var d Delta
	d.Gateway = tx.gateway && !sameJSON(tx.base.gateway, tx.State.gateway)
	d.APIs = tx.apis && !sameJSON(tx.base.apis, tx.State.apis)
	d.Webhooks = tx.webhooks && !sameJSON(tx.base.webhooks, tx.State.webhooks)
	for _, id := range slices.Sorted(maps.Keys(tx.plans)) {
		if o, n := tx.base.Plan(id), tx.Plan(id); o == nil || n == nil || !sameJSON(o, n) {
			d.Plans = append(d.Plans, id)
		}
	}
	for _, id := range tx.touchedKeys() {
		// A key new to the base is in the delta: no need to look it up.
		if o := tx.base.Key(id); o == nil {
			d.Keys = append(d.Keys, id)
		} else if n := tx.Key(id); n == nil || !sameJSON(o, n) {
			d.Keys = append(d.Keys, id)
		}
	}
	return d
}

func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// Validate checks what the Tx touched against the whole state: the
// structural rules of Validate through the indexes (unique names and
// values, references, one plan per key per API stage), and the text
// rules for what the change brings in (see ValidateChange). Its cost is
// that of the entities touched (plus, for a plan whose stages change,
// its keys; for a change of APIs, the plans), never that of the
// catalog. src, when not nil, is the file the change came from.
func (tx *Tx) Validate(src *File) error {
	p := &problems{file: src}
	tx.validate(p)
	if err := p.err(); err != nil {
		return err
	}
	tx.validated = true
	return nil
}

func (tx *Tx) validate(p *problems) {
	n := tx.State
	if tx.gateway {
		validateGateway(p, &n.gateway)
	}
	if tx.webhooks {
		validateWebhooks(p, n.webhooks)
	}
	plans := slices.Sorted(maps.Keys(tx.plans))
	if tx.apis {
		validateAPIs(p, &Catalog{APIs: n.apis})
		// Every plan names APIs: check those the Tx did not touch too
		// (there are few plans; keys name plans, not APIs).
		n.Plans("", func(pl *UsagePlan) bool {
			if !tx.plans[pl.ID] {
				plans = append(plans, pl.ID)
			}
			return true
		})
	}
	for _, id := range plans {
		pl := n.Plan(id)
		if pl == nil {
			// Deleted: no key may still list it.
			n.PlanKeys(id, "", func(k *APIKey) bool {
				i := slices.Index(k.UsagePlans, id)
				p.add("apiKeys", k.Name, k.ID, fmt.Sprintf("usagePlans[%d]", i), "names plan %q, which does not exist", id)
				return len(p.list) < maxProblems
			})
			continue
		}
		if h := holders(n.planNames, pl.Name); pl.Name != "" && len(h) > 1 {
			p.add("usagePlans", pl.Name, pl.ID, "name", "%q is used by two plans", pl.Name)
		}
		if pl.ID == "" {
			p.add("usagePlans", pl.Name, pl.ID, "id", "is required")
		}
		validatePlan(p, pl, n.API)
		if o := tx.base.Plan(id); o != nil && !sameStages(o.APIStages, pl.APIStages) {
			// Its keys may now have two plans on one stage.
			n.PlanKeys(id, "", func(k *APIKey) bool {
				if !tx.keys[k.ID] && len(k.UsagePlans) > 1 {
					validateKey(p, k, n.Plan)
				}
				return len(p.list) < maxProblems
			})
		}
	}
	keys := tx.touchedKeys()
	nameHolders := func(v string) []string { return holders(n.keyNames, v) }
	hashHolders := n.hashHolders
	if walkIndexes(len(keys), n.NumKeys()) {
		// A search per key costs a few cache misses per tree level; a
		// walk of each index finds every shared value in one sequential
		// pass.
		names, hashes := sharedValues(n.keyNames), sharedValues(n.keyHashes)
		// A value shared with a previous one has a pair in prevHashes:
		// few, searched one by one.
		n.prevHashes.Ascend(func(p pair) bool {
			if h := n.hashHolders(p.v); len(h) > 1 {
				hashes[p.v] = h
			}
			return true
		})
		nameHolders = func(v string) []string { return names[v] }
		hashHolders = func(v string) []string { return hashes[v] }
	}
	tx.eachTouchedKey(func(k *APIKey) bool {
		if k.ID == "" {
			p.add("apiKeys", k.Name, k.ID, "id", "is required")
		}
		if h := nameHolders(k.Name); k.Name != "" && len(h) > 1 {
			p.add("apiKeys", k.Name, k.ID, "name", "%q is used by two keys", k.Name)
		}
		if h := hashHolders(k.ValueHash); k.ValueHash != "" && len(h) > 1 {
			other := h[0]
			if other == k.ID {
				other = h[1]
			}
			p.add("apiKeys", k.Name, k.ID, "value", "is the same as the value of key %q; values must be unique", n.Key(other).Name)
		}
		if h := hashHolders(k.PreviousValueHash); k.PreviousValueHash != "" && len(h) > 1 {
			other := h[0]
			if other == k.ID {
				other = h[1]
			}
			p.add("apiKeys", k.Name, k.ID, "previousValueHash", "is the same as a value of key %q; values must be unique", n.Key(other).Name)
		}
		validateKey(p, k, n.Plan)
		return len(p.list) < maxProblems
	})
	tx.validateText(p)
}

// eachTouchedKey calls f for each key the Tx touched that its state
// holds, in id order, until f returns false: by a walk of the state's
// keys when the Tx touched many (see walkIndexes: a lookup per key costs
// a few cache misses per tree level), else by a lookup of each.
func (tx *Tx) eachTouchedKey(f func(*APIKey) bool) {
	ids := tx.touchedKeys()
	if walkIndexes(len(ids), tx.NumKeys()) {
		tx.State.keys.Ascend(func(k *APIKey) bool { return !tx.keys[k.ID] || f(k) })
		return
	}
	for _, id := range ids {
		if k := tx.Key(id); k != nil && !f(k) {
			return
		}
	}
}

// walkIndexes decides whether validation walks the key indexes whole
// (touched keys in a catalog of size) rather than searching them per key.
var walkIndexes = func(touched, size int) bool { return touched > size/16 }

// sharedValues returns the values of idx that more than one entity
// holds, each with its first two holders (what holders returns for it).
func sharedValues(idx *btree.BTreeG[pair]) map[string][]string {
	out := map[string][]string{}
	var prev pair
	first := true
	idx.Ascend(func(p pair) bool {
		if !first && p.v == prev.v {
			if h := out[p.v]; len(h) == 0 {
				out[p.v] = []string{prev.id, p.id}
			}
		}
		prev, first = p, false
		return true
	})
	return out
}

// maxProblems bounds the problems one change reports: a file of a
// million bad keys gets the first ones, not a million lines.
const maxProblems = 1000

func sameStages(a, b []APIStage) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].APIID != b[i].APIID || a[i].Stage != b[i].Stage {
			return false
		}
	}
	return true
}

// validateText applies the text rules to what the Tx adds or alters.
func (tx *Tx) validateText(p *problems) {
	if tx.apis {
		validateAPIText(p, tx.base.apis, tx.State.apis)
	}
	for _, id := range slices.Sorted(maps.Keys(tx.plans)) {
		pl := tx.Plan(id)
		if pl == nil {
			continue
		}
		var was *textFields
		if o := tx.base.Plan(id); o != nil {
			was = &textFields{[]string{o.Name, o.Description}, o.Tags}
		}
		checkChanged(p, "usagePlans", pl.Name, pl.ID, was, pl.Tags, "name", pl.Name, "description", pl.Description)
	}
	tx.eachTouchedKey(func(k *APIKey) bool {
		var was *textFields
		if o := tx.base.Key(k.ID); o != nil {
			was = &textFields{[]string{o.Name, o.Description, o.CustomerID}, o.Tags}
		}
		checkChanged(p, "apiKeys", k.Name, k.ID, was, k.Tags, "name", k.Name, "description", k.Description, "customerId", k.CustomerID)
		return true
	})
}
