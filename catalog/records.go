package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tollgate/tollgate/schemas"
)

// The catalog as a compacted log: one record per entity (the gateway
// settings, each API with its stages, each plan, each key, each key's
// membership of a plan), keyed kind/id so that compaction keeps the latest
// version of each, and a null entity (a tombstone) for a delete. Key
// values appear only as hashes: the catalog never holds them.
//
// Writers (the admin API) validate a change against the whole catalog
// before they write it; readers (every enforcer and admin node) rebuild
// the catalog with a View, which accepts or rejects each record by rules
// that every node applies identically (see View).

// planKeyEntity is the entity of a KindUsagePlanKey record.
type planKeyEntity struct {
	UsagePlanID string `json:"usagePlanId"`
	KeyID       string `json:"keyId"`
}

// ChangeRecords returns the records that turn old into next, ordered so
// that each is valid on top of those before it: memberships leave first,
// then the gateway, APIs, plans, keys and new memberships are written,
// then keys, plans and APIs are deleted.
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
		slices.SortFunc(list, func(a, b schemas.ConfigRecord) int {
			switch {
			case a.ID < b.ID:
				return -1
			case a.ID > b.ID:
				return 1
			}
			return 0
		})
	}
	return s, nil
}

// View materialises a catalog from config records.
//
// Every node applies the log in the same order with the same rules, so all
// agree. A record is rejected (and changes nothing) when it does not
// decode, when its entity is invalid on its own (a negative rate, a quota
// period that is not DAY/WEEK/MONTH, an API whose routes clash with
// another's), or when it takes a name or key value that another entity
// already holds: the first writer wins everywhere.
//
// References are not checked when a record arrives, because compaction
// reorders them (a plan rewritten after the keys in it moves behind
// them). Catalog resolves them instead, from state alone: a membership of
// a plan or key that does not exist, a plan's stage or per-method
// throttle for an API, stage or resource that does not exist, and the
// second plan of a key on one stage (by plan id) are left out.
//
// Uniqueness is the one rule that depends on order: after compaction a
// rejected record could come before the record that beat it. Every
// writer of the log therefore writes back, at once, the version in force
// of any entity whose latest record was rejected (Repairs), and topics
// are created with min.compaction.lag.ms (1h) so that this happens long
// before compaction. One case remains: the entity that won changes again
// before the repair is written (milliseconds), and the log's active
// segment happens to begin between that change and the repair; then a
// node rebuilding from the compacted log may see the rejected record win.
//
// A View is not safe for concurrent use.
type View struct {
	gateway   Gateway
	apis      map[string]*API
	plans     map[string]*UsagePlan
	keys      map[string]*APIKey
	members   map[string]planKeyEntity // record id → membership
	planNames map[string]string        // name → plan id
	keyNames  map[string]string        // name → key id
	keyHashes map[string]string        // value hash → key id
	accepted  map[string]viewRecord    // record key → the version in force
	// rejected holds the record keys whose latest record was rejected:
	// until a writer repairs them (Repairs), compaction could keep the
	// rejected record and drop the version in force.
	rejected map[string]bool
	// deletedAt: record key → offset of the tombstone in force.
	deletedAt map[string]int64
}

type viewRecord struct {
	offset int64
	value  []byte
}

// NewView returns an empty view.
func NewView() *View {
	return &View{
		apis: map[string]*API{}, plans: map[string]*UsagePlan{}, keys: map[string]*APIKey{},
		members: map[string]planKeyEntity{}, planNames: map[string]string{}, keyNames: map[string]string{},
		keyHashes: map[string]string{}, accepted: map[string]viewRecord{}, rejected: map[string]bool{},
		deletedAt: map[string]int64{},
	}
}

// RejectedError says why a View refused a record.
type RejectedError struct {
	Key    string // kind/id, "" if the record did not decode
	Reason string
}

func (e *RejectedError) Error() string {
	if e.Key == "" {
		return "config record rejected: " + e.Reason
	}
	return fmt.Sprintf("config record %s rejected: %s", e.Key, e.Reason)
}

// Apply applies the record at offset: key is its log key (kind/id),
// value the encoded schemas.ConfigRecord, or nil for a tombstone (the
// entity was deleted; compaction removes it in time). It returns a
// *RejectedError if the record changes nothing.
func (v *View) Apply(offset int64, key, value []byte) error {
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
// address: a known kind and an id.
func validRecordKey(key string) bool {
	kind, id, ok := strings.Cut(key, "/")
	if !ok || id == "" {
		return false
	}
	switch kind {
	case schemas.KindGateway, schemas.KindAPI, schemas.KindUsagePlan, schemas.KindAPIKey, schemas.KindUsagePlanKey:
		return true
	}
	return false
}

// Repair is a record that puts back the version in force of an entity
// whose latest record was rejected: the accepted value, or a tombstone
// (Value nil) if none was ever accepted.
type Repair struct {
	Key   string
	Value []byte
}

// Repairs returns the records that make the version in force the latest
// record again for every key whose latest record was rejected, sorted by
// key. A writer of the log writes them at once (every writer does, so it
// does not matter which one survives): compaction keeps only a key's
// latest record, and a rejected one kept instead of the version in force
// would make a node that rebuilds from the compacted log disagree with
// the nodes that applied it live.
func (v *View) Repairs() []Repair {
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
func (v *View) LatestAt(offsets []int64) map[string]bool {
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

func (v *View) apply(offset int64, key, value []byte) error {
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
		k.UsagePlans = nil
		if err := Validate(&Catalog{APIKeys: []APIKey{*k}}, nil); err != nil {
			return reject("%v", err)
		}
		if old != nil {
			delete(v.keyNames, old.Name)
			delete(v.keyHashes, old.ValueHash)
		}
		v.keys[r.ID], v.keyNames[k.Name], v.keyHashes[k.ValueHash] = k, k.ID, k.ID
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
		v.accepted[r.Key()] = viewRecord{offset: offset, value: slices.Clone(value)}
	}
	return nil
}

// checkPlanAlone validates what can be checked of a plan without the
// APIs it names: its name, throttle, quota, and the form of its
// per-method throttles.
func checkPlanAlone(pl *UsagePlan) error {
	alone := *pl
	alone.APIStages = nil
	p := &problems{}
	validatePlans(p, &Catalog{UsagePlans: []UsagePlan{alone}})
	for i, as := range pl.APIStages {
		for _, k := range slices.Sorted(maps.Keys(as.Throttle)) {
			f := fmt.Sprintf("apiStages[%d].throttle[%q]", i, k)
			if _, _, ok := SplitMethodKey(k); !ok {
				p.add("usagePlans", pl.Name, pl.ID, f, "must have the form /resource/METHOD, e.g. /items/GET")
			}
			t := as.Throttle[k]
			validateThrottle(p, "usagePlans", pl.Name, pl.ID, f, &t)
		}
	}
	return p.err()
}

func (v *View) sortedAPIs(except string) []API {
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
func (v *View) Catalog() *Catalog {
	c := &Catalog{Gateway: v.gateway, APIs: v.sortedAPIs("")}
	apis := make(map[string]*API, len(c.APIs))
	for i := range c.APIs {
		apis[c.APIs[i].ID] = &c.APIs[i]
	}
	c.UsagePlans = make([]UsagePlan, 0, len(v.plans))
	plans := make(map[string]*UsagePlan, len(v.plans))
	for _, id := range slices.Sorted(maps.Keys(v.plans)) {
		c.UsagePlans = append(c.UsagePlans, resolvePlan(*v.plans[id], apis))
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
func resolvePlan(p UsagePlan, apis map[string]*API) UsagePlan {
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

// SnapshotRecord is a record in force, as Snapshot lists them (its key
// is in the value).
type SnapshotRecord struct {
	Offset int64           `json:"offset"`
	Value  json.RawMessage `json:"value"`
}

// Key returns the record's log key.
func (r SnapshotRecord) Key() []byte {
	var rec schemas.ConfigRecord
	if schemas.DecodeConfigRecord(r.Value, &rec) != nil {
		return nil
	}
	return []byte(rec.Key())
}

// Snapshot returns the records in force in log order: applied to a new
// View, they rebuild this one.
func (v *View) Snapshot() []SnapshotRecord {
	out := make([]SnapshotRecord, 0, len(v.accepted))
	for _, r := range v.accepted {
		out = append(out, SnapshotRecord{Offset: r.offset, Value: r.value})
	}
	slices.SortFunc(out, func(a, b SnapshotRecord) int { return int(min(max(a.Offset-b.Offset, -1), 1)) })
	return out
}
