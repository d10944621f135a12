package catalog

// The reference for the View: the algorithm it had before it kept a
// State incrementally, which rebuilt the whole catalog from plain maps in
// Catalog. The property tests check that both accept the same records and
// describe the same catalog.

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tollgate/tollgate/schemas"
)

type refView struct {
	gateway   Gateway
	apis      map[string]*API
	plans     map[string]*UsagePlan
	keys      map[string]*APIKey
	members   map[string]planKeyEntity // record id → membership
	planNames map[string]string        // name → plan id
	keyNames  map[string]string        // name → key id
	keyHashes map[string]string        // value hash → key id
	webhooks  map[string]*Webhook
	accepted  map[string]refRecord // record key → the version in force
	// rejected holds the record keys whose latest record was rejected:
	// until a writer repairs them (Repairs), compaction could keep the
	// rejected record and drop the version in force.
	rejected map[string]bool
	// deletedAt: record key → offset of the tombstone in force.
	deletedAt map[string]int64
}

type refRecord struct {
	offset int64
	value  []byte
}

// newRefView returns an empty reference view.
func newRefView() *refView {
	return &refView{
		apis: map[string]*API{}, plans: map[string]*UsagePlan{}, keys: map[string]*APIKey{},
		members: map[string]planKeyEntity{}, planNames: map[string]string{}, keyNames: map[string]string{},
		keyHashes: map[string]string{}, webhooks: map[string]*Webhook{}, accepted: map[string]refRecord{}, rejected: map[string]bool{},
		deletedAt: map[string]int64{},
	}
}

// Apply applies the record at offset: key is its log key (kind/id),
// value the encoded schemas.ConfigRecord, or nil for a tombstone (the
// entity was deleted; compaction removes it in time). It returns a
// *RejectedError if the record changes nothing.
func (v *refView) Apply(offset int64, key, value []byte) error {
	err := v.apply(offset, key, value)
	var re *RejectedError
	switch {
	case err == nil:
		delete(v.rejected, string(key))
	case errors.As(err, &re) && validRecordKey(string(key)):
		v.rejected[string(key)] = true
	}
	return err
}

// validRecordKey reports whether key names an entity a tombstone can
// Repairs returns the records that make the version in force the latest
// record again for every key whose latest record was rejected, sorted by
// key. A writer of the log writes them at once (every writer does, so it
// does not matter which one survives): compaction keeps only a key's
// latest record, and a rejected one kept instead of the version in force
// would make a node that rebuilds from the compacted log disagree with
// the nodes that applied it live.
func (v *refView) Repairs() []Repair {
	var out []Repair
	for _, k := range slices.Sorted(maps.Keys(v.rejected)) {
		r := Repair{Key: k}
		if a, ok := v.accepted[k]; ok {
			r.Value = slices.Clone(a.value)
		}
		out = append(out, r)
	}
	return out
}

// LatestAt returns the record keys whose version in force is one of the
// records at offsets: what a writer of those records may still undo
// without overwriting a later change of another writer.
func (v *refView) LatestAt(offsets []int64) map[string]bool {
	at := make(map[int64]bool, len(offsets))
	for _, o := range offsets {
		at[o] = true
	}
	out := map[string]bool{}
	for k, r := range v.accepted {
		if at[r.offset] {
			out[k] = true
		}
	}
	for k, o := range v.deletedAt {
		if at[o] {
			out[k] = true
		}
	}
	return out
}

func (v *refView) apply(offset int64, key, value []byte) error {
	var r schemas.ConfigRecord
	if value == nil {
		kind, id, _ := strings.Cut(string(key), "/")
		r = schemas.ConfigRecord{Type: schemas.EventTypeConfig, Kind: kind, ID: id}
		if b, err := schemas.EncodeConfigRecord(&r); err != nil || schemas.DecodeConfigRecord(b, &r) != nil {
			return &RejectedError{Key: string(key), Reason: "tombstone for an unknown kind or without id"}
		}
	} else if err := schemas.DecodeConfigRecord(value, &r); err != nil {
		return &RejectedError{Key: string(key), Reason: err.Error()}
	} else if r.Key() != string(key) {
		return &RejectedError{Key: string(key), Reason: fmt.Sprintf("the record is for %s", r.Key())}
	}
	reject := func(format string, args ...any) error {
		return &RejectedError{Key: r.Key(), Reason: fmt.Sprintf(format, args...)}
	}
	decode := func(dst any) error {
		if err := json.Unmarshal(r.Entity, dst); err != nil {
			return reject("entity: %v", err)
		}
		return nil
	}
	tomb := r.Tombstone()
	switch r.Kind {
	case schemas.KindGateway:
		var g Gateway
		if !tomb {
			if err := decode(&g); err != nil {
				return err
			}
			if err := Validate(&Catalog{Gateway: g}, nil); err != nil {
				return reject("%v", err)
			}
		}
		v.gateway = g
	case schemas.KindAPI:
		if tomb {
			delete(v.apis, r.ID)
			break
		}
		a := new(API)
		if err := decode(a); err != nil {
			return err
		}
		if a.ID != r.ID {
			return reject("entity id %q differs from the record's", a.ID)
		}
		others := v.sortedAPIs(r.ID)
		if err := Validate(&Catalog{APIs: append(others, *a)}, nil); err != nil {
			return reject("%v", err)
		}
		v.apis[r.ID] = a
	case schemas.KindUsagePlan:
		old := v.plans[r.ID]
		if tomb {
			if old != nil {
				delete(v.planNames, old.Name)
				delete(v.plans, r.ID)
			}
			break
		}
		p := new(UsagePlan)
		if err := decode(p); err != nil {
			return err
		}
		if p.ID != r.ID {
			return reject("entity id %q differs from the record's", p.ID)
		}
		if holder, ok := v.planNames[p.Name]; ok && holder != p.ID {
			return reject("name %q is taken by plan %s", p.Name, holder)
		}
		if err := checkPlanAlone(p); err != nil {
			return reject("%v", err)
		}
		if old != nil {
			delete(v.planNames, old.Name)
		}
		v.plans[r.ID], v.planNames[p.Name] = p, p.ID
	case schemas.KindAPIKey:
		old := v.keys[r.ID]
		if tomb {
			if old != nil {
				delete(v.keyNames, old.Name)
				delete(v.keyHashes, old.ValueHash)
				delete(v.keyHashes, old.PreviousValueHash)
				delete(v.keys, r.ID)
			}
			break
		}
		k := new(APIKey)
		if err := decode(k); err != nil {
			return err
		}
		if k.ID != r.ID {
			return reject("entity id %q differs from the record's", k.ID)
		}
		if holder, ok := v.keyNames[k.Name]; ok && holder != k.ID {
			return reject("name %q is taken by key %s", k.Name, holder)
		}
		if holder, ok := v.keyHashes[k.ValueHash]; ok && holder != k.ID {
			return reject("its value is the value of key %s; values must be unique", holder)
		}
		if holder, ok := v.keyHashes[k.PreviousValueHash]; ok && k.PreviousValueHash != "" && holder != k.ID {
			return reject("its previous value is a value of key %s; values must be unique", holder)
		}
		k.UsagePlans = nil
		if err := Validate(&Catalog{APIKeys: []APIKey{*k}}, nil); err != nil {
			return reject("%v", err)
		}
		if old != nil {
			delete(v.keyNames, old.Name)
			delete(v.keyHashes, old.ValueHash)
			delete(v.keyHashes, old.PreviousValueHash)
		}
		v.keys[r.ID], v.keyNames[k.Name], v.keyHashes[k.ValueHash] = k, k.ID, k.ID
		if k.PreviousValueHash != "" {
			v.keyHashes[k.PreviousValueHash] = k.ID
		}
	case schemas.KindWebhook:
		if tomb {
			delete(v.webhooks, r.ID)
			break
		}
		w := new(Webhook)
		if err := decode(w); err != nil {
			return err
		}
		if w.ID != r.ID {
			return reject("entity id %q differs from the record's", w.ID)
		}
		for id, o := range v.webhooks {
			if o.Name == w.Name && id != w.ID {
				return reject("name %q is taken by webhook %s", w.Name, id)
			}
		}
		p := &problems{}
		validateWebhook(p, w)
		if err := p.err(); err != nil {
			return reject("%v", err)
		}
		v.webhooks[r.ID] = w
	case schemas.KindUsagePlanKey:
		if tomb {
			delete(v.members, r.ID)
			break
		}
		var m planKeyEntity
		if err := decode(&m); err != nil {
			return err
		}
		if m.UsagePlanID+"/"+m.KeyID != r.ID || m.UsagePlanID == "" || m.KeyID == "" {
			return reject("entity %s/%s does not match the record's id", m.UsagePlanID, m.KeyID)
		}
		v.members[r.ID] = m
	}
	if tomb {
		delete(v.accepted, r.Key())
		v.deletedAt[r.Key()] = offset
	} else {
		delete(v.deletedAt, r.Key())
		v.accepted[r.Key()] = refRecord{offset: offset, value: slices.Clone(value)}
	}
	return nil
}

// Webhooks returns the webhooks, sorted by id.
func (v *refView) Webhooks() []Webhook {
	out := []Webhook{}
	for _, id := range slices.Sorted(maps.Keys(v.webhooks)) {
		out = append(out, v.webhooks[id].Clone())
	}
	return out
}

func (v *refView) sortedAPIs(except string) []API {
	out := make([]API, 0, len(v.apis))
	for _, id := range slices.Sorted(maps.Keys(v.apis)) {
		if id != except {
			out = append(out, *v.apis[id])
		}
	}
	return out
}

// Catalog builds the catalog the records describe, references resolved
// as the type's comment says; entities are sorted by id. The result
// shares nothing with the view.
func (v *refView) Catalog() *Catalog {
	c := &Catalog{Gateway: v.gateway, APIs: v.sortedAPIs("")}
	apis := make(map[string]*API, len(c.APIs))
	for i := range c.APIs {
		apis[c.APIs[i].ID] = &c.APIs[i]
	}
	c.UsagePlans = make([]UsagePlan, 0, len(v.plans))
	plans := make(map[string]*UsagePlan, len(v.plans))
	for _, id := range slices.Sorted(maps.Keys(v.plans)) {
		c.UsagePlans = append(c.UsagePlans, refResolvePlan(*v.plans[id], apis))
	}
	for i := range c.UsagePlans {
		plans[c.UsagePlans[i].ID] = &c.UsagePlans[i]
	}
	byKey := map[string][]string{}
	for _, m := range v.members {
		if plans[m.UsagePlanID] != nil {
			byKey[m.KeyID] = append(byKey[m.KeyID], m.UsagePlanID)
		}
	}
	c.APIKeys = make([]APIKey, 0, len(v.keys))
	for _, id := range slices.Sorted(maps.Keys(v.keys)) {
		k := *v.keys[id]
		k.UsagePlans = []string{}
		covered := map[string]bool{}
		member := byKey[id]
		slices.Sort(member)
	plans:
		for _, pid := range member {
			p := plans[pid]
			for _, as := range p.APIStages {
				if covered[as.APIID+":"+as.Stage] {
					continue plans // a key has one plan per stage: the first by id
				}
			}
			for _, as := range p.APIStages {
				covered[as.APIID+":"+as.Stage] = true
			}
			k.UsagePlans = append(k.UsagePlans, pid)
		}
		c.APIKeys = append(c.APIKeys, k)
	}
	return c
}

// resolvePlan drops the stages and per-method throttles of p that name
// an API, stage, resource or method that does not exist.
func refResolvePlan(p UsagePlan, apis map[string]*API) UsagePlan {
	stages := make([]APIStage, 0, len(p.APIStages))
	for _, as := range p.APIStages {
		a := apis[as.APIID]
		if a == nil || !hasStage(a, as.Stage) {
			continue
		}
		if len(as.Throttle) > 0 {
			kept := make(map[string]Throttle, len(as.Throttle))
			for k, t := range as.Throttle {
				res, m, ok := SplitMethodKey(k)
				if r := findResource(a, res); ok && r != nil {
					if _, ok := r.Methods[m]; ok {
						kept[k] = t
					}
				}
			}
			as.Throttle = kept
		}
		stages = append(stages, as)
	}
	p.APIStages = stages
	return p
}
