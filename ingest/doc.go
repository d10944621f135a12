// Package ingest moves usage events from the request path to where they
// are kept, without ever making a request wait, and carries the catalog
// and the quota states between the nodes of a fleet.
//
// The enforcer offers each event to a Queue: a bounded, lock-free ring
// (Dmitry Vyukov's MPMC design) that copies the event in and never
// allocates or blocks; when it is full the event is dropped and counted.
// A Drainer takes events out in batches and hands each batch to a
// BatchWriter — the embedded usage store in one-process mode, a Sink in
// distributed mode — retrying a failed batch until it is accepted or
// shutdown ends the wait. Edge (edge.go) is that pipeline as one type,
// which the binary opens for its gateway: a queue, a drainer and a
// writer, started and closed (closing hands on every queued event)
// together.
//
// On Kafka (topics and their shapes in topics.go; Migrate creates them):
//
//   - Sink hands batches to an EventProducer (one produce request per
//     partition, acks from all in-sync replicas, every answer checked) or,
//     while Kafka fails or is slow, to a Spill log on disk, replayed in
//     order once Kafka is back; what the spill's cap drops is reported as
//     lost usage.
//   - ConfigLog materialises the compacted config topic into the catalog
//     every node applies in the same order (a catalog.View: one record
//     per entity, applied at a cost that does not grow with the
//     catalog), and commits changes to it, reading its own writes
//     (catalog.Committer): a change writes the records of the entities
//     it touched, and every node publishes to its gateway a
//     catalog.Change (the state before, the state after, what differs).
//     A node that starts on a long log (a first start, a rebuild)
//     applies it all and publishes once. A change larger than one
//     produce request (an import) is a transaction: readers hold its
//     records until its commit marker, so a writer's crash leaves none
//     of it in force, and admin nodes abort what a dead writer left
//     (configtxn.go).
//   - SignalReader follows the compacted signals topic into the gateway's
//     quota counters.
//   - Fetcher reads partitions by offset for a consumer that keeps its
//     own position: the events topic's one consumer is package aggregator,
//     into ClickHouse or into a node's own SQLite store.
//
// Every reader keeps a snapshot on disk so that a node starts and serves
// while Kafka is unreachable, and retries with backoff until it returns.
// The config log's is binary (configsnapshot.go): a catalog of a million
// keys loads in a couple of seconds.
//
// The Edge, the ConfigLog and the SignalReader register their metrics on
// the prometheus.Registerer their Config names (metrics.go): counters they
// keep anyway, read at scrape time, and the Sink's produce latency.
package ingest
