package schemas

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"

	"github.com/tollgate/tollgate/internal/utc"
)

// EventTypeUsage names the layout of UsageEvent. Bump the version when a
// field changes meaning; add fields without bumping.
const EventTypeUsage = "tollgate.usage.v1"

// Decision is what the enforcer did with a request.
type Decision uint8

// Decisions. Only DecisionAllowed consumes quota.
const (
	DecisionUnknown       Decision = iota
	DecisionAllowed                // passed key, throttle and quota checks; proxied
	DecisionForbidden              // 403 Forbidden: missing, unknown or disabled key, or no plan for the stage
	DecisionMissingToken           // 403 Missing Authentication Token (or 404): undeclared path or method
	DecisionThrottled              // 429 Too Many Requests
	DecisionQuotaExceeded          // 429 Limit Exceeded
	DecisionBadRequest             // 400: malformed request (duplicate x-api-key, ...)
)

var decisionNames = [...]string{"unknown", "allowed", "forbidden", "missing_token", "throttled", "quota_exceeded", "bad_request"}

// String returns the decision's name, as reports show it (stores keep the number).
func (d Decision) String() string {
	if int(d) < len(decisionNames) {
		return decisionNames[d]
	}
	return "unknown"
}

// ParseDecision is the inverse of Decision.String.
func ParseDecision(s string) Decision {
	for i, n := range decisionNames {
		if n == s {
			return Decision(i)
		}
	}
	return DecisionUnknown
}

// EventID is a UUIDv7: 48 bits of Unix milliseconds, then random bits, so
// ids sort by time and index well. Producer retries may deliver an event
// twice; consumers drop duplicates by this id.
type EventID [16]byte

// NewEventID returns a UUIDv7 for the given Unix time in nanoseconds. The
// random part comes from the runtime's per-thread ChaCha8 generator: cheap,
// allocation-free and unpredictable enough for an identifier (it is not a
// secret).
func NewEventID(unixNano int64) EventID {
	var id EventID
	ms := uint64(unixNano / 1e6)
	binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	r := rand.Uint64()
	binary.BigEndian.PutUint64(id[0:], ms<<16|r&0x0fff)
	id[6] = 0x70 | id[6]&0x0f // version 7
	id[8] = 0x80 | id[8]&0x3f // RFC 9562 variant
	return id
}

// String formats the id as 8-4-4-4-12 hex.
func (id EventID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return string(b[:])
}

// UnixMilli returns the timestamp embedded in the id.
func (id EventID) UnixMilli() int64 {
	return int64(binary.BigEndian.Uint64(id[0:8]) >> 16)
}

// UsageEvent is one request as metered by an enforcer, or, when Count is
// above 1, that many requests with the same dimensions. Every admitted
// request, and every request rejected once its key was identified,
// produces one event of its own. Requests rejected before a key was
// identified (no key or an unknown one, an undeclared route, a malformed
// request, a throttle on a route that needs no key) are what an
// unauthenticated flood is made of: the enforcer counts them per API,
// stage, resource, method, decision and status, and emits one event per
// minute for each such group, with Count requests, summed latency and
// sizes (enforcer/flood.go). Such an event has no KeyID, PlanID or ID of a
// request, its Time is the start of its minute, and it never counts
// against a quota. Strings point into the enforcer's catalog and are never
// built per request.
type UsageEvent struct {
	ID    EventID
	Time  int64  // Unix nanoseconds when the request arrived
	APIID string // "" when no stage matched
	Stage string
	KeyID string // "" when the key is missing or unknown
	// KeyFingerprint is the fingerprint of the key value the request
	// showed (catalog.Fingerprint: the first 8 hex characters of its
	// SHA-256, never the value), set whenever KeyID is: during a
	// rotation it tells the key's old value from its new one.
	KeyFingerprint string
	PlanID         string // the plan that admitted or rejected it; "" before a plan was found
	Method         string // HTTP method
	Resource       string // resource template, e.g. /items/{id}; "" when no resource matched
	Status         int32  // HTTP status sent to the client
	Decision       Decision
	// LatencyMicros is the time from arrival to the last byte written.
	LatencyMicros int64
	BytesIn       int64 // request body bytes
	BytesOut      int64 // response body bytes
	// Node names the enforcer that admitted or refused the request
	// (enforcer.Config.Node). The aggregator counts admitted events per
	// node, so that each enforcer can tell which of its own admissions a
	// quota signal already holds. "" for a single unnamed enforcer.
	Node string
	// Count is the number of requests the event stands for; 0 means 1,
	// so that events and stored records from before the field existed
	// (and every event of one request) keep their meaning. LatencyMicros,
	// BytesIn and BytesOut are then sums over those requests. Consumers
	// add Requests(), never 1.
	Count uint32
}

// Requests returns the number of requests the event stands for: Count, or
// 1 when Count is 0.
func (e *UsageEvent) Requests() int64 { return int64(max(e.Count, 1)) }

// Admitted reports whether the event consumed quota.
func (e *UsageEvent) Admitted() bool { return e.Decision == DecisionAllowed }

// Day returns the UTC day of the event as days since 1970-01-01.
func (e *UsageEvent) Day() int64 { return utc.Day(e.Time) }

// ParseEventID parses the 8-4-4-4-12 form.
func ParseEventID(s string) (EventID, bool) {
	var id EventID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, false
	}
	src := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	if _, err := hex.Decode(id[:], []byte(src)); err != nil {
		return id, false
	}
	return id, true
}
