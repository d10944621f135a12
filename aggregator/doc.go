// Package aggregator rolls the usage events of the events topic up into
// ClickHouse, counting every admitted request exactly once, and is the
// quota authority of the fleet: it publishes each key's quota state to the
// signals topic for the enforcers.
//
// # Counting each event once
//
// Aggregators form a Kafka consumer group on the events topic; each owns
// some partitions (a key's events all land in one partition, so one
// aggregator counts a key). Per partition, a worker builds a batch from
// consecutive records, inserts it, then commits the offset to the group.
// Two mechanisms make the count exact whatever fails:
//
//  1. Offsets stored with the rows. Each table's part of a batch is one
//     INSERT block per table partition (a day, a month), which ClickHouse
//     writes whole or not at all, and it carries its own account: the raw
//     rows the partition and the batch's last offset, each rollup INSERT
//     a marker row that adds the batch's advance to the table's progress
//     (the rollups' rows merge across batches; the markers' sums stay
//     exact). What each table holds of a partition (the watermark,
//     chstore.Watermark) is read back from them. A worker starts from its
//     partition's watermark (Covered()+1), not from the group's committed
//     offset, and writes to each table only what that table lacks.
//     After a failed insert it reads the watermarks again before retrying.
//  2. Event ids. A producer retry may write one event twice, at two
//     offsets of the same partition, close together. A worker remembers
//     the last DedupWindow ids of its partition (ingest.IDWindow) and drops
//     copies; on start it refills the window from the records just before
//     its starting offset.
//
// The failure cases this covers, each exercised by the accounting test:
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
// stores add every other event's count), go to the dead-letter
// topic with their origin and the reason in headers; they never hold
// their partition.
//
// # Quota authority
//
// For the keys of its partitions the aggregator keeps, per plan, the
// requests admitted in the plan's current period, by enforcer (restored
// from ClickHouse when a partition is assigned). It publishes the state of
// the keys that changed at least every SignalInterval (1s), and at once
// when a key crosses 80% or 100% of its quota. A signal carries the total
// used and how much of it came from each enforcer, so that an enforcer
// can tell what it admitted that the aggregator has not counted yet (see
// enforcer.Gateway.ApplySignal, which splits what remains between the
// enforcers: the fleet cannot admit more than the quota in one signal
// round).
package aggregator
