package schemas

import (
	"encoding/json"
	"fmt"
)

// EventTypeLostUsage names the layout of LostUsage.
const EventTypeLostUsage = "tollgate.lost_usage.v1"

// LostUsage reports usage events an enforcer dropped (its spill log or
// its queue was full), for reconciliation: Count requests of one key/plan/api/stage with
// times in [From, To] (Unix nanoseconds) were never produced. Count is
// requests, not events: a dropped event with a UsageEvent.Count adds its
// count.
//
// The encoding is JSON: drops are rare, one record covers many events, and
// an operator reading a topic dump should not need a decoder to see what
// was lost.
type LostUsage struct {
	Type   string `json:"type"` // EventTypeLostUsage
	Node   string `json:"node,omitempty"`
	KeyID  string `json:"keyId"` // "" for requests without a known key
	PlanID string `json:"planId,omitempty"`
	APIID  string `json:"apiId,omitempty"`
	Stage  string `json:"stage,omitempty"`
	Count  int64  `json:"count"`
	// Admitted is how many of Count were admitted requests
	// (DecisionAllowed): the ones that consumed quota.
	Admitted int64 `json:"admitted"`
	From     int64 `json:"from"`
	To       int64 `json:"to"`
	// Reason is where they were dropped: LostSpillFull (the spill log
	// was at its cap; counted per key, plan, API and stage) or
	// LostQueueFull (the in-memory queue was full; counted per
	// enforcer only, as keeping more on that path would cost requests).
	Reason string `json:"reason,omitempty"`
}

// Reasons of LostUsage.
const (
	LostSpillFull = "spill-full"
	LostQueueFull = "queue-full"
)

// EncodeLostUsage returns l's encoding, with Type set to
// EventTypeLostUsage.
func EncodeLostUsage(l *LostUsage) ([]byte, error) {
	c := *l
	c.Type = EventTypeLostUsage
	return json.Marshal(&c)
}

// DecodeLostUsage decodes and checks a record: its type, a positive Count,
// Admitted within [0, Count] and From <= To.
func DecodeLostUsage(b []byte, l *LostUsage) error {
	*l = LostUsage{}
	if err := json.Unmarshal(b, l); err != nil {
		return fmt.Errorf("lost usage: %w: %v", ErrMalformed, err)
	}
	switch {
	case l.Type != EventTypeLostUsage:
		return fmt.Errorf("lost usage: %w: type %q, want %q", ErrMalformed, l.Type, EventTypeLostUsage)
	case l.Count <= 0:
		return fmt.Errorf("lost usage: %w: count %d, want > 0", ErrMalformed, l.Count)
	case l.Admitted < 0 || l.Admitted > l.Count:
		return fmt.Errorf("lost usage: %w: admitted %d outside [0, count %d]", ErrMalformed, l.Admitted, l.Count)
	case l.From > l.To:
		return fmt.Errorf("lost usage: %w: from %d after to %d", ErrMalformed, l.From, l.To)
	}
	return nil
}
