package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/google/btree"

	"github.com/tollgate/tollgate/schemas"
)

// View materialises the catalog from config records, one record at a
// time, into a State.
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
// them). They are resolved instead, from the records in force alone: a
// membership of a plan or key that does not exist, a plan's stage or
// per-method throttle for an API, stage or resource that does not exist,
// and the second plan of a key on one stage (the first by plan id wins)
// are left out of the State, and come back as soon as what they name
// does.
//
// The State is kept up to date record by record, at a cost that does not
// grow with the catalog (O(log n) B-tree updates): a key record or a
// membership resolves that key again; a plan record that plan, and its
// members only if its stages change; an API record the plans (which are
// few), and the members of those whose stages change. State hands out an
// O(1) copy-on-write snapshot of it, TakeDelta what changed since the
// last call, and Snapshot/ReadView save and load the whole view quickly
// (see viewsnapshot.go).
//
// A new view loads: until its State is first read, it keeps the records
// in force in plain maps (a few map operations a record) and builds the
// State from them in one go when it is (see viewbulk.go); a first start
// on a log of a million keys costs seconds, not minutes (a random insert
// into a B-tree of a million entries costs microseconds). ApplyBatch
// decodes records on every core.
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
// A View is not safe for concurrent use; the States it hands out are.
type View struct {
	// bulk holds the records in force while the view has only been
	// loaded (a new view): plain maps, O(1) a record, until the first
	// read of the State builds it in one go (settle).
	bulk *bulkStore
	// st is the catalog the records describe, resolved. The view changes
	// it in place: its entities are replaced, never modified, and its
	// trees are cloned (copy-on-write) for every State handed out.
	st *State
	// gatewaySet: a gateway record (not a tombstone) is in force.
	gatewaySet bool
	// plans are the plans as their records hold them (st holds them
	// resolved).
	plans *btree.BTreeG[*UsagePlan]
	// dropped holds the memberships in force that resolution leaves out
	// (of a missing key or plan, or a key's second plan on one stage) as
	// (key id, plan id) pairs, droppedByPlan the same as (plan id, key
	// id): the memberships in force are those of st's keys and these.
	dropped, droppedByPlan *btree.BTreeG[pair]
	// rejected holds the record keys whose latest record was rejected:
	// until a writer repairs them (Repairs), compaction could keep the
	// rejected record and drop the version in force.
	rejected map[string]bool
	// recent: record key → offset of its version in force (a record or a
	// tombstone), for the records applied in about the last recentWindow
	// offsets (InForce).
	recent  map[string]int64
	last    int64 // the highest offset applied
	pruneAt int   // recent is pruned when it grows past this
	delta   viewDelta
}

// recentWindow is how far back, in offsets, InForce answers: a writer
// asks about the records it has just written.
const recentWindow = 100_000

// NewView returns an empty view.
func NewView() *View {
	return &View{bulk: newBulkStore(), rejected: map[string]bool{}, recent: map[string]int64{}, pruneAt: 2 * recentWindow}
}

// newSettledView returns an empty view that keeps its State record by
// record.
func newSettledView() *View {
	v := NewView()
	v.bulk = nil
	v.initTrees()
	return v
}

func (v *View) initTrees() {
	v.st = NewState()
	v.plans = btree.NewG(degree, func(a, b *UsagePlan) bool { return a.ID < b.ID })
	v.dropped, v.droppedByPlan = btree.NewG(degree, pairLess), btree.NewG(degree, pairLess)
}

// Grow tells a view that about n more records are coming (a first load
// of a log of n records), so that it makes room for them at once. It
// changes nothing else, and nothing once the view has been read.
func (v *View) Grow(n int) {
	if v.bulk != nil {
		// Most records of a large log are keys and their memberships.
		v.bulk.grow(len(v.bulk.keys) + n/2)
	}
}

// State returns the catalog the records applied so far describe: a
// snapshot that later records do not change, taken in O(1) (the first
// time after a load, the view builds it: O(size)).
func (v *View) State() *State {
	v.settle()
	return v.st.clone()
}

// Catalog builds the catalog the records describe, references resolved
// as the type's comment says, entities sorted by id: O(size), for tests
// and tools.
func (v *View) Catalog() *Catalog {
	v.settle()
	c := v.st.Catalog()
	if c.APIs == nil {
		c.APIs = []API{}
	}
	return c
}

// maxDeltaIDs bounds the ids a delta names: past it (a first load, a big
// import) the delta is Full, and its consumer rebuilds from the state.
const maxDeltaIDs = 1 << 16

// viewDelta accumulates what changed in the view's State.
type viewDelta struct {
	full, gateway, apis, webhooks bool
	plans, keys                   map[string]bool
}

func (d *viewDelta) add(set *map[string]bool, id string) {
	if d.full {
		return
	}
	if *set == nil {
		*set = map[string]bool{}
	}
	(*set)[id] = true
	if len(d.plans)+len(d.keys) > maxDeltaIDs {
		*d = viewDelta{full: true}
	}
}

// TakeDelta returns what changed in the State since the previous call
// (the first call: since the empty catalog): every entity that changed,
// and perhaps some that a record wrote back unchanged; Full past
// maxDeltaIDs, and after a load.
func (v *View) TakeDelta() Delta {
	v.settle()
	d := v.delta
	v.delta = viewDelta{}
	if d.full {
		return Delta{Full: true}
	}
	return Delta{Gateway: d.gateway, APIs: d.apis, Webhooks: d.webhooks, Plans: slices.Sorted(maps.Keys(d.plans)), Keys: slices.Sorted(maps.Keys(d.keys))}
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

// Record is a record of the log: its offset, its key (kind/id), and its
// value (the encoded schemas.ConfigRecord, or nil for a tombstone).
type Record struct {
	Offset     int64
	Key, Value []byte
}

// Apply applies the record at offset: key is its log key (kind/id),
// value the encoded schemas.ConfigRecord, or nil for a tombstone (the
// entity was deleted; compaction removes it in time). It returns a
// *RejectedError if the record changes nothing.
func (v *View) Apply(offset int64, key, value []byte) error {
	d, err := decodeRecord(key, value)
	return v.applyDecoded(offset, key, d, err)
}

// ApplyBatch applies records in order, as Apply does one by one, and
// returns what Apply returned for each (nil if none was rejected). It
// decodes them on every core first: a first load applies a million
// records.
func (v *View) ApplyBatch(recs []Record) []error {
	type result struct {
		d   *decodedRecord
		err error
	}
	res := make([]result, len(recs))
	workers := min(runtime.GOMAXPROCS(0), (len(recs)+255)/256)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(recs); i += workers {
				res[i].d, res[i].err = decodeRecord(recs[i].Key, recs[i].Value)
			}
		})
	}
	wg.Wait()
	var errs []error
	for i := range recs {
		if err := v.applyDecoded(recs[i].Offset, recs[i].Key, res[i].d, res[i].err); err != nil {
			if errs == nil {
				errs = make([]error, len(recs))
			}
			errs[i] = err
		}
		res[i] = result{}
	}
	return errs
}

func (v *View) applyDecoded(offset int64, key []byte, d *decodedRecord, err error) error {
	if err == nil {
		err = v.apply(offset, d)
	}
	var re *RejectedError
	switch {
	case err == nil:
		if len(v.rejected) > 0 {
			delete(v.rejected, d.logKey)
		}
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
	case schemas.KindGateway, schemas.KindAPI, schemas.KindUsagePlan, schemas.KindAPIKey, schemas.KindUsagePlanKey, schemas.KindWebhook:
		return true
	}
	return false
}

// Repair is a record that puts back the version in force of an entity
// whose latest record was rejected: the entity in force, or a tombstone
// (Value nil) if there is none.
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
// the nodes that applied it live. The entity in force is encoded again
// from the view (the same entity, not necessarily the same bytes).
func (v *View) Repairs() []Repair {
	return v.Restore(slices.Sorted(maps.Keys(v.rejected)))
}

// Restore returns, for each record key, the record of its version in
// force: the entity, or a tombstone if there is none. Written on top of
// records that must not win compaction (rejected ones, those of a change
// its writer abandoned), it makes the version in force the latest again.
func (v *View) Restore(keys []string) []Repair {
	out := make([]Repair, 0, len(keys))
	for _, k := range keys {
		r := Repair{Key: k}
		kind, id, _ := strings.Cut(k, "/")
		if e := v.store().entityInForce(kind, id); e != nil {
			b, err := json.Marshal(e)
			if err == nil {
				r.Value, err = schemas.EncodeConfigRecord(&schemas.ConfigRecord{Kind: kind, ID: id, Entity: b})
			}
			if err != nil {
				continue // plain data: cannot fail
			}
		}
		out = append(out, r)
	}
	return out
}

// InForce reports whether the record at offset (a record or a tombstone)
// is the version in force of its key: what a writer of that record may
// still undo without overwriting a later change of another writer. It
// answers for records applied lately (about the last 100,000 offsets)
// and is false for older ones.
func (v *View) InForce(key string, offset int64) bool {
	o, ok := v.recent[key]
	return ok && o == offset
}

func (v *View) noteInForce(key string, offset int64) {
	v.recent[key] = offset
	v.last = max(v.last, offset)
	if len(v.recent) > v.pruneAt {
		for k, o := range v.recent {
			if o < v.last-recentWindow {
				delete(v.recent, k)
			}
		}
		v.pruneAt = max(2*recentWindow, 2*len(v.recent))
	}
}

// viewStore keeps the records in force: a bulkStore while a new view
// loads, the view itself (its State, resolved record by record) after.
// Entities are as their records hold them; keys come without plans.
type viewStore interface {
	setGateway(g Gateway, set bool)
	apiList() []API // sorted by id
	putAPI(a *API)
	deleteAPI(id string)
	webhookNamed(name string) string // the id of the webhook with that name, or ""
	putWebhook(w *Webhook)
	deleteWebhook(id string)
	planNamed(name string) string // the id of the plan with that name, or ""
	putPlan(p *UsagePlan)
	deletePlan(id string)
	keyNamed(name string) string  // the id of the key with that name, or ""
	keyValued(hash string) string // the id of the key with that value hash (current or previous), or ""
	putKey(k *APIKey)
	deleteKey(id string)
	memberAt(recordID string) (planKeyEntity, bool)
	putMember(recordID string, m planKeyEntity)
	deleteMember(recordID string, m planKeyEntity)
	entityInForce(kind, id string) any // nil if none
}

var (
	_ viewStore = (*View)(nil)
	_ viewStore = (*bulkStore)(nil)
)

func (v *View) store() viewStore {
	if v.bulk != nil {
		return v.bulk
	}
	return v
}

// apply applies a decoded record: the rules that depend on the records
// in force (unique names and values, APIs' routes).
func (v *View) apply(offset int64, d *decodedRecord) error {
	reject := func(format string, args ...any) error {
		return &RejectedError{Key: d.logKey, Reason: fmt.Sprintf(format, args...)}
	}
	s := v.store()
	switch d.kind {
	case schemas.KindGateway:
		s.setGateway(d.gateway, !d.tomb)
	case schemas.KindAPI:
		if d.tomb {
			s.deleteAPI(d.id)
			break
		}
		all := s.apiList()
		others := make([]API, 0, len(all)+1)
		for _, o := range all {
			if o.ID != d.id {
				others = append(others, o)
			}
		}
		if err := Validate(&Catalog{APIs: append(others, *d.api)}, nil); err != nil {
			return reject("%v", err)
		}
		s.putAPI(d.api)
	case schemas.KindWebhook:
		if d.tomb {
			s.deleteWebhook(d.id)
			break
		}
		if holder := s.webhookNamed(d.webhook.Name); holder != "" && holder != d.id {
			return reject("name %q is taken by webhook %s", d.webhook.Name, holder)
		}
		s.putWebhook(d.webhook)
	case schemas.KindUsagePlan:
		if d.tomb {
			s.deletePlan(d.id)
			break
		}
		if holder := s.planNamed(d.plan.Name); holder != "" && holder != d.id {
			return reject("name %q is taken by plan %s", d.plan.Name, holder)
		}
		s.putPlan(d.plan)
	case schemas.KindAPIKey:
		if d.tomb {
			s.deleteKey(d.id)
			break
		}
		if holder := s.keyNamed(d.key.Name); holder != "" && holder != d.id {
			return reject("name %q is taken by key %s", d.key.Name, holder)
		}
		if holder := s.keyValued(d.key.ValueHash); holder != "" && holder != d.id {
			return reject("its value is the value of key %s; values must be unique", holder)
		}
		if d.key.PreviousValueHash != "" {
			if holder := s.keyValued(d.key.PreviousValueHash); holder != "" && holder != d.id {
				return reject("its previous value is a value of key %s; values must be unique", holder)
			}
		}
		s.putKey(d.key)
	case schemas.KindUsagePlanKey:
		cur, ok := s.memberAt(d.id)
		switch {
		case ok && !d.tomb && cur == d.member:
		case ok:
			// Deleted, or the same record id split otherwise ("a/b/c").
			s.deleteMember(d.id, cur)
			fallthrough
		default:
			if !d.tomb {
				s.putMember(d.id, d.member)
			}
		}
	}
	v.noteInForce(d.logKey, offset)
	return nil
}

// The view's own store: its State, resolved record by record.

func (v *View) setGateway(g Gateway, set bool) {
	if !sameJSON(v.st.gateway, g) {
		v.delta.gateway = true
	}
	v.st.gateway, v.gatewaySet = g, set
}

func (v *View) apiList() []API { return v.st.apis }

func (v *View) putAPI(a *API) {
	if old := v.st.API(a.ID); old == nil || !sameJSON(old, a) {
		v.st.putAPI(*a)
		v.apisChanged()
	}
}

func (v *View) deleteAPI(id string) {
	if v.st.deleteAPI(id) {
		v.apisChanged()
	}
}

func (v *View) webhookNamed(name string) string {
	if w := v.st.WebhookByName(name); w != nil {
		return w.ID
	}
	return ""
}

func (v *View) putWebhook(w *Webhook) {
	if old := v.st.Webhook(w.ID); old == nil || !sameJSON(old, w) {
		v.st.putWebhook(*w)
		v.delta.webhooks = true
	}
}

func (v *View) deleteWebhook(id string) {
	if v.st.deleteWebhook(id) {
		v.delta.webhooks = true
	}
}

func (v *View) planNamed(name string) string { return first(v.st.planNames, name) }
func (v *View) keyNamed(name string) string  { return first(v.st.keyNames, name) }
func (v *View) keyValued(hash string) string {
	if id := first(v.st.keyHashes, hash); id != "" {
		return id
	}
	return first(v.st.prevHashes, hash)
}
func (v *View) putMember(_ string, m planKeyEntity) {
	if v.st.Key(m.KeyID) == nil {
		v.addDropped(m.KeyID, m.UsagePlanID) // of a missing key
		return
	}
	v.resolveKey(m.KeyID, "", m.UsagePlanID)
}

func (v *View) putPlan(p *UsagePlan) {
	v.plans.ReplaceOrInsert(p)
	v.setPlan(p.ID, p)
}

func (v *View) deletePlan(id string) {
	v.plans.Delete(&UsagePlan{ID: id})
	v.setPlan(id, nil)
}

func (v *View) entityInForce(kind, id string) any {
	switch kind {
	case schemas.KindGateway:
		if v.gatewaySet {
			return v.st.gateway
		}
	case schemas.KindAPI:
		if a := v.st.API(id); a != nil {
			return a
		}
	case schemas.KindWebhook:
		if w := v.st.Webhook(id); w != nil {
			return w
		}
	case schemas.KindUsagePlan:
		if p, ok := v.plans.Get(&UsagePlan{ID: id}); ok {
			return p
		}
	case schemas.KindAPIKey:
		if k := v.st.Key(id); k != nil {
			raw := *k
			raw.UsagePlans = nil // memberships are records of their own
			return &raw
		}
	case schemas.KindUsagePlanKey:
		if m, ok := v.memberAt(id); ok {
			return m
		}
	}
	return nil
}

// apisChanged resolves every plan again after a change of the APIs.
func (v *View) apisChanged() {
	v.delta.apis = true
	v.plans.Ascend(func(p *UsagePlan) bool {
		v.setPlan(p.ID, p)
		return true
	})
}

// setPlan makes raw (nil: none) plan id, resolved, and resolves its
// members again if its stages changed.
func (v *View) setPlan(id string, raw *UsagePlan) {
	old := v.st.Plan(id)
	var p *UsagePlan
	if raw != nil {
		rp := resolvePlan(*raw, v.st.API)
		p = &rp
	}
	switch {
	case p == nil && old == nil:
		return
	case p == nil:
		v.st.deletePlan(id)
	case old != nil && sameJSON(old, p):
		return
	default:
		v.st.putPlan(p)
	}
	v.delta.add(&v.delta.plans, id)
	if old == nil || p == nil || !sameStages(old.APIStages, p.APIStages) {
		// Its members may gain or lose it (a key has one plan per stage).
		var ids []string
		each(v.st.members, id, "", func(k string) bool { ids = append(ids, k); return true })
		each(v.droppedByPlan, id, "", func(k string) bool { ids = append(ids, k); return true })
		for _, k := range ids {
			v.resolveKey(k, "", "")
		}
	}
}

// resolvePlan drops the stages and per-method throttles of p that name
// an API, stage, resource or method that api does not find.
func resolvePlan(p UsagePlan, api func(id string) *API) UsagePlan {
	stages := make([]APIStage, 0, len(p.APIStages))
	for _, as := range p.APIStages {
		a := api(as.APIID)
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

// putKey makes k (without plans) key k.ID, with the memberships in force
// of that id.
func (v *View) putKey(k *APIKey) {
	raw := v.membershipsOf(k.ID, v.st.Key(k.ID), "")
	k.UsagePlans = v.keep(raw)
	v.setDropped(k.ID, raw, k.UsagePlans)
	v.st.putKey(k)
	v.delta.add(&v.delta.keys, k.ID)
}

// deleteKey removes key id; its memberships stay in force, dropped.
func (v *View) deleteKey(id string) {
	old := v.st.Key(id)
	if old == nil {
		return
	}
	for _, p := range old.UsagePlans {
		v.addDropped(id, p)
	}
	v.st.deleteKey(id)
	v.delta.add(&v.delta.keys, id)
}

// resolveKey resolves the memberships of key id again, without the
// membership of plan except (if not ""), which leaves, and with that of
// plan join (if not ""), which comes.
func (v *View) resolveKey(id, except, join string) {
	k := v.st.Key(id)
	if k == nil {
		return // its memberships are all dropped already
	}
	raw := v.membershipsOf(id, k, except)
	if join != "" {
		i, _ := slices.BinarySearch(raw, join)
		raw = slices.Insert(slices.Clip(raw), i, join)
	}
	kept := v.keep(raw)
	v.setDropped(id, raw, kept)
	if slices.Equal(kept, k.UsagePlans) {
		return
	}
	nk := *k
	nk.UsagePlans = kept
	v.st.replaceKeyPlans(k, &nk)
	v.delta.add(&v.delta.keys, id)
}

// membershipsOf returns the plans of key id's memberships in force
// (cur is the key in the state, or nil), sorted, without except.
func (v *View) membershipsOf(id string, cur *APIKey, except string) []string {
	var out []string
	if cur != nil {
		out = cur.UsagePlans
	}
	var dropped []string
	each(v.dropped, id, "", func(p string) bool { dropped = append(dropped, p); return true })
	if len(dropped) > 0 || except != "" {
		out = slices.Concat(out, dropped)
		out = slices.DeleteFunc(out, func(p string) bool { return p == except })
		slices.Sort(out)
	}
	return out
}

// keep returns the plans of raw (sorted plan ids) a key is in: those that
// exist, less any that covers a stage an earlier one covers.
func (v *View) keep(raw []string) []string { return v.keepAppend(make([]string, 0, len(raw)), raw) }

// keepAppend appends to dst what keep returns. The ids appended are the
// plans' own strings, shared by all their keys.
func (v *View) keepAppend(dst, raw []string) []string {
	if len(raw) == 1 {
		if p := v.st.Plan(raw[0]); p != nil {
			dst = append(dst, p.ID)
		}
		return dst
	}
	var covered []string // "api:stage"
plans:
	for _, id := range raw {
		p := v.st.Plan(id)
		if p == nil {
			continue
		}
		for _, as := range p.APIStages {
			if slices.Contains(covered, as.APIID+":"+as.Stage) {
				continue plans
			}
		}
		for _, as := range p.APIStages {
			covered = append(covered, as.APIID+":"+as.Stage)
		}
		dst = append(dst, p.ID)
	}
	return dst
}

// setDropped records which of key id's memberships raw resolution left
// out (those not in kept).
func (v *View) setDropped(id string, raw, kept []string) {
	for _, p := range raw {
		if slices.Contains(kept, p) {
			v.removeDropped(id, p)
		} else {
			v.addDropped(id, p)
		}
	}
}

func (v *View) addDropped(keyID, planID string) {
	v.dropped.ReplaceOrInsert(pair{keyID, planID})
	v.droppedByPlan.ReplaceOrInsert(pair{planID, keyID})
}

func (v *View) removeDropped(keyID, planID string) bool {
	if v.dropped.Len() == 0 || !v.dropped.Has(pair{keyID, planID}) {
		return false
	}
	v.dropped.Delete(pair{keyID, planID})
	v.droppedByPlan.Delete(pair{planID, keyID})
	return true
}

// memberAt returns the membership in force under record id (plan/key),
// whichever "/" splits it.
func (v *View) memberAt(recordID string) (planKeyEntity, bool) {
	for i := range len(recordID) {
		if recordID[i] != '/' {
			continue
		}
		m := planKeyEntity{UsagePlanID: recordID[:i], KeyID: recordID[i+1:]}
		if m.UsagePlanID == "" || m.KeyID == "" {
			continue
		}
		if k := v.st.Key(m.KeyID); k != nil && slices.Contains(k.UsagePlans, m.UsagePlanID) ||
			v.dropped.Len() > 0 && v.dropped.Has(pair{m.KeyID, m.UsagePlanID}) {
			return m, true
		}
	}
	return planKeyEntity{}, false
}

// deleteMember takes a membership in force out.
func (v *View) deleteMember(_ string, m planKeyEntity) {
	if !v.removeDropped(m.KeyID, m.UsagePlanID) {
		v.resolveKey(m.KeyID, m.UsagePlanID, "")
	}
}
