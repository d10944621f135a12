// Package usage holds what both usage stores share, so that they answer
// alike: the rows of their rollups, the GetUsage view, and the report
// query.
//
// The stores (usage/sqlitestore, an embedded SQLite file; usage/chstore,
// ClickHouse) keep every usage event and roll the events up: per minute,
// hour and day with every dimension (MinuteCount's), and per (UTC day,
// plan, key) (DayCount). Both are read through the types here:
//
//   - Daily (a Filter, DayCount rows with UpdateUsage's adjustments)
//     serves GetUsage, whose [used, remaining] pairs Values computes
//     (report.go), and the restore of an enforcer's quota counters;
//     NodeDayCount is the same per enforcer, for the aggregator's.
//   - Report (query.go) is /v1/usage, top and billing: one aggregating
//     query the store runs (time bucket and dimensions in its GROUP BY,
//     filters in its WHERE) over the coarsest rollup that answers it,
//     streamed a row at a time. ReportDialect renders the SQL both stores
//     share, with their few differences; ScanReport reads its rows.
//     Aggregate computes the same report in memory: usage/reporttest
//     holds each store's queries to it.
//
// MinDay and MaxDay bound the days any store holds (1970-01-01 to
// 2105-12-31, ClickHouse's Date).
package usage

import (
	"context"

	"github.com/tollgate/tollgate/schemas"
)

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

// KeyCounts is a key's requests under a plan over a day or a month, by
// what was decided: what billing and top consumers read where the store
// keeps them as events arrive (sqlitestore's usage_daily and
// usage_key_month).
type KeyCounts struct {
	PlanID, KeyID                      string
	Admitted, Throttled, QuotaExceeded int64
}

// KeyMonth is a key's requests under a plan in one UTC calendar month.
type KeyMonth struct {
	Month int64 // Unix minutes of the month's first instant
	KeyCounts
}

// BillingTables are what a store keeps as events arrive for billing to
// read without summing a month of days (sqlitestore): a row per key and
// plan for a month (KeyMonths), and a range scan of per-day admitted
// requests that returns only the rows over a threshold (DailyAdmitted).
type BillingTables interface {
	KeyMonths(ctx context.Context, month int64, f func(*KeyMonth) error) error
	DailyAdmitted(ctx context.Context, fromDay, toDay int64, keyIDs []string, over int64, f func(day int64, planID, keyID string, admitted int64) error) error
}

// LostRow is usage an enforcer reported it dropped (the lost-usage
// topic, schemas.LostUsage), summed per UTC day, key, plan, enforcer
// and reason: requests that happened but whose events no store holds.
// A queue-full loss names no key or plan (the enforcer counts those per
// node only).
type LostRow struct {
	Day                         int64 // days since 1970-01-01, UTC
	KeyID, PlanID, Node, Reason string
	Requests                    int64
	// Admitted is how many of Requests were admitted: quota they
	// consumed that usage does not show.
	Admitted int64
}
