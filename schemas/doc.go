// Package schemas holds the wire formats tollgate components exchange: the
// usage event every request produces (UsageEvent), catalog changes on the
// config log (ConfigRecord) and the aggregator's quota state per key
// (QuotaSignal).
//
// Events and signals use the protocol buffers wire format, written and
// read by hand (see usage_proto.go for the field numbers and how to read
// a topic dump with protoc --decode_raw); config records are JSON. Every
// decoder refuses malformed input with ErrMalformed and is fuzzed.
//
// Record types carry versioned names (see EventTypeUsage) so that a consumer
// can tell which layout it reads and old records stay readable after a
// change.
package schemas
