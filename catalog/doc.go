// Package catalog holds what tollgate enforces: APIs with their stages and
// resources, usage plans, and API keys, with the names and field names of
// AWS API Gateway so that a file written here reads like `aws apigateway`
// output.
//
// The catalog in force is a State: an immutable snapshot indexed by id,
// name, key value hash, customer id and plan membership, on copy-on-write
// B-trees. Any number of readers (the admin API's pages, the usage
// reports) read a State while a change is prepared on a Tx, which clones
// the trees in O(1) and copies only the nodes it writes. A change is made
// through a Manager:
//
//	m.Change(ctx, func(tx *catalog.Tx) error {
//		k := *tx.Key(id)
//		k.Enabled = false
//		tx.PutKey(k)
//		return nil
//	})
//
// The Manager validates what the Tx touched against the whole catalog
// through the indexes (unique names and values, references, one plan per
// key per API stage: the rules of Validate, with the same messages),
// audits it, and hands a Change (old state, new state, and the Delta:
// which entities it touched) to a Committer: Local stores it (package
// catalogdb writes the touched rows) and publishes it to the gateway,
// which updates the entries of those entities; the fleet's config log
// (package ingest) writes one record per touched entity. A change to one
// key therefore costs the same in a catalog of a thousand keys as in one
// of a million: O(log n) in the trees, one row, one record, one gateway
// entry.
//
// A Catalog is the same content as a plain value: what files hold and
// exports give. ApplyFile merges a declarative file into a Tx (matching
// plans and keys by name, keeping their ids and creation dates, so
// applying the same file twice changes nothing), in O(entities in the
// file). API key values never enter a catalog: only their SHA-256 hashes
// do, with a short fingerprint of them (Fingerprint) where a value must be
// named (usage events, the audit log, the admin API).
//
// A key may be in a rotation (rotation.go): it then holds, besides its
// value, its previous value's hash and prefix and the time until which
// the gateway still accepts that value for the key. Every encoding of a
// key carries these fields (config records, catalog.db rows, view
// snapshots, the audit log by fingerprint); configuration files do not
// (a file declares values, not rotations).
package catalog
