// Package enforcer is the gateway: it routes each request to an API
// stage, identifies its key, applies the key's usage plan (throttles,
// quota) in AWS API Gateway's order, proxies what it admits and meters
// every request it answers with one usage event.
//
// Serve a Gateway with NewServer on a listener from WrapListener, and
// hand it each change of the catalog:
//
//	gw, err := enforcer.New(enforcer.Config{Events: queue}, nil)
//	err = gw.Load(manager.State())
//	srv := enforcer.NewServer(gw, enforcer.ServerConfig{})
//	err = srv.Serve(enforcer.WrapListener(ln))
//	// in the catalog manager's publish hook:
//	err = gw.Apply(change)
//
// # Changes at a million keys
//
// A change costs what it touches, not what the catalog holds: Apply
// updates the compiled catalog in place, entity by entity, while requests
// go on without a lock. Load (and Update) compile a whole catalog, for a
// first load or a rebuild.
//
// The compiled catalog is a table (table.go): the routes (stages,
// resource trees, shared buckets) and the plans' runtimes (planRT), both
// immutable, and a keySet of the keys (keys.go), updated in place. A
// change of APIs or gateway settings compiles the routes and every plan
// again into a new table (O(APIs + plans)); a change of a plan compiles
// that plan into a copy of the table (O(plans)); both swap the table
// atomically and share the keySet. A change of a key replaces its entry
// in the keySet: O(1).
//
// Plan slots. A key holds its plans by index (binding.plan) into the
// table's plans, not by pointer: a new runtime of a plan (its limits,
// quota, stages, per-method throttles) reaches all its keys at once, as
// soon as the table that holds it is in, and no key entry is touched.
// The runtimes sit in the table rather than behind an atomic pointer per
// plan so that a request, which reads the table once, sees one version
// of every plan and of the routes they were compiled against (a plan's
// per-method buckets are indexed by the routes of its stages). An entry may be newer than
// the table a request loaded; the index of a plan it names is then either
// the same plan or, for a plan created since, out of the table or empty
// (an index freed by a deleted plan is reused only by a later change), so
// such a binding just does not apply. Plans are published before keys
// (a key may name a plan created by the same change), and a deleted
// plan's runtime stays until its keys have left it.
//
// The key index. Entries are immutable once published (copy-on-write per
// entry): a change of a key builds a new entry and publishes it in the
// keySet's three tables, each an open-addressing hash table of entries
// (entryTable): by the SHA-256 of the value (what the catalog knows of a
// value), by key id (signals, quota updates, changes), and by the value
// itself once a request has shown it (the verified-value cache: the first
// request of a key hashes its value, later ones compare it). Each slot is
// an atomic pair of hash and entry; a writer (changes, serialised, and
// requests recording a value, which only try the lock) changes one slot
// at a time, so readers take no lock, never wait and allocate nothing. We
// chose this over a persistent hash trie (path-copied, root swapped) and
// over sharded copy-on-write maps for the request path at a million keys:
// a trie costs a cache miss per level, a sharded map one for the shard
// and one for its bucket, while a slot of a flat table is one miss, and
// the entry it points to one more (at a million keys nothing of a key is
// in cache when its request comes, and a miss costs 100-190 ns on the
// machines we measure on). A request on a known key thus reads three
// lines that are cold at that scale, one after the other: its slot, its
// entry, its counters. The table grows (copying itself, O(n)) when three
// quarters full, like a Go map; a change otherwise costs O(1). With the
// counters and the three tables, a key costs the gateway about 270 bytes
// (BenchmarkMemoryPerKey).
//
// An entry carries the value its first request showed (up to 40
// characters, the length AWS and tollgate generate; longer values are
// hashed on every request). A change of the key copies it into the new
// entry (or drops it with the old value), and updates the verified-value
// table under the same lock, so the table never holds a replaced entry
// once the change returns. The entry replaced is marked stale, for the
// races the table cannot see: a request that found the old entry just
// before the change, or that verified the value on the old entry and
// records it after; a request that finds a stale entry looks the value up
// again, so a disabled or deleted key is refused as soon as Apply
// returns.
//
// What survives a change. Counters live in keyPlanState, one per key and
// plan, shared by the successive entries of the key: a key's token
// bucket, quota counter, local count, last signal and per-method buckets
// under a plan survive any change of the key (enabled, value, other
// plans) and of the plan (limits, quota, stages; a quota counter of
// another period kind reads as empty, see quota.go), and are dropped
// when the key leaves the plan or is deleted (a key added to a plan
// again starts anew; RestoreQuotas restores quotas from the usage store
// on start). Per-method buckets are laid out by the plan's sorted
// per-method throttle names (overrideLayout): a change that keeps the
// names keeps the layout, and every tat; a change of the names makes a new
// layout, and each key's next request to such a method lays its
// counters out again, keeping the tats of the names that remain (new
// ones start full): the one allocation on the request path, once per key
// and layout. The gateway's and stages' buckets are kept by name.
// A full load carries all of this by key id and plan id.
//
// # Limits
//
// Nothing a client sends may cost the gateway unbounded memory, time or
// connections. ServerConfig bounds the listener: request headers (16 KiB,
// 10 s to send them), idle connections (120 s), request bodies (10 MiB,
// AWS's payload limit: a larger Content-Length gets 413 before a byte is
// read; a chunked body is cut where it passes the limit), the time to read
// a body (29 s, AWS's integration timeout; then 408) and an admitted
// exchange as a whole (60 s: body, the upstream's answer and its
// streaming; then 504, or a response cut mid-body). The catalog's
// upstreamTimeout bounds the wait for the upstream's headers, and their
// size is capped at MaxResponseHeaderBytes (then 502).
//
// A refusal of a request that carries a body, or whose framing the check
// could not trust, and every failed exchange close the connection without
// reading the request body first (see framing.go for why this matters to
// request smuggling); a refused request without a body left nothing
// unread and keeps its connection. The framing check on chunked and
// HTTP/1.0 requests fails closed. The deadlines work on the client
// connection's deadlines (reads; writes too once the exchange deadline
// passes, for a client that stopped reading) and one reusable timer per
// connection, so that the admitted request path allocates nothing for
// them.
package enforcer
