// Package aggstore holds the types the aggregator hands to its stores: a
// Batch of one partition of the events topic, and the Watermark a store
// returns for what it holds of a partition. It is to package aggregator
// what database/sql/driver is to database/sql: the store's side of the
// seam, which the stores (usage/chstore, usage/sqlitestore) import to
// implement aggregator.Store.
//
// The types are the aggregator's (the consumer defines what it stores;
// the stores adapt), but they live in this leaf package, which imports
// only schemas, and not in package aggregator: a store importing package
// aggregator would take in kafka-go and the catalog, and chstore, which
// the aggregator's tests and benchmarks drive, would make an import cycle.
package aggstore

import "github.com/tollgate/tollgate/schemas"

// Batch is a run of consecutive records of one partition of the events
// topic, already deduplicated by event id and rid of records that are not
// usage events.
type Batch struct {
	Partition int   // the events topic's partition, 0-65535
	Last      int64 // the last offset the batch covers (may be a dropped duplicate or poison record)
	Offsets   []int64
	// Events[i] is the event of the record at Offsets[i]; offsets ascend.
	// Records without an event (duplicates, poison) have no entry.
	Events []schemas.UsageEvent
}

// Watermark is what a store holds of one partition of the events topic.
// The aggregator treats it as opaque: it keeps the one a store returned
// and hands it back with the partition's next batch, and reads only
// Covered. A nil Watermark stands for a partition the store holds
// nothing of.
type Watermark interface {
	// Covered is the last offset up to which the store holds every
	// record of the partition (-1: none): a consumer that lost its
	// place reads the partition again from Covered()+1.
	Covered() int64
}

// Covered is wm.Covered(), or -1 for a nil wm.
func Covered(wm Watermark) int64 {
	if wm == nil {
		return -1
	}
	return wm.Covered()
}

// LostRecord is one record of the lost-usage topic as the aggregator
// hands it to a store (aggregator.LostStore): what an enforcer reported
// it dropped, where the record was read, and the UTC day it counts on.
// The topic's partition and offset name the record: a store keeps a
// record read twice (a retried insert, two aggregators) once.
type LostRecord struct {
	Partition int   // the lost-usage topic's partition, 0-65535
	Offset    int64 // the record's offset
	// Day is the UTC day (days since 1970-01-01) the loss counts on:
	// that of Lost.To, else of Lost.From, else of the record's
	// timestamp (an enforcer's queue-full records carry no times).
	Day int64
	// Lost is the decoded record. Lost.Count 0 marks a record the
	// aggregator could not take (sent to the dead-letter topic): stored
	// only so that its offset counts as read; no report shows it.
	Lost schemas.LostUsage
}
