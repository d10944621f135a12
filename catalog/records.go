package catalog

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/tollgate/tollgate/schemas"
)

// The catalog as a compacted log: one record per entity (the gateway
// settings, each API with its stages, each plan, each key, each key's
// membership of a plan, each webhook; ChangeRecords, on whole Catalogs,
// has no webhooks: they are not part of a Catalog), keyed kind/id so that compaction keeps the latest
// version of each, and a null entity (a tombstone) for a delete. Key
// values appear only as hashes: the catalog never holds them.
//
// Writers (the admin API) validate a change against the catalog in force
// and write the records of the entities it touched (ChangeRecordsOf);
// readers (every enforcer and admin node) apply each record to a View,
// which accepts or rejects it by rules that every node applies
// identically and keeps the catalog they describe up to date, one entity
// at a time (see View).

// planKeyEntity is the entity of a KindUsagePlanKey record.
type planKeyEntity struct {
	UsagePlanID string `json:"usagePlanId"`
	KeyID       string `json:"keyId"`
}

// ChangeRecords returns the records that turn old into next, ordered so
// that each is valid on top of those before it: memberships leave first,
// then the gateway, APIs, plans, keys and new memberships are written,
// then keys, plans and APIs are deleted. It compares the whole catalogs
// (O(size)): a change made through a Tx has ChangeRecordsOf.
func ChangeRecords(old, next *Catalog) ([]schemas.ConfigRecord, error) {
	o, err := entityRecords(old)
	if err != nil {
		return nil, err
	}
	n, err := entityRecords(next)
	if err != nil {
		return nil, err
	}
	var out []schemas.ConfigRecord
	put := func(kind string) {
		for _, r := range n[kind] {
			if prev, ok := o.find(kind, r.ID); !ok || string(prev.Entity) != string(r.Entity) {
				out = append(out, r)
			}
		}
	}
	del := func(kind string) {
		for _, r := range o[kind] {
			if _, ok := n.find(kind, r.ID); !ok {
				out = append(out, schemas.ConfigRecord{Kind: kind, ID: r.ID})
			}
		}
	}
	del(schemas.KindUsagePlanKey)
	put(schemas.KindGateway)
	del(schemas.KindGateway) // back to the defaults
	put(schemas.KindAPI)
	put(schemas.KindUsagePlan)
	put(schemas.KindAPIKey)
	put(schemas.KindUsagePlanKey)
	del(schemas.KindAPIKey)
	del(schemas.KindUsagePlan)
	del(schemas.KindAPI)
	return out, nil
}

// Records returns the whole catalog as records (what ChangeRecords gives
// from an empty catalog).
func Records(c *Catalog) ([]schemas.ConfigRecord, error) { return ChangeRecords(&Catalog{}, c) }

type recordSet map[string][]schemas.ConfigRecord

func (s recordSet) find(kind, id string) (schemas.ConfigRecord, bool) {
	list := s[kind]
	i, ok := slices.BinarySearchFunc(list, id, func(r schemas.ConfigRecord, id string) int {
		switch {
		case r.ID < id:
			return -1
		case r.ID > id:
			return 1
		}
		return 0
	})
	if !ok {
		return schemas.ConfigRecord{}, false
	}
	return list[i], true
}

// entityRecords encodes every entity of c, per kind, sorted by id.
func entityRecords(c *Catalog) (recordSet, error) {
	s := recordSet{}
	add := func(kind, id string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", kind, id, err)
		}
		s[kind] = append(s[kind], schemas.ConfigRecord{Kind: kind, ID: id, Entity: b})
		return nil
	}
	if c.Gateway != (Gateway{}) {
		if err := add(schemas.KindGateway, "gateway", c.Gateway); err != nil {
			return nil, err
		}
	}
	for _, a := range c.APIs {
		if err := add(schemas.KindAPI, a.ID, a); err != nil {
			return nil, err
		}
	}
	for _, p := range c.UsagePlans {
		if err := add(schemas.KindUsagePlan, p.ID, p); err != nil {
			return nil, err
		}
	}
	for _, k := range c.APIKeys {
		plans := k.UsagePlans
		k.UsagePlans = nil // memberships are records of their own
		if err := add(schemas.KindAPIKey, k.ID, k); err != nil {
			return nil, err
		}
		for _, p := range plans {
			if err := add(schemas.KindUsagePlanKey, p+"/"+k.ID, planKeyEntity{UsagePlanID: p, KeyID: k.ID}); err != nil {
				return nil, err
			}
		}
	}
	for _, list := range s {
		slices.SortFunc(list, func(a, b schemas.ConfigRecord) int { return cmp.Compare(a.ID, b.ID) })
	}
	return s, nil
}

// ChangeRecordsOf returns the records that make ch on the log, in the
// order ChangeRecords gives: those of the entities its delta names
// (a key's memberships are records of their own, derived from its old
// and new UsagePlans), leaving out entities whose record would not
// change. Its cost is that of the delta; a Full delta compares the whole
// states.
func ChangeRecordsOf(ch *Change) ([]schemas.ConfigRecord, error) {
	d := ch.Delta
	if d.Full {
		d = DiffStates(ch.Old, ch.New).Delta
	}
	var err error
	// Each list is of one kind and sorted by record id, as ChangeRecords
	// sorts them.
	var leave, gateway, apis, hooks, plans, keys, join, keyDel, planDel, apiDel, hookDel []schemas.ConfigRecord
	if d.Gateway {
		o, n := ch.Old.Gateway(), ch.New.Gateway()
		switch {
		case n != (Gateway{}):
			gateway, err = putRecord(gateway, schemas.KindGateway, "gateway", o != (Gateway{}), o, n)
		case o != (Gateway{}):
			gateway = delRecord(gateway, schemas.KindGateway, "gateway")
		}
	}
	if d.APIs {
		for _, a := range ch.New.APIs() {
			o := ch.Old.API(a.ID)
			if apis, err = putRecord(apis, schemas.KindAPI, a.ID, o != nil, o, &a); err != nil {
				return nil, err
			}
		}
		for _, a := range ch.Old.APIs() {
			if ch.New.API(a.ID) == nil {
				apiDel = delRecord(apiDel, schemas.KindAPI, a.ID)
			}
		}
	}
	if d.Webhooks {
		for _, w := range ch.New.Webhooks() {
			o := ch.Old.Webhook(w.ID)
			if hooks, err = putRecord(hooks, schemas.KindWebhook, w.ID, o != nil, o, &w); err != nil {
				return nil, err
			}
		}
		for _, w := range ch.Old.Webhooks() {
			if ch.New.Webhook(w.ID) == nil {
				hookDel = delRecord(hookDel, schemas.KindWebhook, w.ID)
			}
		}
	}
	for _, id := range d.Plans {
		o, n := ch.Old.Plan(id), ch.New.Plan(id)
		switch {
		case n != nil:
			plans, err = putRecord(plans, schemas.KindUsagePlan, id, o != nil, o, n)
		case o != nil:
			planDel = delRecord(planDel, schemas.KindUsagePlan, id)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, id := range d.Keys {
		o, n := ch.Old.Key(id), ch.New.Key(id)
		var was, is []string
		if o != nil {
			was = o.UsagePlans
		}
		if n != nil {
			is = n.UsagePlans
		}
		for _, p := range was {
			if !slices.Contains(is, p) {
				leave = delRecord(leave, schemas.KindUsagePlanKey, p+"/"+id)
			}
		}
		switch {
		case n != nil:
			// Memberships are records of their own.
			nk := *n
			nk.UsagePlans = nil
			var ok *APIKey
			if o != nil {
				okk := *o
				okk.UsagePlans = nil
				ok = &okk
			}
			keys, err = putRecord(keys, schemas.KindAPIKey, id, o != nil, ok, &nk)
		case o != nil:
			keyDel = delRecord(keyDel, schemas.KindAPIKey, id)
		}
		if err != nil {
			return nil, err
		}
		for _, p := range is {
			if !slices.Contains(was, p) {
				if join, err = putRecord(join, schemas.KindUsagePlanKey, p+"/"+id, false, nil, planKeyEntity{UsagePlanID: p, KeyID: id}); err != nil {
					return nil, err
				}
			}
		}
	}
	var out []schemas.ConfigRecord
	for _, list := range [][]schemas.ConfigRecord{leave, gateway, apis, hooks, plans, keys, join, keyDel, planDel, apiDel, hookDel} {
		slices.SortFunc(list, func(a, b schemas.ConfigRecord) int { return strings.Compare(a.ID, b.ID) })
		out = append(out, list...)
	}
	return out, nil
}

// putRecord appends the record of entity n, unless had and the encoding of o
// (the entity before) is the same.
func putRecord(list []schemas.ConfigRecord, kind, id string, had bool, o, n any) ([]schemas.ConfigRecord, error) {
	b, err := json.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("encode %s %s: %w", kind, id, err)
	}
	if had {
		if ob, err := json.Marshal(o); err == nil && string(ob) == string(b) {
			return list, nil
		}
	}
	return append(list, schemas.ConfigRecord{Kind: kind, ID: id, Entity: b}), nil
}

// delRecord appends a tombstone.
func delRecord(list []schemas.ConfigRecord, kind, id string) []schemas.ConfigRecord {
	return append(list, schemas.ConfigRecord{Kind: kind, ID: id})
}
