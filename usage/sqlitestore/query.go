package sqlitestore

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

// dailySQL reads a day range of the rollup, with the quota adjustments of
// the same days, in primary-key order; an empty plan (?3) or key (?4)
// parameter matches every row, and so does an empty key list (?5, a JSON
// array of key ids: one prepared statement for any number of keys).
const dailySQL = `SELECT day, plan_id, key_id, sum(admitted), sum(rejected), sum(adjustment) FROM (
	SELECT day, plan_id, key_id, admitted, rejected, 0 AS adjustment FROM usage_daily
	WHERE day BETWEEN ?1 AND ?2 AND (?3 = '' OR plan_id = ?3) AND (?4 = '' OR key_id = ?4)
		AND (?5 = '[]' OR key_id IN (SELECT value FROM json_each(?5)))
	UNION ALL
	SELECT day, plan_id, key_id, 0, 0, delta FROM quota_adjustments
	WHERE day BETWEEN ?1 AND ?2 AND (?3 = '' OR plan_id = ?3) AND (?4 = '' OR key_id = ?4)
		AND (?5 = '[]' OR key_id IN (SELECT value FROM json_each(?5))))
GROUP BY day, plan_id, key_id
ORDER BY day, plan_id, key_id`

// dailyOfPlanSQL is dailySQL for one plan (?3) and, by keys, no key, one
// key (?4) or a page of keys (?4, a JSON array): the days of the range
// are a list, so that each (day, plan) is a seek of the primary key, and
// each (day, plan, key) with a key or a page of keys: what GetUsage of a
// key costs is its days, not every key's rows of them (a range on day
// leaves plan and key to be checked row by row: 53 ms for one key's day
// among 100,000 keys).
func dailyOfPlanSQL(keys string) string {
	return `WITH RECURSIVE days(d) AS (SELECT ?1 WHERE ?1 <= ?2 UNION ALL SELECT d + 1 FROM days WHERE d < ?2)
SELECT day, plan_id, key_id, sum(admitted), sum(rejected), sum(adjustment) FROM (
	SELECT day, plan_id, key_id, admitted, rejected, 0 AS adjustment FROM usage_daily
	WHERE day IN (SELECT d FROM days) AND plan_id = ?3` + keys + `
	UNION ALL
	SELECT day, plan_id, key_id, 0, 0, delta FROM quota_adjustments
	WHERE day BETWEEN ?1 AND ?2 AND plan_id = ?3` + keys + `)
GROUP BY day, plan_id, key_id
ORDER BY day, plan_id, key_id`
}

// The key conditions of dailyOfPlanSQL.
const (
	ofKey  = " AND key_id = ?4"
	ofKeys = " AND key_id IN (SELECT value FROM json_each(?4))"
)

// adjustSQL adds to a (day, plan, key)'s quota adjustment.
const adjustSQL = `INSERT INTO quota_adjustments (day, plan_id, key_id, delta) VALUES (?, ?, ?, ?)
ON CONFLICT (day, plan_id, key_id) DO UPDATE SET delta = delta + excluded.delta`

// AdjustQuota records that the quota used by a key under a plan changes
// by delta on a day, without requests: UpdateUsage's adjustment of the
// remaining quota. Daily reports it as Adjustment.
func (s *Store) AdjustQuota(ctx context.Context, planID, keyID string, day, delta int64) error {
	if _, err := s.db.ExecContext(ctx, adjustSQL, day, planID, keyID, delta); err != nil {
		return fmt.Errorf("adjust quota: %w", err)
	}
	return nil
}

// eventsSQL reads the batches that may hold events in [?1, ?2), by
// min_time, through usage_event_batches_time. A batch overlapping the range
// starts at most the widest span before ?1; the subquery reads that span
// from usage_event_batches_span and computes ?1 - span without overflowing
// (?3 is math.MinInt64; a span that overflowed to REAL, or none, means no
// bound).
const eventsSQL = `SELECT min_time, n, events FROM usage_event_batches
WHERE min_time >= (
	SELECT CASE WHEN typeof(span) = 'integer' AND ?1 >= ?3 + span THEN ?1 - span ELSE ?3 END
	FROM (SELECT max(max_time - min_time) AS span FROM usage_event_batches))
AND min_time < ?2 AND max_time >= ?1
ORDER BY min_time`

// minutesSQL reads a minute range of the per-minute rollup in primary-key
// order.
const minutesSQL = `SELECT minute, key_id, plan_id, api_id, stage, method, resource, status, decision,
	requests, bytes_in, bytes_out, latency_us_sum
FROM usage_minute WHERE minute >= ? AND minute < ?
ORDER BY minute, key_id, plan_id, api_id, stage, method, resource, status, decision`

// Daily returns the rollup rows matching f, ordered by day, plan and key.
func (s *Store) Daily(ctx context.Context, f usage.Filter) ([]usage.DayCount, error) {
	keys := []byte("[]")
	if len(f.KeyIDs) > 0 {
		var err error
		if keys, err = json.Marshal(f.KeyIDs); err != nil {
			return nil, fmt.Errorf("query daily usage: %w", err)
		}
	}
	var rows *sql.Rows
	var err error
	switch {
	case f.PlanID == "":
		rows, err = s.daily.QueryContext(ctx, f.FromDay, f.ToDay, f.PlanID, f.KeyID, string(keys))
	case f.KeyID != "" && len(f.KeyIDs) == 0:
		rows, err = s.dailyOfKey.QueryContext(ctx, f.FromDay, f.ToDay, f.PlanID, f.KeyID)
	case f.KeyID == "" && len(f.KeyIDs) > 0:
		rows, err = s.dailyOfKeys.QueryContext(ctx, f.FromDay, f.ToDay, f.PlanID, string(keys))
	case f.KeyID == "":
		rows, err = s.dailyOfPlan.QueryContext(ctx, f.FromDay, f.ToDay, f.PlanID)
	default: // a key and a list: both hold
		rows, err = s.daily.QueryContext(ctx, f.FromDay, f.ToDay, f.PlanID, f.KeyID, string(keys))
	}
	if err != nil {
		return nil, fmt.Errorf("query daily usage: %w", err)
	}
	defer rows.Close()
	var out []usage.DayCount
	for rows.Next() {
		var d usage.DayCount
		if err := rows.Scan(&d.Day, &d.PlanID, &d.KeyID, &d.Admitted, &d.Rejected, &d.Adjustment); err != nil {
			return nil, fmt.Errorf("query daily usage: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query daily usage: %w", err)
	}
	return out, nil
}

// MinuteCount is one row of the per-minute rollup.
type MinuteCount = usage.MinuteCount

// Minutes returns per-minute rollup rows with Minute in [fromMinute, toMinute), ordered by the primary key.
func (s *Store) Minutes(ctx context.Context, fromMinute, toMinute int64) ([]MinuteCount, error) {
	var out []MinuteCount
	err := s.EachMinute(ctx, fromMinute, toMinute, func(m *MinuteCount) error {
		out = append(out, *m)
		return nil
	})
	return out, err
}

// EachMinute calls f for each per-minute rollup row with Minute in
// [fromMinute, toMinute), in primary-key order (minute first), without
// holding the rows in memory. f's error stops the scan and is returned.
func (s *Store) EachMinute(ctx context.Context, fromMinute, toMinute int64, f func(*MinuteCount) error) error {
	rows, err := s.minutes.QueryContext(ctx, fromMinute, toMinute)
	if err != nil {
		return fmt.Errorf("query minute usage: %w", err)
	}
	defer rows.Close()
	return usage.ScanMinutes[int64](rows, f)
}

// Events returns at most limit raw events with Time in [from, to) Unix
// nanoseconds, ordered by time, then id. A limit of zero or less returns
// none.
//
// It decodes the batches overlapping the range in order of their earliest
// event and keeps the events in range. Once it holds limit events, a batch
// that starts after the limit-th earliest of them cannot contribute, and it
// stops.
func (s *Store) Events(ctx context.Context, from, to int64, limit int) ([]schemas.UsageEvent, error) {
	if limit <= 0 || from >= to {
		return nil, nil
	}
	rows, err := s.events.QueryContext(ctx, from, to, int64(math.MinInt64))
	if err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	defer rows.Close()
	var (
		out    []schemas.UsageEvent
		cutoff int64 = math.MaxInt64 // time of the limit-th earliest event kept, once there are limit
	)
	for rows.Next() {
		var (
			minTime, n int64
			blob       sql.RawBytes // valid until Next; the decoder copies what it keeps
		)
		if err := rows.Scan(&minTime, &n, &blob); err != nil {
			return nil, fmt.Errorf("query events: %w", err)
		}
		if minTime > cutoff {
			break
		}
		start := len(out)
		out, err = appendDecoded(out, blob)
		if err != nil {
			return nil, fmt.Errorf("query events: batch from %d: %w", minTime, err)
		}
		if got := int64(len(out) - start); got != n {
			return nil, fmt.Errorf("query events: batch from %d: %d events, want %d", minTime, got, n)
		}
		kept := slices.DeleteFunc(out[start:], func(e schemas.UsageEvent) bool {
			return e.Time < from || e.Time >= to
		})
		out = out[:start+len(kept)]
		if len(out)/2 >= limit { // keep memory bounded by the limit and the batch size
			sortEvents(out)
			out = out[:limit]
			cutoff = out[limit-1].Time
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	sortEvents(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// sortEvents sorts events by time, then id.
func sortEvents(events []schemas.UsageEvent) {
	slices.SortFunc(events, func(a, b schemas.UsageEvent) int {
		if c := cmp.Compare(a.Time, b.Time); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
}

// KeyMonths calls f with each plan's and key's requests in the UTC month
// whose first minute is month (usage.BucketOf(m, "month")), by plan and
// key: a row per key and plan, read in primary-key order, kept as events
// arrived (usage_key_month). f's row is reused; its error stops the scan.
func (s *Store) KeyMonths(ctx context.Context, month int64, f func(*usage.KeyMonth) error) error {
	return keyMonths(ctx, s.db, month, f)
}

// queryer is what the reads run on: the pool, or one connection inside a
// read transaction (ReadBilling).
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func keyMonths(ctx context.Context, db queryer, month int64, f func(*usage.KeyMonth) error) error {
	rows, err := db.QueryContext(ctx, `SELECT plan_id, key_id, admitted, throttled, quota_exceeded FROM usage_key_month WHERE month = ? ORDER BY plan_id, key_id`, month)
	if err != nil {
		return fmt.Errorf("query month usage: %w", err)
	}
	defer rows.Close()
	km := usage.KeyMonth{Month: month}
	for rows.Next() {
		if err := rows.Scan(&km.PlanID, &km.KeyID, &km.Admitted, &km.Throttled, &km.QuotaExceeded); err != nil {
			return fmt.Errorf("query month usage: %w", err)
		}
		if err := f(&km); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query month usage: %w", err)
	}
	return nil
}

// DailyAdmitted calls f with the admitted requests of each day, plan and
// key of [fromDay, toDay] (usage_daily, kept as events arrive: no
// adjustments) that exceed over, of keyIDs' keys only when keyIDs is not
// empty, in day, plan and key order: a range scan of the table's primary
// key, which sorts nothing and returns only the rows asked for (billing's
// days over a daily quota).
func (s *Store) DailyAdmitted(ctx context.Context, fromDay, toDay int64, keyIDs []string, over int64, f func(day int64, planID, keyID string, admitted int64) error) error {
	return dailyAdmitted(ctx, s.db, fromDay, toDay, keyIDs, over, f)
}

func dailyAdmitted(ctx context.Context, db queryer, fromDay, toDay int64, keyIDs []string, over int64, f func(day int64, planID, keyID string, admitted int64) error) error {
	keys := []byte("[]")
	if len(keyIDs) > 0 {
		var err error
		if keys, err = json.Marshal(keyIDs); err != nil {
			return fmt.Errorf("query daily admitted: %w", err)
		}
	}
	rows, err := db.QueryContext(ctx, `SELECT day, plan_id, key_id, admitted FROM usage_daily
WHERE day >= ?1 AND day <= ?2 AND admitted > ?3 AND (?4 = '[]' OR key_id IN (SELECT value FROM json_each(?4)))
ORDER BY day, plan_id, key_id`, fromDay, toDay, over, string(keys))
	if err != nil {
		return fmt.Errorf("query daily admitted: %w", err)
	}
	defer rows.Close()
	var day, admitted int64
	var plan, key string
	for rows.Next() {
		if err := rows.Scan(&day, &plan, &key, &admitted); err != nil {
			return fmt.Errorf("query daily admitted: %w", err)
		}
		if err := f(day, plan, key, admitted); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query daily admitted: %w", err)
	}
	return nil
}

// TopKeys calls f with up to limit keys that were admitted the most
// requests in the whole UTC days [fromDay, toDay], of one plan ("" every
// plan), most first, then by key and plan, with their throttled and
// quota-refused requests; rows without a key or a plan are left out. It
// reads the tables kept as events arrive: a calendar month's row per key
// (usage_key_month) when the days are one whole month, else a row per key
// and day (usage_daily), where the rollups would have every key's rows
// of every decision summed and sorted. f's row is reused; its error stops
// the scan.
func (s *Store) TopKeys(ctx context.Context, fromDay, toDay int64, planID string, limit int, f func(*usage.KeyCounts) error) error {
	var q string
	var args []any
	month := usage.BucketOf(fromDay*1440, "month")
	if month == fromDay*1440 && usage.BucketOf((toDay+1)*1440, "month") == (toDay+1)*1440 && usage.BucketOf(toDay*1440, "month") == month {
		q = `SELECT plan_id, key_id, admitted, throttled, quota_exceeded FROM usage_key_month
WHERE month = ?1 AND (?2 = '' OR plan_id = ?2) AND plan_id != '' AND key_id != ''
ORDER BY admitted DESC, key_id, plan_id LIMIT ?3`
		args = []any{month, planID, limit}
	} else if fromDay == toDay { // a row per key already: no sums to sort
		q = `SELECT plan_id, key_id, admitted, throttled, quota_exceeded FROM usage_daily
WHERE day = ?1 AND (?2 = '' OR plan_id = ?2) AND plan_id != '' AND key_id != ''
ORDER BY admitted DESC, key_id, plan_id LIMIT ?3`
		args = []any{fromDay, planID, limit}
	} else {
		q = `SELECT plan_id, key_id, sum(admitted) AS a, sum(throttled), sum(quota_exceeded) FROM usage_daily
WHERE day BETWEEN ?1 AND ?2 AND (?3 = '' OR plan_id = ?3) AND plan_id != '' AND key_id != ''
GROUP BY plan_id, key_id ORDER BY a DESC, key_id, plan_id LIMIT ?4`
		args = []any{fromDay, toDay, planID, limit}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("top keys: %w", err)
	}
	defer rows.Close()
	var kc usage.KeyCounts
	for rows.Next() {
		if err := rows.Scan(&kc.PlanID, &kc.KeyID, &kc.Admitted, &kc.Throttled, &kc.QuotaExceeded); err != nil {
			return fmt.Errorf("top keys: %w", err)
		}
		if err := f(&kc); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("top keys: %w", err)
	}
	return nil
}

// billingReader is what ReadBilling's function reads with: KeyMonths and
// DailyAdmitted, all of one state of the store.
type billingReader struct {
	conn *sql.Conn
}

var (
	_ usage.BillingTables = (*Store)(nil)
	_ usage.BillingTables = billingReader{}
)

// KeyMonths is Store.KeyMonths in the reader's snapshot.
func (r billingReader) KeyMonths(ctx context.Context, month int64, f func(*usage.KeyMonth) error) error {
	return keyMonths(ctx, r.conn, month, f)
}

// DailyAdmitted is Store.DailyAdmitted in the reader's snapshot.
func (r billingReader) DailyAdmitted(ctx context.Context, fromDay, toDay int64, keyIDs []string, over int64, f func(day int64, planID, keyID string, admitted int64) error) error {
	return dailyAdmitted(ctx, r.conn, fromDay, toDay, keyIDs, over, f)
}

// ReadBilling calls f with a reader whose reads all see one state of the
// store: a read transaction on one connection (WAL: the snapshot of its
// first read), so that a bill's totals and its overage, read by several
// queries, agree even while batches are written. It takes no lock that
// writers wait on (BEGIN DEFERRED, reads only).
func (s *Store) ReadBilling(ctx context.Context, f func(usage.BillingTables) error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("read billing: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN DEFERRED"); err != nil {
		return fmt.Errorf("read billing: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
	return f(billingReader{conn: conn})
}
