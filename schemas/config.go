package schemas

import (
	"encoding/json"
	"fmt"
)

// EventTypeConfig names the layout of ConfigRecord.
const EventTypeConfig = "tollgate.config.v1"

// Config record kinds: one per catalog entity type.
const (
	KindAPI       = "api"
	KindUsagePlan = "usagePlan"
	KindAPIKey    = "apiKey"
	KindGateway   = "gateway"
	// KindUsagePlanKey is a key's membership of a plan: id
	// "planID/keyID", entity {"usagePlanId": ..., "keyId": ...}.
	KindUsagePlanKey = "usagePlanKey"
	// KindWebhook is a quota notification subscription (catalog.Webhook).
	KindWebhook = "webhook"
)

// ConfigRecord is one catalog entity on the compacted config log, keyed
// Key() so that compaction keeps each entity's latest version. Entity is
// the entity as the catalog stores it (key values only as hashes); a nil
// Entity is a tombstone: the entity was deleted.
//
// The encoding is JSON: config changes are rare, and a kcat dump of the
// topic reads as is.
type ConfigRecord struct {
	Type   string          `json:"type"` // EventTypeConfig
	Kind   string          `json:"kind"`
	ID     string          `json:"id"`
	Entity json.RawMessage `json:"entity"` // null: deleted
}

// Key is the record's log key: kind and id.
func (r *ConfigRecord) Key() string { return r.Kind + "/" + r.ID }

// Tombstone reports whether the record deletes its entity.
func (r *ConfigRecord) Tombstone() bool { return len(r.Entity) == 0 || string(r.Entity) == "null" }

// EncodeConfigRecord returns r's encoding.
func EncodeConfigRecord(r *ConfigRecord) ([]byte, error) {
	c := *r
	c.Type = EventTypeConfig
	if c.Tombstone() {
		c.Entity = json.RawMessage("null")
	}
	return json.Marshal(&c)
}

// DecodeConfigRecord decodes and checks a record.
func DecodeConfigRecord(b []byte, r *ConfigRecord) error {
	*r = ConfigRecord{}
	if err := json.Unmarshal(b, r); err != nil {
		return fmt.Errorf("config record: %w: %v", ErrMalformed, err)
	}
	switch {
	case r.Type != EventTypeConfig:
		return fmt.Errorf("config record: %w: type %q, want %q", ErrMalformed, r.Type, EventTypeConfig)
	case r.Kind != KindAPI && r.Kind != KindUsagePlan && r.Kind != KindAPIKey && r.Kind != KindGateway && r.Kind != KindUsagePlanKey && r.Kind != KindWebhook:
		return fmt.Errorf("config record: %w: unknown kind %q", ErrMalformed, r.Kind)
	case r.ID == "":
		return fmt.Errorf("config record: %w: no id", ErrMalformed)
	}
	if !r.Tombstone() && (len(r.Entity) == 0 || r.Entity[0] != '{') {
		return fmt.Errorf("config record: %w: entity must be an object or null", ErrMalformed)
	}
	return nil
}
