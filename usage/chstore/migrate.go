package chstore

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// A migration is one DDL statement (clickhouse-go runs one per call).
// ClickHouse has no transactional DDL: a migration and the row recording
// it are two statements, so a process that stops between them runs the
// migration again next time. Every statement must therefore be idempotent
// (IF NOT EXISTS), or come with a done query that tells whether its change
// is there already (18.16 has no ADD COLUMN IF NOT EXISTS). Never edit a
// released migration: append a new one.
type migration struct {
	version uint32
	name    string
	sql     string
	// done, if set, returns one UInt64, nonzero when the change is made
	// already: the statement is then skipped and only recorded.
	done string
	// then are statements run after sql, in order, before the migration
	// is recorded; a migration cut short runs them all again, so each
	// must be idempotent together with the ones before it (a copy starts
	// with a TRUNCATE of its target).
	then []string
}

// migrationsTable records the migrations applied: one row per migration
// and run (two processes migrating at once may both record one; readers
// take distinct versions). Its ORDER BY is its only query's.
const migrationsTable = `CREATE TABLE IF NOT EXISTS tollgate_migrations (
	version    UInt32,
	name       String,
	applied_at DateTime
) ENGINE = MergeTree ORDER BY version`

// Columns are written in the order of the ORDER BY keys, then the rest:
// nothing depends on it (every INSERT names its columns), it only makes
// SHOW CREATE TABLE read like the sort order.
var migrations = []migration{
	// usage_events: one row per event, for drill-down and restatement;
	// reports read the rollups.
	//
	// PARTITION BY the UTC day: retention (DropRawBefore) drops whole
	// days, a metadata operation that rewrites nothing, and a query on a
	// time range reads only its days' partitions. A day, not a month: a
	// raw table at 100k events/s holds ~8.6e9 rows a day, and a month per
	// partition would make retention 30 days coarse. (Many partitions
	// cost parts and files; ~one per day kept is fine.)
	//
	// ORDER BY (key_id, time_ns): drill-down names a key ("what did key K
	// do between t1 and t2"), so the primary index narrows each day to
	// that key's granules, and its events are in time order there. Key
	// first also compresses well: a key's rows repeat plan, API, stage.
	// A query by time alone (Events) reads its days' partitions whole;
	// it is the rarer query, and bounded by the day pruning.
	//
	// src_partition, src_offset: the events topic's partition and the
	// last offset of the batch (run, see InsertBatch) the row was written
	// in. kafka_offset is the event's own record. (Watermarks read
	// max(src_offset) per src_partition here until migration 14; they
	// now read the table's marker rows.)
	{1, "usage_events", `CREATE TABLE IF NOT EXISTS usage_events (
	day           Date,
	key_id        String,
	time_ns       Int64,
	id            FixedString(16),
	plan_id       String,
	api_id        String,
	stage         String,
	method        String,
	resource      String,
	status        Int32,
	decision      UInt8,
	latency_us    Int64,
	bytes_in      Int64,
	bytes_out     Int64,
	node          String,
	kafka_offset  Int64,
	src_partition UInt16,
	src_offset    Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(day)
ORDER BY (key_id, time_ns)`, "", nil},

	// (Migrations 2 and 3 are the first rollups, replaced by 7 and 10:
	// their sort keys end in src_offset, so their rows never merged.)
	//
	// usage_minute: the per-minute rollup /v1/usage reads, with the
	// dimensions and sums of sqlitestore's usage_minute. minute is Unix
	// minutes (Int64, as in sqlitestore); day is the minute's UTC day,
	// there only to partition by (DateTime is not used: 18.16 has no
	// DateTime64, and its DateTime's time zone handling differs from
	// current releases').
	//
	// ORDER BY minute, then the dimensions as sqlitestore's primary key:
	// every query is a minute range, one range of the index, and
	// EachMinute's order is this key's prefix. src_partition, src_offset
	// end the key, so rows of different batches never merge: a merge
	// sums only rows of one batch, and max(src_offset) per partition stays
	// exact (the effectively-once design in the package doc). The price:
	// the table keeps one row per (minute, dimensions) per batch, not per
	// minute; queries sum at query time (as they must anyway: merges are
	// eventual).
	//
	// PARTITION BY month: a minute range reads only its months, and old
	// months can be dropped whole if retention of this rollup is wanted.
	// A batch writes one part per partition it touches, which is why
	// InsertBatch splits a batch at month boundaries.
	{2, "usage_minute", `CREATE TABLE IF NOT EXISTS usage_minute (
	day            Date,
	minute         Int64,
	key_id         String,
	plan_id        String,
	api_id         String,
	stage          String,
	method         String,
	resource       String,
	status         Int32,
	decision       UInt8,
	src_partition  UInt16,
	src_offset     Int64,
	requests       Int64,
	bytes_in       Int64,
	bytes_out      Int64,
	latency_us_sum Int64
) ENGINE = SummingMergeTree((requests, bytes_in, bytes_out, latency_us_sum))
PARTITION BY toYYYYMM(day)
ORDER BY (minute, key_id, plan_id, api_id, stage, method, resource, status, decision, src_partition, src_offset)`, "", nil},

	// usage_daily: per (UTC day, plan, key, enforcer node), what
	// GetUsage, billing and the quota restore read; admitted counts
	// Decision allowed, rejected every other decision. Events with
	// neither plan nor key count in usage_minute only, as in sqlitestore.
	// node (UsageEvent.Node) is there for the quota authority, which
	// restores admitted requests per enforcer (QuotaUsage); reports sum
	// it away.
	//
	// ORDER BY (day, plan_id, key_id, node): every query is a day range,
	// often of one plan (GetUsage names a usage plan) and key; the key
	// order is the report's order. node after them: no report filters on
	// it. src_partition, src_offset end the key for the same reason as in
	// usage_minute. PARTITION BY month, as usage_minute.
	{3, "usage_daily", `CREATE TABLE IF NOT EXISTS usage_daily (
	day           Date,
	plan_id       String,
	key_id        String,
	node          String,
	src_partition UInt16,
	src_offset    Int64,
	admitted      Int64,
	rejected      Int64
) ENGINE = SummingMergeTree((admitted, rejected))
PARTITION BY toYYYYMM(day)
ORDER BY (day, plan_id, key_id, node, src_partition, src_offset)`, "", nil},

	// quota_adjustments: UpdateUsage's changes of the quota used, per
	// (UTC day, plan, key), added to usage_daily's admitted by the quota
	// restore and reported as Adjustment. Same ORDER BY as usage_daily,
	// whose queries it joins. No partitions: a row per admin action,
	// kept as long as the rollups.
	//
	// updates counts the AdjustQuota calls summed in a row. It is there
	// because SummingMergeTree deletes a row whose summed columns are all
	// zero: deltas that cancel out (+5, -5) would make the row vanish at
	// some merge, and Daily would answer differently before and after it
	// (sqlitestore keeps the row).
	{4, "quota_adjustments", `CREATE TABLE IF NOT EXISTS quota_adjustments (
	day     Date,
	plan_id String,
	key_id  String,
	delta   Int64,
	updates Int64
) ENGINE = SummingMergeTree((delta, updates))
ORDER BY (day, plan_id, key_id)`, "", nil},

	// usage_events.requests: how many requests the event stands for
	// (schemas.UsageEvent.Requests(); the enforcer counts requests
	// rejected before a key was identified per minute and sends one
	// event for many). DEFAULT 1: every row written before this
	// migration was one request, and reads it as such without a
	// rewrite (ClickHouse fills a new column's default in at read time
	// for parts that lack it). The rollups already hold requests, not
	// events: their columns do not change.
	{5, "usage_events_requests", `ALTER TABLE usage_events ADD COLUMN requests UInt32 DEFAULT 1 AFTER bytes_out`,
		`SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = 'usage_events' AND name = 'requests'`, nil},

	// Migrations 6-13 make the rollups roll up. Before them, src_partition
	// and src_offset ended the rollups' sort keys, so rows of different
	// batches never merged: at a few requests per key and minute the
	// minute "rollup" held about a row per event. Now rows of one
	// (bucket, dimensions) merge whatever batch wrote them, and what a
	// table holds of each topic partition is kept in marker rows of the
	// table itself, written in the same INSERT as the rows they account
	// for (the package doc, "Effectively-once writes"). usage_hour and
	// usage_day, new, answer reports over whole hours and days.

	// usage_events.batch_end: 1 on the rows of a batch's last INSERT
	// into the table. A batch whose events fall in several days is one
	// INSERT per day, and only the last says the batch is whole. DEFAULT
	// 1: every INSERT before this migration made its batch (or run)
	// whole up to its tag.
	{6, "usage_events_batch_end", `ALTER TABLE usage_events ADD COLUMN batch_end UInt8 DEFAULT 1 AFTER src_offset`,
		`SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = 'usage_events' AND name = 'batch_end'`, nil},

	// The new usage_minute, under a temporary name until migration 12
	// swaps it in. The dimensions and sums of the old one; src_partition
	// ends the sort key but src_offset is gone: a key's events all go to
	// one partition of the topic, so src_partition splits no rows. done
	// is zero on every data row; marker rows (minute < 0, where no report
	// reads) carry it. ORDER BY minute first and PARTITION BY month, for
	// the reasons migration 2 gives.
	{7, "usage_minute_next", rollupTableSQL("usage_minute_next"), "", nil},

	// usage_hour and usage_day: usage_minute summed per UTC hour and per
	// UTC day, same columns, minute the bucket's first minute, so that a
	// report's SQL is the same on any of the three. A report over whole
	// hours (days) reads them: a month of a key is 744 (31) rows, not
	// 44,640.
	{8, "usage_hour", rollupTableSQL("usage_hour"), "", nil},
	{9, "usage_day", rollupTableSQL("usage_day"), "", nil},

	// The new usage_daily. ORDER BY plan, key, day: GetUsage, its main
	// reader, names a plan and a page of keys; and the marker rows (plan
	// and key empty, which no data row is: events with neither count in
	// the minute tables only) come first. node is the marker's tag:
	// empty for the partition's progress, the batch's last offset for a
	// batch written in part.
	{10, "usage_daily_next", `CREATE TABLE IF NOT EXISTS usage_daily_next (
	plan_id       String,
	key_id        String,
	day           Date,
	node          String,
	src_partition UInt16,
	admitted      Int64,
	rejected      Int64,
	done          Int64
) ENGINE = SummingMergeTree((admitted, rejected, done))
PARTITION BY toYYYYMM(day)
ORDER BY (plan_id, key_id, day, node, src_partition)`, "", nil},

	// The old rollups' rows, copied summed (the batches' rows merged), and
	// per topic partition a marker saying the tables hold it up to the
	// old watermark (max(src_offset)), exact under the old design. The
	// copy starts with TRUNCATEs so that a run cut short runs whole again.
	// Stop the aggregators before migrating: rows they wrote to the old
	// tables after the copy would be dropped with them (migration 13).
	{11, "rollups_copy", "TRUNCATE TABLE usage_minute_next", "", []string{
		"TRUNCATE TABLE usage_hour",
		"TRUNCATE TABLE usage_day",
		"TRUNCATE TABLE usage_daily_next",
		copyMinutesSQL("usage_minute_next", "minute"),
		copyMinutesSQL("usage_hour", "intDiv(minute, 60) * 60"),
		copyMinutesSQL("usage_day", "intDiv(minute, 1440) * 1440"),
		copyMinuteMarkersSQL("usage_minute_next"),
		copyMinuteMarkersSQL("usage_hour"),
		copyMinuteMarkersSQL("usage_day"),
		`INSERT INTO usage_daily_next (plan_id, key_id, day, node, src_partition, admitted, rejected)
SELECT plan_id, key_id, day, node, src_partition, sum(admitted), sum(rejected) FROM usage_daily
GROUP BY plan_id, key_id, day, node, src_partition`,
		`INSERT INTO usage_daily_next (plan_id, key_id, day, node, src_partition, done)
SELECT '', '', toStartOfMonth(max(day)), '', src_partition, max(src_offset) + 1 FROM usage_daily GROUP BY src_partition`,
	}},
	{12, "rollups_swap", `RENAME TABLE usage_minute TO usage_minute_v1, usage_minute_next TO usage_minute, usage_daily TO usage_daily_v1, usage_daily_next TO usage_daily`,
		`SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'usage_minute_v1'`, nil},
	{13, "rollups_v1_drop", `DROP TABLE IF EXISTS usage_minute_v1`, "", []string{`DROP TABLE IF EXISTS usage_daily_v1`}},

	// usage_events' marker rows for what older programs wrote: one per
	// (partition, day) at its highest src_offset, batch_end 1 (every old
	// INSERT made its run whole up to its tag). Watermarks reads markers
	// only (key empty and time_ns MinInt64: the first rows of every part),
	// where it used to scan the table's offsets whole. Run twice, it
	// writes the same maxima again, which changes nothing.
	{14, "usage_events_markers", `INSERT INTO usage_events (day, key_id, time_ns, kafka_offset, src_partition, src_offset, batch_end, requests)
SELECT day, '', toInt64(-9223372036854775808), toInt64(-1), src_partition, max(src_offset), toUInt8(1), toUInt32(0) FROM usage_events
WHERE NOT (key_id = '' AND time_ns = -9223372036854775808) GROUP BY src_partition, day`, "", nil},

	// usage_key_day: usage_day summed over method, resource and status,
	// which are always empty here (the columns are kept so that one
	// INSERT and one report SQL serve every rollup; constant, they cost
	// nothing stored). What billing, top and /v1/usage by key, plan, API,
	// stage or decision per day or month read: at 10,000 keys a month of
	// usage_day is 3.7M rows, a dozen per key and day.
	{15, "usage_key_day", rollupTableSQL("usage_key_day"), "", nil},
	// Filled from usage_day, with its markers (copied as they are: their
	// sums and part-way tags say the same of the copy).
	{16, "usage_key_day_fill", "TRUNCATE TABLE usage_key_day", "", []string{
		`INSERT INTO usage_key_day (day, minute, key_id, plan_id, api_id, stage, decision, src_partition, requests, bytes_in, bytes_out, latency_us_sum)
SELECT day, minute, key_id, plan_id, api_id, stage, decision, src_partition, sum(requests), sum(bytes_in), sum(bytes_out), sum(latency_us_sum)
FROM usage_day WHERE minute >= 0 GROUP BY day, minute, key_id, plan_id, api_id, stage, decision, src_partition`,
		`INSERT INTO usage_key_day (day, minute, src_partition, done) SELECT day, minute, src_partition, done FROM usage_day WHERE minute < 0`,
	}},

	// usage_minute ordered by day, then key, then minute: one key's
	// minutes of a day (the drill-down "what did this key do today") are
	// one range of the index, where minute first made them a scan of the
	// day's rows of every key (3.4M rows at 10,000 keys). A report by
	// minute of every key reads whole days instead of its minutes (at
	// most a day: the range a minute report may have). The marker rows
	// (key empty, minute < 0) open each day's key range. Rebuilt as
	// migrations 7-13 did: a copy, a swap, a drop.
	{17, "usage_minute_by_key", `CREATE TABLE IF NOT EXISTS usage_minute_next (
	day            Date,
	minute         Int64,
	key_id         String,
	plan_id        String,
	api_id         String,
	stage          String,
	method         String,
	resource       String,
	status         Int32,
	decision       UInt8,
	src_partition  UInt16,
	requests       Int64,
	bytes_in       Int64,
	bytes_out      Int64,
	latency_us_sum Int64,
	done           Int64
) ENGINE = SummingMergeTree((requests, bytes_in, bytes_out, latency_us_sum, done))
PARTITION BY toYYYYMM(day)
ORDER BY (day, key_id, minute, plan_id, api_id, stage, method, resource, status, decision, src_partition)`, "", nil},
	{18, "usage_minute_by_key_copy", "TRUNCATE TABLE usage_minute_next", "", []string{
		`INSERT INTO usage_minute_next (day, minute, key_id, plan_id, api_id, stage, method, resource, status, decision, src_partition, requests, bytes_in, bytes_out, latency_us_sum, done)
SELECT day, minute, key_id, plan_id, api_id, stage, method, resource, status, decision, src_partition, requests, bytes_in, bytes_out, latency_us_sum, done FROM usage_minute`,
	}},
	{19, "usage_minute_by_key_swap", `RENAME TABLE usage_minute TO usage_minute_v2, usage_minute_next TO usage_minute`,
		`SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'usage_minute_v2'`, nil},
	{20, "usage_minute_v2_drop", `DROP TABLE IF EXISTS usage_minute_v2`, "", nil},

	// usage_events.key_fingerprint: which of a key's values a request
	// showed (UsageEvent.KeyFingerprint), for the drill-down of a key
	// during a rotation. Raw events only: the rollups count requests per
	// key, whichever value they came with. DEFAULT '': rows from before
	// it carry none (ClickHouse fills it in at read time, rewriting
	// nothing).
	{21, "usage_events_key_fingerprint", `ALTER TABLE usage_events ADD COLUMN key_fingerprint String DEFAULT '' AFTER node`,
		`SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = 'usage_events' AND name = 'key_fingerprint'`, nil},

	// lost_usage: the lost-usage topic's records (schemas.LostUsage,
	// requests an enforcer dropped the events of), one row per record,
	// written by every aggregator (lost.go). day is the UTC day the loss
	// counts on (of to_ns, else from_ns, else the record's timestamp);
	// from_ns and to_ns are the record's, Unix nanoseconds as usage_events'
	// time_ns (18.16 has no DateTime64); 0 when the record has none.
	//
	// ORDER BY (src_partition, src_offset), the record's place in the
	// topic, and ReplacingMergeTree: a record is its offset, so copies of
	// it (an insert retried after a lost reply; every aggregator of the
	// group reads the whole topic and inserts what it read) have one sort
	// key and merge into one row. Merges are eventual, so reads do not
	// rely on them: Lost sums one row per (src_partition, src_offset)
	// (any(), the copies being equal), which is exact before any merge and
	// needs no FINAL; LostOffsets reads max(src_offset), which copies do
	// not change. The sort key also makes LostOffsets a read of the index.
	//
	// No PARTITION BY: an INSERT is then one part, written whole or not
	// at all, so a batch of records is stored whole or not at all, and
	// max(src_offset) + 1 is where a reader resumes without a gap (with
	// months as partitions, a batch of records dated in two months would
	// be two parts, and a stop between them could leave the later offsets
	// stored and the earlier ones not). Losses are rare and a row covers
	// many requests: the table stays small, and a day range is a scan of
	// it. requests 0 marks a record that went to the dead-letter topic
	// (its offset is read; no report shows it).
	{22, "lost_usage", `CREATE TABLE IF NOT EXISTS lost_usage (
	src_partition UInt16,
	src_offset    Int64,
	day           Date,
	node          String,
	key_id        String,
	plan_id       String,
	api_id        String,
	stage         String,
	reason        String,
	requests      UInt64,
	admitted      UInt64,
	from_ns       Int64,
	to_ns         Int64
) ENGINE = ReplacingMergeTree
ORDER BY (src_partition, src_offset)`, "", nil},
}

// rollupTableSQL is the DDL of usage_minute (migration 7), usage_hour
// and usage_day, which differ only in their names. Released: never
// change it; a new shape is a new migration.
func rollupTableSQL(name string) string {
	return `CREATE TABLE IF NOT EXISTS ` + name + ` (
	day            Date,
	minute         Int64,
	key_id         String,
	plan_id        String,
	api_id         String,
	stage          String,
	method         String,
	resource       String,
	status         Int32,
	decision       UInt8,
	src_partition  UInt16,
	requests       Int64,
	bytes_in       Int64,
	bytes_out      Int64,
	latency_us_sum Int64,
	done           Int64
) ENGINE = SummingMergeTree((requests, bytes_in, bytes_out, latency_us_sum, done))
PARTITION BY toYYYYMM(day)
ORDER BY (minute, key_id, plan_id, api_id, stage, method, resource, status, decision, src_partition)`
}

// copyMinutesSQL copies the old usage_minute into table, summed per
// bucket (the minute expression) and dimensions.
func copyMinutesSQL(table, bucket string) string {
	const dims = "key_id, plan_id, api_id, stage, method, resource, status, decision, src_partition"
	return `INSERT INTO ` + table + ` (day, minute, ` + dims + `, requests, bytes_in, bytes_out, latency_us_sum)
SELECT day, ` + bucket + ` AS b, ` + dims + `, sum(requests), sum(bytes_in), sum(bytes_out), sum(latency_us_sum)
FROM usage_minute GROUP BY day, b, ` + dims
}

// copyMinuteMarkersSQL writes table's progress markers from the old
// usage_minute's watermarks.
func copyMinuteMarkersSQL(table string) string {
	return `INSERT INTO ` + table + ` (day, minute, src_partition, done)
SELECT toStartOfMonth(max(day)), toInt64(-1), src_partition, max(src_offset) + 1 FROM usage_minute GROUP BY src_partition`
}

// Migrate creates the migrations table if needed and applies, in order,
// the migrations it does not record, recording each. It returns the names
// of those it applied: none when the database is up to date. It fails if
// the database records a migration this program does not know (a newer
// program migrated it).
func Migrate(ctx context.Context, conn driver.Conn) (applied []string, err error) {
	return migrateWith(ctx, conn, migrations)
}

// migrateWith is Migrate with the given list of migrations (tests apply a
// prefix of them to build an older schema).
func migrateWith(ctx context.Context, conn driver.Conn, migrations []migration) (applied []string, err error) {
	if err := conn.Exec(ctx, migrationsTable); err != nil {
		return nil, fmt.Errorf("migrate: create tollgate_migrations: %w", err)
	}
	done, err := appliedVersions(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	for v := range done {
		if int(v) > len(migrations) {
			return nil, fmt.Errorf("migrate: the database has migration %d, newer than this program's %d", v, len(migrations))
		}
	}
	for _, m := range migrations {
		if done[m.version] {
			continue
		}
		made := uint64(0)
		if m.done != "" {
			if err := conn.QueryRow(ctx, m.done).Scan(&made); err != nil {
				return applied, fmt.Errorf("migrate: %d %s: check whether it is made: %w", m.version, m.name, err)
			}
		}
		if made == 0 {
			for _, q := range append([]string{m.sql}, m.then...) {
				if err := conn.Exec(ctx, q); err != nil {
					return applied, fmt.Errorf("migrate: %d %s: %w", m.version, m.name, err)
				}
			}
		}
		if err := conn.Exec(ctx, recordMigrationSQL, m.version, m.name); err != nil {
			return applied, fmt.Errorf("migrate: record %d %s: %w", m.version, m.name, err)
		}
		applied = append(applied, migrationName(m))
	}
	return applied, nil
}

// recordMigrationSQL takes applied_at from the server's clock.
const recordMigrationSQL = `INSERT INTO tollgate_migrations (version, name, applied_at) SELECT toUInt32(?), ?, now()`

func migrationName(m migration) string { return fmt.Sprintf("%04d_%s", m.version, m.name) }

// appliedVersions returns the versions tollgate_migrations records.
func appliedVersions(ctx context.Context, conn driver.Conn) (map[uint32]bool, error) {
	rows, err := conn.Query(ctx, `SELECT DISTINCT version FROM tollgate_migrations`)
	if err != nil {
		return nil, fmt.Errorf("read tollgate_migrations: %w", err)
	}
	defer rows.Close()
	done := map[uint32]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read tollgate_migrations: %w", err)
		}
		done[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read tollgate_migrations: %w", err)
	}
	return done, nil
}
