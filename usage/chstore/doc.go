// Package chstore is the usage store of the distributed mode: ClickHouse,
// through clickhouse-go/v2's native protocol. It holds what
// usage/sqlitestore holds (every usage event; rollups per minute, hour
// and day with every dimension, per day without method, resource and
// status (usage_key_day), and per (day, plan, key, node); the quota
// adjustments) and answers the same reads with the same types (Daily,
// EachMinute, Report, Events, AdjustQuota), so the report API serves
// either. Report is one GROUP BY of the server (time bucket and
// dimensions, filters in WHERE) over the coarsest rollup that answers it,
// streamed. The writer is the aggregator, which consumes the events topic
// and calls InsertBatch per partition, and restores its quota counters
// with QuotaUsage (admitted requests per enforcer node, which usage_daily
// keeps for it). The aggregators also keep the lost-usage topic's records
// (requests an enforcer dropped the events of) in lost_usage (lost.go:
// InsertLost, LostOffsets), which /v1/usage/lost reads (Lost); a record
// is its topic partition and offset, the table's sort key, so a record
// written twice counts once without the watermarks below.
//
//	st, err := chstore.Open(ctx, "clickhouse://127.0.0.1:9000/default")
//	if err != nil {
//		return err
//	}
//	defer st.Close()
//	if _, err := st.Migrate(ctx); err != nil { // or tollgate migrate clickhouse
//		return err
//	}
//	wms, err := st.Watermarks(ctx, assigned) // on assignment; read from wms[p].Covered()+1
//	b := &chstore.Batch{Partition: p, Last: last, Offsets: offs, Events: evs}
//	wm, err := st.InsertBatch(ctx, b, wms[p]) // chain wm to the next batch
//	// after an error: wm, err = st.BatchWatermark(ctx, b, wm), then InsertBatch(ctx, b, wm) again
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
// INSERTs, replies can be lost, and the aggregator can stop anywhere; and
// the rollups must roll up: rows of one (bucket, dimensions) merge into
// one whatever batches wrote them, so a table's size is bounded by keys ×
// buckets × dimension values, not by events or batches
// (TestRollupsRollUp). The design:
//
//   - An INSERT is one block, which ClickHouse applies to a MergeTree
//     whole or not at all when its rows fall in one partition of the
//     table. InsertBatch writes a batch to each table as one INSERT per
//     table partition its events fall in (a UTC day for usage_events, a
//     month for the rollups): one INSERT per table normally, two around
//     midnight (month end) however the events' days alternate.
//   - Each INSERT accounts for itself in the same block. usage_events'
//     rows carry src_partition and src_offset (the batch's last offset),
//     and batch_end, 1 on the rows of the batch's last INSERT into the
//     table; each of its INSERTs also carries a marker row so tagged (key
//     empty, time_ns MinInt64: first in the sort key, where no event
//     sorts). Each rollup INSERT carries one marker row (minute < 0, or
//     plan and key empty in usage_daily, where no report reads): the
//     batch's last INSERT into the table a progress marker whose done
//     column is b.Last minus the table's progress before, the others a
//     part-way marker naming b.Last. SummingMergeTree sums the progress
//     markers per month and partition, and the sum of the advances is
//     the progress + 1, exact after any merges because each advance is
//     written once, computed from an exact watermark. (Keeping offsets in
//     the rollups' sort keys, the first design, was exact too, but rows of
//     two batches never merged: at a few requests per key and minute the
//     minute rollup held a row per event.)
//   - A Watermark says per table up to which offset it holds every event
//     (Done: usage_events' highest src_offset with batch_end 1; the
//     rollups' marker sums) and, per table partition, how far an
//     INSERT of a batch stopped part way went (Ahead). InsertBatch writes
//     to each table only the events it lacks by those.
//   - The caller commits offsets to Kafka only after InsertBatch returned,
//     reads Watermarks when it takes a partition (and reads from
//     Covered()+1), and Watermarks or BatchWatermark after any error.
//
// The failure cases this covers, each ending in exactly one count
// (TestFailuresModel, TestCrashBetweenTables, TestLostReply):
//
//   - Lost reply: an INSERT was applied but the caller saw an error (a
//     timeout, a cut connection). The watermark read then shows it: a
//     table at the batch's end, or a partition Ahead; the retry skips it.
//   - A stop between two INSERTs (of two tables, or two partitions of one
//     table around midnight): the tables' watermarks differ; the retry
//     writes each table, and each partition of it, what it lacks.
//   - A stop after the inserts, before the offset commit: the restarted
//     consumer reads the batch again; every table's watermark is at or past
//     its records, and nothing is written.
//   - A retry with other batch boundaries (the consumer re-reads from the
//     committed offset and cuts batches where timing puts them, or another
//     aggregator takes the partition after a rebalance): watermarks are
//     offsets, so a retry of any shape writes the events past them.
//   - An INSERT failing halfway (server error, killed connection): the
//     block is atomic, nothing of it is stored.
//
// What it asks of the caller:
//
//   - One writer per partition at a time: the watermark is read, then
//     written past; two aggregators writing one partition at once would
//     both write the same records, and their markers' advances would not
//     add up. An aggregator stops writing a partition (finishes or
//     abandons its InsertBatch) before it gives the partition up in a
//     rebalance.
//   - The same records give the same events on a retry: the store counts
//     offsets, not event ids. Duplicates of one event at different offsets
//     (producer retries) are the caller's to drop, by event id, before
//     batching; its window of ids must hold across its restarts for copies
//     that straddle a restart.
//   - Events the store cannot hold (CheckEvent: a time outside 1970-2105)
//     go to the dead-letter topic: InsertBatch refuses a batch with one
//     (ErrInvalidBatch), which would otherwise block the partition.
//   - Migrations run with the aggregators stopped (migrations 11-13 copy
//     the old rollups into the new ones and drop the old).
//
// Not covered: AdjustQuota is a plain INSERT, counted twice if retried
// after a lost reply; and the store offers no switch to turn the above
// off (a negative control lives in the caller, e.g. retrying with stale
// watermarks).
//
// The price: a marker row per INSERT, in the rollups merged away with the
// others of its month (a part-way marker stays: one per batch that spanned
// months), in usage_events kept (a MergeTree merges nothing) until
// retention drops its day; and six INSERTs per batch (one per table) instead of three.
// Watermarks reads only marker rows, which every table's primary index
// finds (usage_events' since migration 14, which wrote markers for what
// older versions stored); BatchWatermark, for retries, reads only the
// markers of the days a batch touched.
package chstore
