// Package chstore is the usage store of the distributed mode: ClickHouse,
// through clickhouse-go/v2's native protocol. It holds what
// usage/sqlitestore holds (every usage event, a per-minute rollup and a
// per-(day, plan, key) rollup, the quota adjustments) and answers the same
// reads with the same types (Daily, EachMinute, Report, Events,
// AdjustQuota), so the report API serves either. Report is one GROUP BY
// of the server (time bucket and dimensions, filters in WHERE), streamed. The writer is the aggregator, which
// consumes the events topic and calls InsertBatch per partition, and
// restores its quota counters with QuotaUsage (admitted requests per
// enforcer node, which usage_daily keeps for it).
//
//	st, err := chstore.Open(ctx, "clickhouse://127.0.0.1:9000/default")
//	if err != nil {
//		return err
//	}
//	defer st.Close()
//	if _, err := st.Migrate(ctx); err != nil { // or tollgate migrate clickhouse
//		return err
//	}
//	wms, err := st.Watermarks(ctx, assigned) // on assignment
//	b := &chstore.Batch{Partition: p, Last: last, Offsets: offs, Events: evs}
//	wm, err := st.InsertBatch(ctx, b, wms[p]) // chain wm to the next batch
//	// after an error: wm, err = st.BatchWatermark(ctx, b, wms[p]), then InsertBatch(ctx, b, wm) again
//
// An event may stand for many requests (schemas.UsageEvent.Count: the
// enforcer sends one event per minute for each group of alike requests
// rejected before a key was identified, so that a flood of them costs a
// row per group and minute, not per request). usage_events keeps it in
// requests (migration 5, DEFAULT 1: rows written before it are one request
// each, and read with Count 0), and the rollups add it: usage_minute's
// requests and usage_daily's admitted and rejected count requests, not
// events.
//
// The schema is versioned migrations (migrate.go, with the reasons for
// each table's ORDER BY and partitioning), recorded in tollgate_migrations.
// It keeps to what ClickHouse 18.16 (Debian's, which CI runs) and current
// releases both have: MergeTree and SummingMergeTree with PARTITION BY /
// ORDER BY, Date, no DateTime64, LowCardinality, Nullable or TTL, and
// every INSERT names its columns. Queries sum the rollups at query time
// with GROUP BY: SummingMergeTree merges eventually, if ever.
//
// # Effectively-once writes
//
// Billing counts from these tables, so each event of the topic must be
// counted once, although ClickHouse has no transactions across tables or
// INSERTs, replies can be lost, and the aggregator can stop anywhere. The
// design:
//
//   - Every row carries src_partition (the topic partition) and
//     src_offset (the last offset of the batch that wrote it). In the
//     rollups both end the ORDER BY key, so rows of different batches never
//     merge, and max(src_offset) per partition and table, the table's
//     watermark (Watermarks), is exact whatever merges ran.
//   - InsertBatch writes each table's rows of a batch in ONE INSERT: one
//     block, which ClickHouse applies to a MergeTree whole or not at all,
//     provided its rows fall in one partition of the table. So a table
//     holds either all of a batch's rows or none, and its watermark says
//     which: every event at or below it is in the table, none above.
//   - Tables are written in order raw (usage_events), minute, daily, and a
//     batch is written to a table only past that table's watermark: raw
//     gets the events with offsets above wm.Raw, each rollup the rows
//     aggregated from the events above its own watermark.
//   - The caller commits offsets to Kafka only after InsertBatch returned,
//     and reads Watermarks when it takes a partition, and Watermarks or
//     BatchWatermark (cheaper: it reads only the rows the batch's events
//     would have written) after any error.
//
// The failure cases this covers, each ending in exactly one count:
//
//   - Lost reply: an INSERT was applied but the caller saw an error (a
//     timeout, a cut connection). Watermarks then shows the table at the
//     batch's end; the retried batch skips that table.
//   - Crash between tables (raw written, rollups not; or raw and minute):
//     the watermarks differ per table; the retry writes each table what it
//     lacks, raw nothing, the rollups their rows.
//   - Crash after the inserts, before the offset commit: the restarted
//     consumer reads the batch again; every table's watermark is at or past
//     its records, and nothing is written.
//   - A retry with other batch boundaries (the consumer re-reads from the
//     committed offset and cuts batches where timing puts them, or another
//     aggregator takes the partition after a rebalance): watermarks are
//     offsets, so a retry of any shape writes the events past them.
//   - An INSERT failing halfway (server error, killed connection): the
//     block is atomic, nothing of it is stored.
//   - A batch spanning partitions of a table (raw is partitioned by day,
//     the rollups by month, and ClickHouse writes one part per partition,
//     not atomically across them): InsertBatch splits it into runs of
//     consecutive records of one partition, one INSERT each, in offset
//     order, each tagged with its last event's offset (the last run with the
//     batch's end). A failure between runs leaves the watermark at the last
//     run written, which is again exact. Normally a batch is one run per
//     table; near midnight, events of two days interleave for a moment and a
//     batch takes a few more INSERTs.
//
// What it asks of the caller:
//
//   - One writer per partition at a time: the watermark is read, then
//     written past; two aggregators writing one partition at once would both
//     write the same records. An aggregator stops writing a partition
//     (finishes or abandons its InsertBatch) before it gives the partition
//     up in a rebalance.
//   - The same records give the same events on a retry: the store counts
//     offsets, not event ids. Duplicates of one event at different offsets
//     (producer retries) are the caller's to drop, by event id, before
//     batching; its window of ids must hold across its restarts for copies
//     that straddle a restart.
//   - Events the store cannot hold (CheckEvent: a time outside 1970-2105)
//     go to the dead-letter topic: InsertBatch refuses a batch with one
//     (ErrInvalidBatch), which would otherwise block the partition.
//
// Not covered: AdjustQuota is a plain INSERT, counted twice if retried
// after a lost reply; and the store offers no switch to turn the above
// off (a negative control lives in the caller, e.g. retrying with stale
// watermarks).
//
// The price: the rollups keep a row per (minute or day, dimensions) per
// batch, not per minute or day, since rows of different batches never
// merge. A batch per partition every second or two over few keys is
// small; many keys with few requests each make the rollups approach the
// raw table's row count. And Watermarks scans src_partition and
// src_offset of every table whole (no index orders them): ~0.15-0.45 s
// for 20M raw rows on a 2-vCPU VM, growing with retention.
package chstore
