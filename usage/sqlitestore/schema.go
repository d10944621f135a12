package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"

	"github.com/tollgate/tollgate/schemas"
)

// migrations are applied in order; the database's PRAGMA user_version is the
// number already applied. Never edit a released migration: append a new one.
var migrations = []string{
	// 1: raw events in batches, the per-minute and the daily rollups.
	`
-- Raw events, kept for drill-down only (reports read the rollups below): one
-- row per InsertEvents batch, its events packed in one BLOB (layout in
-- codec.go). A row per event cost ~4.5us of CPU per event (13 bound values,
-- two B-trees); a row per batch is a handful of B-tree inserts per 100-4096
-- events, and ~34 bytes per event on disk instead of ~134.
CREATE TABLE usage_event_batches (
	-- The batch's first EventID, 16 bytes: the idempotency key. Dedup is per
	-- batch, not per event: the drainer offers a batch that failed again
	-- unchanged, so a repeat carries the same first id, and InsertEvents
	-- (INSERT OR IGNORE) then writes nothing of it, rollups included. That
	-- suffices in one process: the queue hands each event to exactly one
	-- batch, so an event never reaches the store in two different batches.
	-- A source that may regroup events (a Kafka consumer replaying after a
	-- rebalance) must dedup events before batching them for this store.
	first_id BLOB    NOT NULL PRIMARY KEY,
	min_time INTEGER NOT NULL, -- Unix nanoseconds of the batch's earliest event
	max_time INTEGER NOT NULL, -- and of its latest: events are in the order requests ended, not began
	n        INTEGER NOT NULL, -- events in the batch; the decoder checks the BLOB against it
	-- Last: the columns before it stay in the row's first page, so a range
	-- query that skips a batch never reads the BLOB's overflow pages.
	events   BLOB    NOT NULL
-- A rowid table, not WITHOUT ROWID: rows are kilobytes, and a WITHOUT ROWID
-- table's interior pages hold rows too, a few per page, which makes the tree
-- deep (SQLite advises it for rows under 1/20 of a page). The extra B-tree
-- for first_id costs one insert per batch.
) STRICT;

-- Events reads the batches overlapping [from, to): min_time in
-- [from - widest span, to) and max_time >= from. min_time first because it
-- bounds the scan on both sides, where max_time >= from alone would scan
-- every later batch for an old range. max_time is in the index so that
-- batches ending before from are skipped without reading their rows; the
-- order by min_time also lets Events stop early once it has limit events.
CREATE INDEX usage_event_batches_time ON usage_event_batches (min_time, max_time);

-- The widest batch span (max_time - min_time) is the lower bound above:
-- max() reads it from the end of this index instead of scanning the table.
-- Spans are short (the drainer cuts a batch every ~200ms) unless a batch
-- holds a long request; one wide batch only widens the index scan, and
-- deleting it (retention) narrows it again, which a stored maximum would not.
CREATE INDEX usage_event_batches_span ON usage_event_batches (max_time - min_time);

-- One row per (minute, dimensions), incremented as batches are inserted:
-- what the native usage API reads. Every event counts, also those with no
-- key or plan (rejected before a key or plan was found), so that rejections
-- show up in the reports.
CREATE TABLE usage_minute (
	minute         INTEGER NOT NULL, -- Unix minutes: floor(time / 60e9)
	key_id         TEXT    NOT NULL,
	plan_id        TEXT    NOT NULL,
	api_id         TEXT    NOT NULL,
	stage          TEXT    NOT NULL,
	method         TEXT    NOT NULL,
	resource       TEXT    NOT NULL,
	status         INTEGER NOT NULL,
	decision       INTEGER NOT NULL, -- schemas.Decision as its number, as in usage_daily
	requests       INTEGER NOT NULL,
	bytes_in       INTEGER NOT NULL,
	bytes_out      INTEGER NOT NULL,
	latency_us_sum INTEGER NOT NULL, -- average latency = latency_us_sum / requests
	-- minute first: every query is a time range, which this makes one range
	-- scan, filters on the other columns applied to the few rows per minute.
	-- It also keeps writes local: a batch only touches its last minute or
	-- two, at the right edge of the B-tree, so a commit writes a few pages
	-- (a key-first order would touch one page per key, all over the file).
	-- Then the dimensions from the most queried to the least: per key (what
	-- a customer used; GetUsage's shape), per plan, per API and stage, then
	-- the drill-down ones. A grouping by a prefix of this list (minute;
	-- minute and key; ...) reads rows already in order and needs no sort.
	-- A filter by key over a long range still reads every row of the
	-- range; an index on (key_id, minute) would serve it, for one more
	-- B-tree write per row and batch, if reports come to need it.
	PRIMARY KEY (minute, key_id, plan_id, api_id, stage, method, resource, status, decision)
-- WITHOUT ROWID: small rows always reached by their key; one B-tree, not two.
) STRICT, WITHOUT ROWID;

-- One row per (UTC day, plan, key), incremented as batches are inserted:
-- GetUsage and the quota restore on start read it. Events with neither a
-- plan nor a key count in usage_minute only.
CREATE TABLE usage_daily (
	day      INTEGER NOT NULL, -- days since 1970-01-01 UTC
	plan_id  TEXT    NOT NULL,
	key_id   TEXT    NOT NULL,
	admitted INTEGER NOT NULL, -- Decision == allowed
	rejected INTEGER NOT NULL, -- every other decision
	-- Day first: every query is a day range, and key order is report order, so Daily never sorts.
	PRIMARY KEY (day, plan_id, key_id)
-- WITHOUT ROWID: small rows always reached by their key.
) STRICT, WITHOUT ROWID;
`,
	// 2: UpdateUsage's adjustments of remaining quota.
	`
-- One row per (UTC day, plan, key): requests the quota counts that were
-- not made (UpdateUsage lowering or raising what remains), so that a
-- restart restores the adjusted count and GetUsage reports it. Kept apart
-- from usage_daily, which counts requests only.
CREATE TABLE quota_adjustments (
	day     INTEGER NOT NULL,
	plan_id TEXT    NOT NULL,
	key_id  TEXT    NOT NULL,
	delta   INTEGER NOT NULL, -- added to the period's used count
	PRIMARY KEY (day, plan_id, key_id)
) STRICT, WITHOUT ROWID;
`,
	// 3: how far each loader of an external log has read (InsertEventsAt).
	`
-- One row per (source, partition): the offset of the next record to read
-- from a partitioned log the events come from (the Kafka events topic,
-- source "events"). InsertEventsAt writes it in the transaction that adds
-- the events of the records before it, so the events and the position are
-- stored together or not at all: a loader that crashes re-reads exactly
-- the records whose events are not stored. It never goes back: a write
-- whose offset is not past the stored one is refused (a stale writer).
-- How this meets the first-id dedup of usage_event_batches: see
-- InsertEventsAt.
CREATE TABLE source_offsets (
	source      TEXT    NOT NULL,
	partition   INTEGER NOT NULL,
	next_offset INTEGER NOT NULL,
	PRIMARY KEY (source, partition)
-- WITHOUT ROWID: a few small rows always reached by their key.
) STRICT, WITHOUT ROWID;
`,
	// 4: the hour and day rollups reports read over long ranges.
	`
-- usage_minute summed per UTC hour and per UTC day, with the same
-- dimensions: a report by hour, day or month over whole hours or days
-- reads these below their marks (rollup_marks), then finer tables, not
-- every minute (a month of a key's usage is 31 rows of usage_day, not
-- 44,640 of usage_minute). minute is the first minute of the hour or day
-- (Unix minutes), so that a report's query is the same on any table.
--
-- They are rolled up when their hours and days are over, not as batches
-- arrive: a batch's rows fall all over the current hour's and day's part
-- of these B-trees (every key has rows there), and upserting them with
-- every batch cut ingestion from 106k to 32k events/s. So for each table,
-- rollup_marks.until says how far it is complete: every bucket before it
-- holds the sums of usage_minute's rows in it, and no bucket from it on
-- holds anything. The writer advances it in the transaction of a batch
-- whose events have passed the next hour (one GROUP BY of that hour's
-- minute rows; usage_day from usage_hour's rows, once a day), and adds a
-- batch's rows below a mark (late events) to the table directly.
CREATE TABLE usage_hour (
	minute         INTEGER NOT NULL, -- Unix minutes of the hour's start
	key_id         TEXT    NOT NULL,
	plan_id        TEXT    NOT NULL,
	api_id         TEXT    NOT NULL,
	stage          TEXT    NOT NULL,
	method         TEXT    NOT NULL,
	resource       TEXT    NOT NULL,
	status         INTEGER NOT NULL,
	decision       INTEGER NOT NULL,
	requests       INTEGER NOT NULL,
	bytes_in       INTEGER NOT NULL,
	bytes_out      INTEGER NOT NULL,
	latency_us_sum INTEGER NOT NULL,
	PRIMARY KEY (minute, key_id, plan_id, api_id, stage, method, resource, status, decision)
) STRICT, WITHOUT ROWID;

CREATE TABLE usage_day (
	minute         INTEGER NOT NULL, -- Unix minutes of the UTC day's start
	key_id         TEXT    NOT NULL,
	plan_id        TEXT    NOT NULL,
	api_id         TEXT    NOT NULL,
	stage          TEXT    NOT NULL,
	method         TEXT    NOT NULL,
	resource       TEXT    NOT NULL,
	status         INTEGER NOT NULL,
	decision       INTEGER NOT NULL,
	requests       INTEGER NOT NULL,
	bytes_in       INTEGER NOT NULL,
	bytes_out      INTEGER NOT NULL,
	latency_us_sum INTEGER NOT NULL,
	PRIMARY KEY (minute, key_id, plan_id, api_id, stage, method, resource, status, decision)
) STRICT, WITHOUT ROWID;

-- How far each rollup is complete (Unix minutes, exclusive). 0 at first:
-- minutes before 1970 are always added directly; the first batch rolls up
-- what an earlier version stored.
CREATE TABLE rollup_marks (
	tbl   TEXT    NOT NULL PRIMARY KEY,
	until INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO rollup_marks VALUES ('usage_hour', 0), ('usage_day', 0);
`,
	// 5: the per-key day rollup billing, top and day-by-key reports read.
	`
-- usage_day without the drill-down dimensions (method, resource, status):
-- what billing, top and /v1/usage by key, plan, API, stage or decision per
-- day or month read, a few rows per key and day where usage_day has one
-- per combination of method, resource and status. Rolled up from usage_day
-- as days end, with a mark of its own, as usage_day is from usage_hour.
CREATE TABLE usage_key_day (
	minute         INTEGER NOT NULL, -- Unix minutes of the UTC day's start
	key_id         TEXT    NOT NULL,
	plan_id        TEXT    NOT NULL,
	api_id         TEXT    NOT NULL,
	stage          TEXT    NOT NULL,
	decision       INTEGER NOT NULL,
	requests       INTEGER NOT NULL,
	bytes_in       INTEGER NOT NULL,
	bytes_out      INTEGER NOT NULL,
	latency_us_sum INTEGER NOT NULL,
	PRIMARY KEY (minute, key_id, plan_id, api_id, stage, decision)
) STRICT, WITHOUT ROWID;
INSERT INTO rollup_marks VALUES ('usage_key_day', 0);
`,
	// 6: the per-key hour rollup.
	`
-- usage_hour without the drill-down dimensions, as usage_key_day is for
-- days: what /v1/usage by hour reads unless it groups by method, resource
-- or status. Rolled up from usage_hour as hours end, with a mark of its
-- own.
CREATE TABLE usage_key_hour (
	minute         INTEGER NOT NULL, -- Unix minutes of the hour's start
	key_id         TEXT    NOT NULL,
	plan_id        TEXT    NOT NULL,
	api_id         TEXT    NOT NULL,
	stage          TEXT    NOT NULL,
	decision       INTEGER NOT NULL,
	requests       INTEGER NOT NULL,
	bytes_in       INTEGER NOT NULL,
	bytes_out      INTEGER NOT NULL,
	latency_us_sum INTEGER NOT NULL,
	PRIMARY KEY (minute, key_id, plan_id, api_id, stage, decision)
) STRICT, WITHOUT ROWID;
INSERT INTO rollup_marks VALUES ('usage_key_hour', 0);
`,
	// 7: the per-API hour and day rollups.
	`
-- usage_key_hour and usage_key_day without key and plan: per hour or day,
-- API, stage and decision, what /v1/usage reads when it neither groups by
-- nor filters on key or plan (nor groups by method, resource or status):
-- the gateway's totals, by hour over a month (744 hours of a few rows each,
-- where usage_key_hour has a few rows per key and hour: 910k for a month
-- of 1,000 keys), by day or by month. Rolled up from usage_key_hour and
-- usage_key_day as hours and days end, each with a mark of its own, as
-- those are from usage_hour and usage_day, so a mark only lags the one of
-- the table it comes from (api-hour <= key-hour <= hour, api-day <=
-- key-day <= day <= hour); late rows are added to them directly. A
-- database of an earlier version starts with both marks at 0: the batches
-- that follow roll up what it held, a few hours or days a batch.
CREATE TABLE usage_api_hour (
	minute         INTEGER NOT NULL, -- Unix minutes of the hour's start
	api_id         TEXT    NOT NULL,
	stage          TEXT    NOT NULL,
	decision       INTEGER NOT NULL,
	requests       INTEGER NOT NULL,
	bytes_in       INTEGER NOT NULL,
	bytes_out      INTEGER NOT NULL,
	latency_us_sum INTEGER NOT NULL,
	PRIMARY KEY (minute, api_id, stage, decision)
) STRICT, WITHOUT ROWID;

CREATE TABLE usage_api_day (
	minute         INTEGER NOT NULL, -- Unix minutes of the UTC day's start
	api_id         TEXT    NOT NULL,
	stage          TEXT    NOT NULL,
	decision       INTEGER NOT NULL,
	requests       INTEGER NOT NULL,
	bytes_in       INTEGER NOT NULL,
	bytes_out      INTEGER NOT NULL,
	latency_us_sum INTEGER NOT NULL,
	PRIMARY KEY (minute, api_id, stage, decision)
) STRICT, WITHOUT ROWID;
INSERT INTO rollup_marks VALUES ('usage_api_hour', 0), ('usage_api_day', 0);
`,
	// 8: the per-key month totals billing reads.
	`
-- Per UTC calendar month, plan and key: the requests admitted, throttled
-- and refused for the quota. Kept as events arrive, as usage_daily is (an
-- upsert in the batch's transaction: late events included, no mark): a
-- month's billing reads a row per key and plan, where the rollups would
-- have it sum and sort a row per key, plan and day (62,000 rows for a
-- month of 1,000 keys). Plan first, so that a month's rows come by plan
-- and key. A database of an earlier version fills it from usage_minute
-- here, once.
CREATE TABLE usage_key_month (
	month          INTEGER NOT NULL, -- Unix minutes of the month's first instant
	plan_id        TEXT    NOT NULL,
	key_id         TEXT    NOT NULL,
	admitted       INTEGER NOT NULL,
	throttled      INTEGER NOT NULL,
	quota_exceeded INTEGER NOT NULL,
	PRIMARY KEY (month, plan_id, key_id)
) STRICT, WITHOUT ROWID;
INSERT INTO usage_key_month
SELECT CAST(strftime('%s', minute * 60, 'unixepoch', 'start of month') AS INTEGER) / 60, plan_id, key_id,
	sum(CASE decision WHEN ` + strconv.Itoa(int(schemas.DecisionAllowed)) + ` THEN requests ELSE 0 END),
	sum(CASE decision WHEN ` + strconv.Itoa(int(schemas.DecisionThrottled)) + ` THEN requests ELSE 0 END),
	sum(CASE decision WHEN ` + strconv.Itoa(int(schemas.DecisionQuotaExceeded)) + ` THEN requests ELSE 0 END)
FROM usage_minute WHERE plan_id != '' OR key_id != '' GROUP BY 1, 2, 3;
`,
	// 9: usage_daily's refusals by kind, for top consumers of a day.
	`
-- What usage_daily counts as rejected, split as reports name it: the
-- requests throttled and those refused for the quota (the rest are
-- forbidden). A plan's heaviest keys of a day are then its rows of that
-- day, in one pass with a bounded sort, where the rollups would have every
-- key's rows summed and sorted. Filled here from usage_minute, once.
ALTER TABLE usage_daily ADD COLUMN throttled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN quota_exceeded INTEGER NOT NULL DEFAULT 0;
UPDATE usage_daily SET throttled = m.t, quota_exceeded = m.q FROM (
	SELECT (minute - (minute % 1440 + 1440) % 1440) / 1440 AS day, plan_id, key_id,
		sum(CASE decision WHEN ` + strconv.Itoa(int(schemas.DecisionThrottled)) + ` THEN requests ELSE 0 END) AS t,
		sum(CASE decision WHEN ` + strconv.Itoa(int(schemas.DecisionQuotaExceeded)) + ` THEN requests ELSE 0 END) AS q
	FROM usage_minute WHERE plan_id != '' OR key_id != '' GROUP BY 1, 2, 3
) AS m
WHERE usage_daily.day = m.day AND usage_daily.plan_id = m.plan_id AND usage_daily.key_id = m.key_id;
`,
}

// migrate applies the migrations the database lacks, each in its own
// transaction together with the user_version bump, and returns how many it
// applied. BEGIN IMMEDIATE (see dsn) makes the version check and the change
// atomic, so two processes opening the same new file apply each migration
// once.
func migrate(ctx context.Context, db *sql.DB) (applied int, err error) {
	for v := 1; v <= len(migrations); v++ {
		done, err := migrateTo(ctx, db, v)
		if err != nil {
			return applied, fmt.Errorf("migrate schema to version %d: %w", v, err)
		}
		if done {
			applied++
		}
	}
	return applied, nil
}

// migrateTo applies migration v unless the database is already there.
func migrateTo(ctx context.Context, db *sql.DB, v int) (applied bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() // no-op after Commit

	var have int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&have); err != nil {
		return false, err
	}
	if have > len(migrations) {
		return false, fmt.Errorf("database schema version %d is newer than this program's %d", have, len(migrations))
	}
	if have >= v {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
		return false, err
	}
	// user_version lives in the file header, which the transaction covers:
	// the schema change and the version bump commit or roll back together.
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(v)); err != nil {
		return false, err
	}
	return true, tx.Commit()
}
