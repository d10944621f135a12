// Package aggregator is the one consumer of the events topic: it stores
// the usage events in a Store, counting every request exactly once, and,
// on ClickHouse, is the quota authority of the fleet: it publishes each
// key's quota state to the signals topic for the enforcers, and stores
// the usage enforcers report they lost (the lost-usage topic).
//
// It runs in two ways:
//
//   - tollgate aggregator: aggregators form a Kafka consumer group on the
//     topic, each owning some partitions (a key's events all land in one
//     partition, so one aggregator counts a key), into ClickHouse
//     (usage/chstore), which is a QuotaStore: they are the quota
//     authority.
//   - tollgate reportapi without --clickhouse, serve --kafka: one
//     aggregator per node with AllPartitions, reading every partition
//     with no group, into the node's own SQLite file (usage/sqlitestore),
//     which is not a QuotaStore: a plain loader. CaughtUp says when it has
//     stored what the topic held at its start.
//
// The Store speaks the aggregator's types (package aggstore: a Batch, and
// a Watermark the aggregator treats as opaque but for Covered); each store
// adapts to them.
//
// # Counting each event once
//
// Per partition, a worker builds a batch from consecutive records, writes
// it, then commits the offset to the group (if any). Two mechanisms make
// the count exact whatever fails:
//
//  1. Offsets stored with the rows. On SQLite, a batch and the offset
//     after it are one transaction (source_offsets), and a write whose
//     offset is not past the stored one is refused as stale. On
//     ClickHouse, which has no transactions, each table's part of a
//     batch is one INSERT block per table partition (a day, a month), which ClickHouse
//     writes whole or not at all, and it carries its own account: the raw
//     rows the partition and the batch's last offset, each rollup INSERT
//     a marker row that adds the batch's advance to the table's progress
//     (the rollups' rows merge across batches; the markers' sums stay
//     exact), and what each table holds of a partition (chstore.Watermark)
//     is read back from them. Either way a worker starts from its
//     partition's watermark (Covered()+1), not from the group's committed
//     offset, and writes only what the store lacks. After a failed write
//     it reads the watermark back (Store.ReadBack) before retrying.
//  2. Event ids. A producer retry may write one event twice, at two
//     offsets of the same partition, close together. A worker remembers
//     the last DedupWindow ids of its partition (IDWindow) and drops
//     copies; on start it refills the window from the records just before
//     its starting offset.
//
// The failure cases this covers, each exercised by the accounting test
// (ClickHouse) and, where they apply, by sqlite_test.go:
//
//   - killed between fetch and insert: nothing stored, nothing committed;
//     the next owner reads the records again from the watermark.
//   - killed between insert and commit, or the commit lost: the store has
//     the batch; the group's offset is behind, but the next owner starts
//     from the watermark, past the batch.
//   - killed between two inserts (two tables, or two days of one around
//     midnight): one table or partition is ahead; the next owner reads
//     from the lowest watermark and writes each only what it lacks.
//   - an insert whose acknowledgement was lost (connection cut): the
//     watermark read before the retry shows whether it landed; the worker
//     does not insert again until that read has answered (retrying with
//     the watermark of before the failure wrote the batch twice).
//   - a rebalance: the old owner stops at the generation's end without
//     storing what it holds; the new owner starts from the watermark.
//   - producer duplicates: dropped by id.
//
// What it does not cover: a copy of an event further from the original
// than the window (an enforcer cut off from Kafka for longer than the
// window takes to fill, replaying a batch it had partly written), and an
// insert that ClickHouse had received whole but not yet written when a
// rebalance completed, or when the worker's own insert timeout (8 s) gave
// up on it and read the watermark (the timeout stops the client waiting,
// not the server writing): exactly once assumes inserts finish well within
// both.
//
// Records that are not usage events, or whose values no enforcer writes
// (a time decades away, a status outside 100-599, an admitted event with a
// count above 1: enforcers count only requests rejected before a key was
// identified per minute, and quotas count admitted events one by one; the
// stores add every other event's count), or that the store cannot hold
// (EventChecker), go to the dead-letter topic with their origin, the
// reason and the consumer's Name in headers (two consumers of the topic,
// such as two report APIs with their own stores, dead-letter the same
// record each); they never hold their partition. A batch of such records
// only is not written, so a restart reads them, and dead-letters them,
// again.
//
// # Lost usage
//
// On a LostStore (ClickHouse), the aggregator also follows every
// partition of the lost-usage topic (lost.go): the counts of requests an
// enforcer dropped the events of (its spill log or its queue full,
// schemas.LostUsage), which usage therefore lacks. It starts from the
// store's offsets (LostOffsets), stores each fetch as one batch
// (InsertLost, within insertTimeout, retried with backoff) before the
// next, logs the losses (a Warn per record, ten per batch, then one line
// for the rest) and counts them (Stats.LostRecords and LostRequests,
// tollgate_aggregator_lost_records_total and _lost_requests_total).
// Every aggregator of the group reads the whole topic, with no group of
// its own: a record is its (partition, offset), which the store keeps
// once however many aggregators, or retries, write it, so the counts in
// the store are exact; the metrics are each aggregator's, and two that
// read the same records both count them. Records that do not decode, or
// are dated outside the days a store holds, go to the dead-letter topic
// (headers naming the lost-usage topic) and are stored as markers that
// no report shows, so that a restart does not dead-letter them again.
// The report API shows the losses (/v1/usage/lost).
//
// # Quota authority
//
// On a QuotaStore, for the keys of its partitions the aggregator keeps, per plan, the
// requests admitted in the plan's current period, by enforcer (restored
// from ClickHouse when a partition is assigned). It publishes the state of
// the keys that changed at least every SignalInterval (1s), and at once
// when a key crosses 80% or 100% of its quota. A signal carries the total
// used and how much of it came from each enforcer, so that an enforcer
// can tell what it admitted that the aggregator has not counted yet (see
// enforcer.Gateway.ApplySignal, which splits what remains between the
// enforcers: the fleet cannot admit more than the quota in one signal
// round).
//
// # Throttles across the fleet
//
// With Config.Rates, the aggregator also divides the throttle of each
// busy key among the enforcers by where its requests arrive (rate.go,
// which has the rule): every 250 ms, from each enforcer's requests of
// the key over the last second, it publishes a schemas.RateSignal of
// shares that sum to the plan's rate when the fleet asks for more, and
// that let each enforcer take all the fleet leaves when it asks for
// less (see enforcer.Gateway.ApplyRate for how an enforcer applies one,
// and what it does without).
//
// # Metrics
//
// Config.Metrics receives the aggregator's collector (metrics.go): its
// Stats, the batches stored and their insert latency, the consumer lag
// of each partition a worker runs on (the partition's end at the last
// fetch less the offset stored; the series leaves with the worker), and,
// as quota authority, the keys it holds and the signals it sent; with
// Rates, the keys whose throttle it divides and the divisions it sent; on
// a LostStore, the lost-usage records it stored and the requests they
// report lost.
package aggregator
