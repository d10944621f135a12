// Package ingest moves usage events from the request path to where they
// are kept, without ever making a request wait.
//
// The enforcer offers each event to a Queue: a bounded, lock-free ring
// (Dmitry Vyukov's MPMC design) that copies the event in and never
// allocates or blocks; when it is full the event is dropped and counted.
// A Drainer takes events out in batches and hands each batch to a
// BatchWriter — the embedded usage store in one-process mode, a Kafka
// producer in distributed mode — retrying a failed batch until it is
// accepted or shutdown ends the wait.
package ingest
