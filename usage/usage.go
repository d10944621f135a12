// Package usage holds what every usage store shares: the daily counts that
// rollups produce and the AWS GetUsage view computed from them.
//
// Stores (the embedded SQLite file in usage/sqlitestore, ClickHouse in
// usage/chstore) keep every usage event for drill-down and roll them up
// per minute and per (plan, key, UTC day); the functions here turn those
// rollups into quota usage and reports, so every store answers the same
// way. A Report (/v1/usage, top, billing) is computed by the store itself,
// in one aggregating query; Aggregate is its in-memory form, which
// usage/reporttest holds every store's queries to.
package usage

import "github.com/tollgate/tollgate/schemas"

// DayCount is the rollup of one (plan, key, UTC day).
type DayCount struct {
	Day      int64 // days since 1970-01-01, UTC
	PlanID   string
	KeyID    string
	Admitted int64 // requests that consumed quota
	Rejected int64 // requests rejected by throttle or quota under this plan
	// Adjustment is quota counted without requests (UpdateUsage): it
	// changes what remains, not what was used.
	Adjustment int64
}

// MinuteCount is one row of the per-minute rollup: requests of one minute
// with the same dimensions, and their sums.
type MinuteCount struct {
	Minute                                        int64 // Unix minutes
	APIID, Stage, KeyID, PlanID, Method, Resource string
	Status                                        int32
	Decision                                      schemas.Decision
	Requests, BytesIn, BytesOut, LatencyMicrosSum int64
}

// Filter narrows a Daily query. Empty strings and lists match everything.
type Filter struct {
	FromDay, ToDay int64 // inclusive, days since 1970-01-01 UTC
	PlanID, KeyID  string
	// KeyIDs keeps the rows of these keys only: a page of GetUsage reads
	// its own keys' rows, so what it holds is bounded by the page, not by
	// the plan's keys.
	KeyIDs []string
}

// NodeDayCount is a key's quota use under a plan on one day, by the
// enforcer that admitted the requests (Node), for the quota authority to
// restore its state; Adjustment rows (UpdateUsage) have no node.
type NodeDayCount struct {
	Day        int64
	PlanID     string
	KeyID      string
	Node       string
	Admitted   int64
	Adjustment int64
}
