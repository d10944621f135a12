package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tollgate/tollgate/schemas"
)

// decodedRecord is a record decoded and checked on its own, ready for
// the rules that depend on the records in force (View.apply).
type decodedRecord struct {
	logKey   string // kind/id, the record's key
	kind, id string // parts of logKey
	tomb     bool
	gateway  Gateway
	api      *API
	plan     *UsagePlan
	key      *APIKey // without plans: memberships are records of their own
	member   planKeyEntity
	webhook  *Webhook
}

// decodeRecord decodes the record under key (value nil: a tombstone) and
// checks what needs no other record: the encoding, the entity's id, and
// the rules of Validate that apply to the entity alone. It returns a
// *RejectedError for a record to reject. It depends on nothing but its
// arguments: records are decoded in parallel (View.ApplyBatch).
func decodeRecord(key, value []byte) (*decodedRecord, error) {
	d, ok := decodePlain(key, value)
	if !ok {
		d, ok = decodeFast(key, value)
	}
	if !ok {
		var err error
		if d, err = decodeSlow(key, value); err != nil {
			return nil, err
		}
	}
	if err := checkAlone(d); err != nil {
		return nil, err
	}
	return d, nil
}

// envelope is a schemas.ConfigRecord with its entity typed, to decode a
// record in one pass.
type envelope[T any] struct {
	Type   string `json:"type"`
	Kind   string `json:"kind"`
	ID     string `json:"id"`
	Entity *T     `json:"entity"`
}

// decodeFast decodes a plain record in one pass. It gives up (false) on
// anything else, for decodeSlow to decide: a record it decodes is one
// decodeSlow decodes the same.
func decodeFast(key, value []byte) (*decodedRecord, bool) {
	if value == nil || !plainEnvelope(value) {
		return nil, false
	}
	logKey := string(key)
	kind, id, _ := strings.Cut(logKey, "/")
	d := &decodedRecord{logKey: logKey, kind: kind, id: id}
	var (
		t, k, i string
		err     error
	)
	switch kind {
	case schemas.KindGateway:
		var e envelope[Gateway]
		err, t, k, i = json.Unmarshal(value, &e), e.Type, e.Kind, e.ID
		if d.tomb = e.Entity == nil; !d.tomb {
			d.gateway = *e.Entity
		}
	case schemas.KindAPI:
		var e envelope[API]
		err, t, k, i = json.Unmarshal(value, &e), e.Type, e.Kind, e.ID
		d.api, d.tomb = e.Entity, e.Entity == nil
	case schemas.KindUsagePlan:
		var e envelope[UsagePlan]
		err, t, k, i = json.Unmarshal(value, &e), e.Type, e.Kind, e.ID
		d.plan, d.tomb = e.Entity, e.Entity == nil
	case schemas.KindAPIKey:
		var e envelope[APIKey]
		err, t, k, i = json.Unmarshal(value, &e), e.Type, e.Kind, e.ID
		d.key, d.tomb = e.Entity, e.Entity == nil
	case schemas.KindUsagePlanKey:
		var e envelope[planKeyEntity]
		err, t, k, i = json.Unmarshal(value, &e), e.Type, e.Kind, e.ID
		if d.tomb = e.Entity == nil; !d.tomb {
			d.member = *e.Entity
		}
	default:
		return nil, false
	}
	if err != nil || t != schemas.EventTypeConfig || k != kind || i != id || id == "" {
		return nil, false
	}
	return d, true
}

// plainEnvelope reports whether value has one "entity" (in any case) and
// no \u escape: a record whose entity two members could give (decoded in
// one pass they merge; decoded apart the last wins) is left to
// decodeSlow.
func plainEnvelope(value []byte) bool {
	n := 0
	for i := 0; i+7 < len(value); i++ {
		switch {
		case value[i] == '\\' && value[i+1] == 'u':
			return false
		case value[i] == '"' && value[i+7] == '"' && bytes.EqualFold(value[i+1:i+7], []byte("entity")):
			n++
		}
	}
	return n == 1
}

// decodeSlow decodes a record as schemas.DecodeConfigRecord does, then
// its entity: the reference decodeFast follows.
func decodeSlow(key, value []byte) (*decodedRecord, error) {
	var r schemas.ConfigRecord
	if value == nil {
		kind, id, _ := strings.Cut(string(key), "/")
		r = schemas.ConfigRecord{Type: schemas.EventTypeConfig, Kind: kind, ID: id}
		if b, err := schemas.EncodeConfigRecord(&r); err != nil || schemas.DecodeConfigRecord(b, &r) != nil {
			return nil, &RejectedError{Key: string(key), Reason: "tombstone for an unknown kind or without id"}
		}
	} else if err := schemas.DecodeConfigRecord(value, &r); err != nil {
		return nil, &RejectedError{Key: string(key), Reason: err.Error()}
	} else if r.Key() != string(key) {
		return nil, &RejectedError{Key: string(key), Reason: fmt.Sprintf("the record is for %s", r.Key())}
	}
	d := &decodedRecord{logKey: r.Key(), kind: r.Kind, id: r.ID, tomb: r.Tombstone()}
	if d.tomb {
		return d, nil
	}
	var dst any
	switch r.Kind {
	case schemas.KindGateway:
		dst = &d.gateway
	case schemas.KindAPI:
		d.api = new(API)
		dst = d.api
	case schemas.KindUsagePlan:
		d.plan = new(UsagePlan)
		dst = d.plan
	case schemas.KindAPIKey:
		d.key = new(APIKey)
		dst = d.key
	case schemas.KindUsagePlanKey:
		dst = &d.member
	case schemas.KindWebhook:
		d.webhook = new(Webhook)
		dst = d.webhook
	}
	if err := json.Unmarshal(r.Entity, dst); err != nil {
		return nil, &RejectedError{Key: r.Key(), Reason: fmt.Sprintf("entity: %v", err)}
	}
	return d, nil
}

// checkAlone applies the rules a decoded entity must meet on its own.
func checkAlone(d *decodedRecord) error {
	if d.tomb {
		return nil
	}
	reject := func(format string, args ...any) error {
		return &RejectedError{Key: d.logKey, Reason: fmt.Sprintf(format, args...)}
	}
	switch d.kind {
	case schemas.KindGateway:
		if err := Validate(&Catalog{Gateway: d.gateway}, nil); err != nil {
			return reject("%v", err)
		}
	case schemas.KindAPI:
		if d.api.ID != d.id {
			return reject("entity id %q differs from the record's", d.api.ID)
		}
	case schemas.KindUsagePlan:
		if d.plan.ID != d.id {
			return reject("entity id %q differs from the record's", d.plan.ID)
		}
		if err := checkPlanAlone(d.plan); err != nil {
			return reject("%v", err)
		}
	case schemas.KindAPIKey:
		if d.key.ID != d.id {
			return reject("entity id %q differs from the record's", d.key.ID)
		}
		d.key.UsagePlans = nil // memberships are records of their own
		if err := validateKeyAlone(d.key); err != nil {
			return reject("%v", err)
		}
	case schemas.KindUsagePlanKey:
		if m := d.member; m.UsagePlanID+"/"+m.KeyID != d.id || m.UsagePlanID == "" || m.KeyID == "" {
			return reject("entity %s/%s does not match the record's id", m.UsagePlanID, m.KeyID)
		}
	case schemas.KindWebhook:
		if d.webhook.ID != d.id {
			return reject("entity id %q differs from the record's", d.webhook.ID)
		}
		p := &problems{}
		validateWebhook(p, d.webhook)
		if err := p.err(); err != nil {
			return reject("%v", err)
		}
	}
	return nil
}

// validateKeyAlone applies Validate's rules to a key without plans.
func validateKeyAlone(k *APIKey) error {
	p := &problems{}
	validateKeys(p, &Catalog{APIKeys: []APIKey{*k}})
	return p.err()
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
