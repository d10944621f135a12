package chstore

import (
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/usage"
)

// The queries are built here, by pure functions, so that tests can read
// them as strings. Values go as clickhouse-go's positional (?) arguments,
// which it binds on the client: the server-side {name:Type} parameters
// do not exist in 18.16. Partition numbers, checked ints, are written
// into the text.

// rawMarksSQL reads usage_events' marks (see mark) of the partitions
// in (a list of numbers) from its marker rows: per day, the highest
// offset of a batch whose last INSERT it holds (-1: none) and the highest
// offset it holds.
func rawMarksSQL(in string) string {
	return `SELECT toUInt8(0), src_partition, toUInt32(toUInt16(day)) AS d, maxIf(src_offset + 1, batch_end = 1) - 1, max(src_offset)
FROM usage_events WHERE ` + rawMarkerCond + ` AND src_partition IN (` + in + `) GROUP BY src_partition, d`
}

// rawMarkerCond selects usage_events' marker rows: a range of its
// primary key.
const rawMarkerCond = "key_id = '' AND time_ns = -9223372036854775808"

// rollupMarksSQL reads the rollups' marker rows of the partitions in:
// per table, partition and month, the sum of the progress markers'
// advances, and each part-way marker's offset. Markers come first in
// each table's sort key (minute < 0; plan and key empty in usage_daily),
// so the primary index finds them.
func rollupMarksSQL(in string) string {
	var b strings.Builder
	for _, t := range []int{TableMinute, TableHour, TableDay, TableKeyDay} {
		// key_id = '' for usage_minute, whose sort key starts (day,
		// key_id): each day's markers open its range of the index.
		b.WriteString("SELECT toUInt8(" + strconv.Itoa(t) + "), src_partition, toUInt32(toYYYYMM(day)) AS ym, " +
			"if(minute = -1, sum(done), toInt64(0)), if(minute = -1, toInt64(-1), -2 - minute) FROM " + tableNames[t] +
			" WHERE key_id = '' AND minute < 0 AND src_partition IN (" + in + ") GROUP BY src_partition, minute, ym\nUNION ALL\n")
	}
	b.WriteString("SELECT toUInt8(" + strconv.Itoa(TableDaily) + "), src_partition, toUInt32(toYYYYMM(day)) AS ym, " +
		"if(node = '', sum(done), toInt64(0)), if(node = '', toInt64(-1), toInt64OrZero(node)) FROM usage_daily" +
		" WHERE plan_id = '' AND key_id = '' AND src_partition IN (" + in + ") GROUP BY src_partition, node, ym")
	return b.String()
}

// inList formats ints as a comma-separated list.
func inList(xs []int) string {
	var b strings.Builder
	for i, x := range xs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(x))
	}
	return b.String()
}

// dayArg formats a day (days since 1970-01-01) as 'YYYY-MM-DD', which
// ClickHouse compares with a Date column. (18.16 refuses to compare a
// Date with a number.)
func dayArg(day int64) string { return dayTime(day).Format("2006-01-02") }

// clampDays narrows [from, to] to the days a Date holds; ok is false when
// nothing is left.
func clampDays(from, to int64) (lo, hi int64, ok bool) {
	lo, hi = max(from, minDay), min(to, maxDay)
	return lo, hi, lo <= hi
}

// dailyQuery returns Daily's query for f: the daily rollup and the quota
// adjustments of f's days, plan and keys, summed per (day, plan, key), in
// that order. ok is false when no day can match.
func dailyQuery(f usage.Filter) (query string, args []any, ok bool) {
	from, to, ok := clampDays(f.FromDay, f.ToDay)
	if !ok {
		return "", nil, false
	}
	where := "day BETWEEN ? AND ?"
	args = []any{dayArg(from), dayArg(to)}
	if f.PlanID != "" {
		where += " AND plan_id = ?"
		args = append(args, f.PlanID)
	}
	if f.KeyID != "" {
		where += " AND key_id = ?"
		args = append(args, f.KeyID)
	}
	if len(f.KeyIDs) > 0 {
		// Written into the text, quoted, as batchWatermarkQuery's keys: a
		// page of GetUsage, at most 500.
		var b strings.Builder
		b.WriteString(" AND key_id IN (")
		for i, k := range f.KeyIDs {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quote(k))
		}
		b.WriteString(")")
		where += b.String()
	}
	return dayCountsSQL(where, where), append(args, args...), true
}

// quotaUsageQuery returns QuotaUsage's query: from day fromDay on, the
// admitted requests of the partitions' rows of usage_daily per (day,
// plan, key, node), and the quota adjustments (node ”) of the keys those
// partitions' rows name, on any day: adjustments carry no partition, and
// a key's events all go to one partition.
func quotaUsageQuery(partitions []int, fromDay int64) (query string, args []any, ok bool) {
	from, _, ok := clampDays(fromDay, maxDay)
	if !ok || len(partitions) == 0 {
		return "", nil, false
	}
	in := inList(partitions)
	return `SELECT toUInt16(day), plan_id, key_id, node, sum(admitted), sum(adjustment) FROM (
	SELECT day, plan_id, key_id, node, admitted, toInt64(0) AS adjustment FROM usage_daily
	WHERE day >= ? AND src_partition IN (` + in + `) AND admitted != 0
	UNION ALL
	SELECT day, plan_id, key_id, '' AS node, toInt64(0) AS admitted, delta AS adjustment FROM quota_adjustments
	WHERE day >= ? AND key_id IN (SELECT key_id FROM usage_daily WHERE src_partition IN (` + in + `))
)
GROUP BY day, plan_id, key_id, node
ORDER BY day, plan_id, key_id, node`, []any{dayArg(from), dayArg(from)}, true
}

// dayCountsSQL sums usage_daily rows matching dailyWhere and
// quota_adjustments rows matching adjustWhere per (day, plan, key), in
// that order, without usage_daily's marker rows (plan and key empty).
// The sums are at query time: SummingMergeTree merges eventually. The day is
// read as a number: a Date read as time.Time is in the server's time
// zone.
func dayCountsSQL(dailyWhere, adjustWhere string) string {
	return `SELECT toUInt16(day), plan_id, key_id, sum(admitted), sum(rejected), sum(adjustment) FROM (
	SELECT day, plan_id, key_id, admitted, rejected, toInt64(0) AS adjustment FROM usage_daily WHERE (plan_id != '' OR key_id != '') AND ` + dailyWhere + `
	UNION ALL
	SELECT day, plan_id, key_id, toInt64(0) AS admitted, toInt64(0) AS rejected, delta AS adjustment FROM quota_adjustments WHERE ` + adjustWhere + `
)
GROUP BY day, plan_id, key_id
ORDER BY day, plan_id, key_id`
}

// minutesQuery returns EachMinute's query: the minute rollup of
// [fromMinute, toMinute) summed per minute and dimensions, in the order
// of the table's key (minute first). The day condition prunes months.
func minutesQuery(fromMinute, toMinute int64) (query string, args []any, ok bool) {
	fromMinute = max(fromMinute, 0) // below: the tables' marker rows
	if fromMinute >= toMinute {
		return "", nil, false
	}
	from, to, ok := clampDays(utc.FloorDiv(fromMinute, 24*60), utc.FloorDiv(toMinute-1, 24*60))
	if !ok {
		return "", nil, false
	}
	const dims = "minute, key_id, plan_id, api_id, stage, method, resource, status, decision"
	return `SELECT ` + dims + `, sum(requests), sum(bytes_in), sum(bytes_out), sum(latency_us_sum)
FROM usage_minute
WHERE day BETWEEN ? AND ? AND minute >= ? AND minute < ?
GROUP BY ` + dims + `
ORDER BY ` + dims, []any{dayArg(from), dayArg(to), fromMinute, toMinute}, true
}

// eventsQuery returns Events' query: at most limit raw events with
// time_ns in [from, to), by time then id.
func eventsQuery(from, to int64, limit int) (query string, args []any, ok bool) {
	if limit <= 0 || from >= to {
		return "", nil, false
	}
	dfrom, dto, ok := clampDays(utc.Day(from), utc.Day(to-1))
	if !ok {
		return "", nil, false
	}
	return `SELECT id, time_ns, api_id, stage, key_id, plan_id, method, resource, status, decision, latency_us, bytes_in, bytes_out, requests, node, key_fingerprint
FROM usage_events
WHERE day BETWEEN ? AND ? AND time_ns >= ? AND time_ns < ? AND time_ns != -9223372036854775808
ORDER BY time_ns, id
LIMIT ` + strconv.Itoa(limit), []any{dayArg(dfrom), dayArg(dto), from, to}, true
}

const adjustSQL = `INSERT INTO quota_adjustments (day, plan_id, key_id, delta, updates)`

// rawPartitionsSQL lists the partitions of usage_events that hold data.
const rawPartitionsSQL = `SELECT DISTINCT partition_id FROM system.parts
WHERE database = currentDatabase() AND table = 'usage_events' AND active
ORDER BY partition_id`

// dropPartitionSQL drops one partition of usage_events by its id (the
// day as YYYYMMDD, checked by the caller).
func dropPartitionSQL(id string) string {
	return "ALTER TABLE usage_events DROP PARTITION ID '" + id + "'"
}

// batchRawMarksQuery returns rawMarksSQL for b's partition and days.
// ok is false for a batch without events.
func batchRawMarksQuery(b *Batch) (query string, args []any, ok bool) {
	if len(b.Events) == 0 {
		return "", nil, false
	}
	lo, hi := b.Events[0].Day(), b.Events[0].Day()
	for i := range b.Events {
		d := b.Events[i].Day()
		lo, hi = min(lo, d), max(hi, d)
	}
	return `SELECT toUInt8(0), src_partition, toUInt32(toUInt16(day)) AS d, maxIf(src_offset + 1, batch_end = 1) - 1, max(src_offset)
FROM usage_events WHERE ` + rawMarkerCond + ` AND src_partition = ` + strconv.Itoa(b.Partition) + ` AND day BETWEEN ? AND ?
GROUP BY src_partition, d`, []any{dayArg(lo), dayArg(hi)}, true
}

// stringQuoter escapes a ClickHouse string literal's body (as
// clickhouse-go does for bound strings).
var stringQuoter = strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`)

// quote returns s as a ClickHouse string literal.
func quote(s string) string { return "'" + stringQuoter.Replace(s) + "'" }
