// Package schemas holds the wire formats tollgate components exchange: the
// usage event (UsageEvent: one per request, or, for requests rejected
// before a key was identified, one per minute and group of alike requests,
// with their Count), catalog changes on the
// config log (ConfigRecord), the aggregator's quota state per key
// (QuotaSignal), and the counts of usage an enforcer had to drop
// (LostUsage).
//
// Events and signals use the protocol buffers wire format, written and
// read by hand (see usage_proto.go for the field numbers and how to read
// a topic dump with protoc --decode_raw); config and lost-usage records
// are JSON. Every decoder refuses malformed input with ErrMalformed and
// is fuzzed.
//
// Record types carry versioned names (see EventTypeUsage) so that a consumer
// can tell which layout it reads and old records stay readable after a
// change. Fields are added without a version bump when their absence keeps
// the old meaning: UsageEvent.Count (field 15) is absent, 0, on every
// event of one request and on every record written before it, and 0
// means one request; a consumer adds UsageEvent.Requests(), never 1.
// UsageEvent.KeyFingerprint (field 16) is absent, "", on records written
// before it and on events without a key: which of a key's values was
// shown is then unknown, nothing else.
package schemas
