// Command historybench is the benchmark behind `make bench-history`: it
// loads a month of synthetic usage history into ClickHouse through the
// real pipeline (`tollgate loadgen history` → Kafka → `tollgate
// aggregator` → ClickHouse) and times the reports of `tollgate reportapi
// --clickhouse` on it, over HTTP, against issue #12's targets:
//
//   - /v1/usage, day by key, for the month: ≤ 1 s, and ≤ 3× the same
//     sums by a hand-written ClickHouse query on the same table, timed in
//     the same run;
//   - GetUsage, one key, 31 days: ≤ 50 ms;
//   - /v1/usage, minute rows of one key for a day: ≤ 100 ms;
//   - /v1/reports/billing for the month: ≤ 2 s;
//   - /v1/usage/top for the month: ≤ 1 s.
//
// Usage:
//
//	historybench [--tollgate bin/tollgate] [--clickhouse clickhouse://127.0.0.1:9000] [--database tollgate_history]
//	             [--keys 10000] [--days 31] [--rate 14] [--start 2026-10-01] [--seed 1] [--partitions 12]
//	             [--reuse] [--runs 5] [--out FILE.md] [--work-dir DIR] ...
//
// The defaults are the size: 10,000 keys × 31 days at 14
// requests per key per hour, 104,160,000 events.
//
// # The load
//
// The Kafka broker is franz-go's kfake, run inside this process, with the
// topics `tollgate migrate kafka` makes. kfake keeps every record in
// memory, so a month of events would not fit: the events topic gets a
// retention.bytes of its own (--retention-days of the load per partition,
// computed from the history's key-to-partition spread and the size of its
// records; the other topics are unbounded), kfake applies retention every
// 5 s (log.cleaner.backoff.ms), and the load is paced a day at a time:
// `tollgate loadgen history --days 1 --start DAY` writes one day, and the
// next starts only once the aggregator has stored everything (every
// partition's chstore Watermark Covered() at its end offset - 1), so
// retention only ever deletes records that are stored. The aggregator
// logs "records were deleted by retention before they were aggregated" if
// that fails; the run then fails too, and it checks at the end that the
// rollups hold exactly the events written.
//
// One day per run, not one run of --days 31: history.Config.Generate
// draws every event's dimensions from one generator seeded by --seed, so
// a run of --days 1 starting at day N draws what a --days 31 run draws
// for day 0, not for day N. Both have the same counts per key and
// minute (Rate×24 requests a key a day, a whole number at the default
// rate) and unique ids (the id's first 48 bits are the event's
// millisecond), and draw the outcomes from the same distribution; what
// differs is that every day repeats the first day's draws. For the
// reports, which sum rows, that is the same load. The alternative, one
// run paced by stopping it (SIGSTOP) or by holding its produce requests
// in the broker, would make the loader's requests time out (its Kafka
// client bounds each at 10 s) and abort the run.
//
// The database (--database, default tollgate_history) is dropped and
// created anew, then migrated by `tollgate migrate clickhouse`; one
// `tollgate aggregator` (--raw-retention 0, so that no day of the
// history is dropped) stores the events. After the last day, the
// aggregator stops, the load's flags are recorded in the table
// historybench_load of the database, and the benchmark waits (at most
// --merge-timeout) for ClickHouse's background merges to settle. With
// --reuse, a database whose historybench_load holds the same flags is
// not loaded again: only the queries run.
//
// Per day it prints the events, the time from the loader's start until
// the aggregator has stored the day, the rate, and the CPU each process
// used in that time (clickhouse-server from /proc, the aggregator from
// /proc, the loader from its rusage, this process — the broker — from
// its rusage) and how busy the whole machine was (/proc/stat), so that a
// slow load says what held it back, noise from other work included.
//
// # The queries
//
// `tollgate reportapi --clickhouse --config` (the history's catalog, so
// that key and plan names resolve) is started with credentials given in
// TOLLGATE_ADMIN_ACCESS_KEY_ID / TOLLGATE_ADMIN_SECRET_ACCESS_KEY, and
// every request is signed with reportapi.Sign (SigV4) and sent over
// loopback, with HTTP compression off. Each query runs once cold
// (ClickHouse's mark and uncompressed caches dropped just before; the OS
// page cache too with --drop-page-cache) and --runs times warm; the table
// shows cold, median and max, the median against the target. Every
// response is read whole, its status checked, and its rows counted and
// checked against the history (the day-by-key report must sum to the
// events loaded). The hand-written query runs through clickhouse-go,
// every row read, alternating with /v1/usage's runs so that noise falls
// on both alike.
//
// A second table gives each report's query as the store runs it
// (chstore, called in this process with the request's parameters, with
// log_queries=1): the table it read and, from system.query_log, the
// rows and bytes read and the server's time, so that a slow report
// shows where its time went.
//
// Everything shares the machine's CPUs; the header says how many there
// were and how loaded the machine was.
package main

import "github.com/tollgate/tollgate/internal/benchkit"

// cli runs the benchmark with args and returns the exit code: 2 for bad
// flags, 1 when the benchmark failed. Figures that miss their targets do
// not fail the command: the table says so.
var cli = benchkit.Command("historybench", parseFlags, run)

func main() { benchkit.Main(cli) }
