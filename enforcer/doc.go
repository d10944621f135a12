// Package enforcer is the gateway: it routes each request to an API
// stage, identifies its key, applies the key's usage plan (throttles,
// quota) in AWS API Gateway's order, proxies what it admits and meters
// every request it answers with one usage event.
//
// Serve a Gateway with NewGatewayServer, on the data plane of your
// choice, and hand it each change of the catalog:
//
//	gw, err := enforcer.New(enforcer.Config{Events: queue}, nil)
//	err = gw.Load(manager.State())
//	srv, err := enforcer.NewGatewayServer(gw, enforcer.FastHTTP, enforcer.ServerConfig{})
//	err = srv.Serve(ln)
//	// in the catalog manager's publish hook:
//	err = gw.Apply(change)
//
// # Data planes
//
// The HTTP machinery of the gateway listener sits behind one seam,
// NewGatewayServer, and comes in two planes that run the same decision,
// events, headers and limits:
//
//   - FastHTTP, the default (lean.go, leanproxy.go): a connection loop of
//     the package's own around fasthttp's request header parser, its
//     response writer and its HostClient. Nothing of a request is
//     allocated per request (pooled exchanges, the body streamed from the
//     connection's reader), and the upstream exchange is written and read
//     on the request's goroutine. A proxied request costs about a third
//     of net/http's CPU in make loadtest (42 against 119 µs; nginx 29),
//     and 4 allocations instead of 86 (BenchmarkGatewayProxy); a refusal
//     0 instead of 21 (BenchmarkGatewayReject).
//   - NetHTTP (gateway.go, proxy.go, framing.go, writer.go): net/http's
//     server and httputil.ReverseProxy, for what only net/http has
//     (HTTP/2 to clients, the standard library's behaviour where a
//     deployment was tested against it). tollgate serve and enforcer
//     take --data-plane net/http.
//
// Why a loop of its own and not fasthttp's Server: fasthttp's Server
// reads up to 8 KiB of a request's body before its handler runs, so a
// client that declares a body and stalls holds the connection until a
// timeout where the gateway refuses it at once (an unknown key, an
// undeclared route) without reading a byte; and it answers
// "Expect: 100-continue" before the handler decides, where net/http (and
// this loop) send "100 Continue" only when an admitted request's body is
// read. What the planes answer differently is listed in lean.go: the
// fasthttp parser refuses a second Content-Length and answers its own
// refusals in AWS's shape, metered; the framing check has the request's
// own header block and needs no proof of it.
//
// # The request path
//
// A request meets these steps in this order. The first that refuses it
// answers, as AWS API Gateway answers, and the steps after it do not run.
//
//  1. Listener. On the fasthttp plane (lean.go) the connection loop
//     reads the header block (16 KiB and 4 KiB of slack, 10 s; the
//     reader grows past 4 KiB only for a block that needs it), waits for
//     kept-alive connections' next request (120 s), and calls
//     leanServer.serve with the body still unread. On the net/http plane
//     the connections of WrapListener record each request's raw header
//     block; NewServer bounds the headers (16 KiB, 10 s), idle
//     connections, and, per connection, the body and exchange deadlines.
//     net/http parses the request and calls Gateway.ServeHTTP. Either
//     way the table is loaded once: the request is decided on that one
//     version of the catalog.
//  2. Framing and path (ServeHTTP, badFraming, unsafePath). A request
//     framed two ways (Content-Length and Transfer-Encoding, or HTTP/1.0
//     with Transfer-Encoding), a chunked or HTTP/1.0 request whose header
//     block cannot be proven its own, and a path with "." or ".."
//     segments or an encoded slash get 400. A Content-Length above
//     ServerConfig.MaxBodyBytes gets 413 before a byte of the body is
//     read.
//  3. Route (decide.go, table.go, route.go). A request with two x-api-key
//     headers gets 400. The stage is found by Host and the longest path prefix
//     (table.route), the resource in the stage's tree (a literal segment
//     before {param}, before a greedy {proxy+}), then the method, or ANY.
//     No match: 403 Missing Authentication Token (404 with the gateway's
//     unknownRouteStatus).
//  4. Key (keys.go), for a method with apiKeyRequired. The value is looked
//     up in the keySet: the verified-value table if a request showed it
//     before, else its SHA-256 in the hash table. During a rotation the
//     key's previous value is found there too, as an entry of the same
//     key (its id, plans and counters) that expires when the grace ends
//     (catalog.APIKey.PreviousValueUntil). Missing, unknown, disabled or
//     past its expiry (catalog.ExpiresAtTag, or the end of the grace for
//     a previous value; compared with the request's time, so every
//     enforcer stops the key, or the value, at the same instant): 403
//     Forbidden. Then the key's plan for this stage (table.bind); none:
//     403 Forbidden.
//  5. Throttles (bucket.go): the gateway-wide bucket, the stage's, then
//     the key's bucket under the plan, or the per-method bucket that
//     replaces it for the method; in a fleet the key's bucket is scaled
//     by this enforcer's share of it (Throttles across a fleet, below). Empty: 429 Too Many Requests, with
//     Retry-After the wait for a token. A method that needs no key is
//     admitted after the stage's bucket.
//  6. Quota (quota.go): the key's quota counter under the plan. Used up:
//     429 Limit Exceeded, with Retry-After the end of the period. An
//     admitted request is also counted in the key's local counter (see
//     Quota leases).
//
// A check that refuses gives back the tokens the earlier checks took, so
// a refused request costs neither throttle tokens nor quota. Then:
//
//  7. Answer. RateLimit, RateLimit-Policy and Retry-After are set from the
//     decision (responses.go). A refusal is written from a rejection built
//     once per status (AWS's body and x-amzn-ErrorType), and closes the
//     connection if the request carried a body. An admitted request is
//     proxied: X-Tollgate-Key-Id and X-Tollgate-Plan-Id replace whatever
//     the client sent, the stage prefix and the key are stripped, hop-by-hop
//     headers (and those Connection names) are dropped both ways, and
//     X-Forwarded-* are set from the connection. On the fasthttp plane
//     (leanServer.proxy) the stage's HostClient, shared by every stage of
//     the same upstream host, writes the request with its body streamed
//     from the client, and the response body is streamed back through a
//     pooled leanStream that counts the bytes and meters the request when
//     it has been written. On the net/http plane the stage's
//     httputil.ReverseProxy (proxy.go) writes through a pooled
//     meteredWriter (writer.go). A failed exchange answers 502, 504, 408
//     or 413.
//  8. Metering (Gateway.emit), once the response is complete. An admitted
//     request, and a refused one whose key was identified, becomes one
//     schemas.UsageEvent (with the key's id and the fingerprint of the
//     value it showed) offered to Config.Events (an ingest.Queue, which
//     copies it, never blocks, and drops and counts it when full). A
//     request refused before a key was identified is added to the
//     rejections table instead (flood.go), which Run emits as one event
//     per group of alike requests and minute.
//
// # Table and states
//
// The gateway keeps two kinds of memory. The table (table.go) is the
// catalog compiled for the request path: the stages with their resource
// trees and reverse proxies, the buckets' rates and bursts, the plans'
// runtimes (planRT), and the keySet of key entries (keys.go). It says
// what the catalog allows, changes only when the catalog does, and a
// request reads it through one atomic pointer. The states are what
// traffic has done: the counters of each key under each plan
// (keyPlanState: its token bucket, per-method buckets, quota counter,
// local count and last signal applied) and those of the gateway's and
// stages' buckets (Gateway.global, by name). Tables and key entries point
// at the states and never hold counts themselves, so a new table, or a
// new entry of a key, keeps the counters of whatever stays (What survives
// a change, below).
//
// # Counters without locks
//
// No request takes a lock or waits for another. Each counter is one
// atomic word, changed by compare-and-swap:
//
//   - A token bucket (bucket.go) is one int64, the theoretical arrival
//     time of the next request (GCRA). Taking a token moves it one
//     interval on, refused when that would put it more than the burst
//     ahead of now; a refund is an atomic add.
//   - A quota counter (quota.go) is one uint64: the period (its kind in 2
//     bits, its index in 22) and the requests counted in it (40 bits).
//     Checking the limit, starting a new period and counting are one
//     compare-and-swap, so concurrent requests neither lose a count nor
//     pass the limit, and a new period starts from 0 without anyone
//     resetting the word. The local counter is packed the same way.
//   - The key index's slots (keys.go) are atomic pairs of hash and entry.
//     A key's per-method buckets are an array swapped in by
//     compare-and-swap when the plan's layout of them changes
//     (keyPlanState.methodTat).
//   - The rejections table (flood.go) adds to atomic sums in cells of a
//     fixed array.
//
// What changes more than one word (Load, Apply, Update; a request
// recording a key value, which only tries the lock) is serialised by
// Gateway.mu or the keySet's lock, which requests never wait on. A key
// hammered from every core stays exact: contention costs retries of a
// compare-and-swap (BenchmarkDecideParallel).
//
// # Quota leases
//
// Alone (tollgate serve), the quota counter of a key under a plan is the
// key's use of the period: RestoreQuotas raises it to the usage store's
// count at start, and SetUsed (UpdateUsage, through usage.QuotaUpdate) sets it. In a fleet an
// enforcer sees only its own requests. The aggregator, which counts the
// key's events from every enforcer, publishes a schemas.QuotaSignal: the
// period's use (Used: what it counted, plus UpdateUsage adjustments) and,
// per enforcer (Nodes, sorted by name), how many of that enforcer's
// admissions it has counted. ApplySignal (signal.go) turns the signal
// into a lease: it divides what the key has left among the enforcers that
// share it, and sets this enforcer's quota counter so that it admits
// exactly its part until the next signal. With Limit this gateway's limit
// of the plan for the period, and Config.Node this enforcer's name:
//
//	R         = Limit - min(max(s.Used, 0), Limit)   what the fleet has left
//	N         = len(s.Nodes), + 1 if Node is not in s.Nodes
//	rank      = Node's index in s.Nodes, or len(s.Nodes) if absent
//	share     = R/N, + 1 if rank < R%N               (floor; the R%N left
//	                                                   over go to the first
//	                                                   nodes, so Σ share = R)
//	counted   = s.Nodes[rank].Counted, or 0 if absent
//	inFlight  = max(local - counted, 0)  admitted here, not yet counted
//	allowance = max(share - inFlight, 0)
//	counter  := Limit - allowance        exactly allowance more requests
//
// where local is the count of requests this enforcer admitted in the
// period, which signals never change. The counter is set, not raised: the
// lease may give back more than this enforcer had left, or take back part
// of it. It is set by compare-and-swap (quota.lease), which reads local
// again if a request was admitted in between. Applying a signal again
// leaves the lease as it is (what was admitted since moved from allowance
// to inFlight), so replays, as after a catalog change, are harmless.
//
// Every enforcer applying the same signal, the fleet admits, until the
// next one, at most
//
//	s.Used + Σ_i (inFlight_i + allowance_i) = s.Used + Σ_i max(share_i, inFlight_i)
//
// which is at most s.Used + R = Limit as long as each enforcer's requests
// still on their way fit in its new share (inFlight_i <= share_i).
// Overshoot therefore comes only from:
//
//   - an enforcer whose uncounted admissions exceed its new share (its
//     events reach the aggregator much later than the others', near the
//     end of the quota): by inFlight_i - share_i, at most its admitted
//     rate × its event delay;
//   - an enforcer the aggregator has not counted from yet: it takes a
//     share of R/(N+1) that the others, counting N nodes, hand out too;
//   - requests racing the compare-and-swap (taken from the counter, not
//     yet in local): at most one per request in flight in the gateway;
//   - nothing more at the start of a period, or for a key new to an
//     enforcer: until a signal of the period has been applied to the key
//     (keyPlanState.asOf in the period), its local count is capped by the
//     fleet's share of the limit (the fail-safe lease, decide and
//     quota.countLocal: ceil(Limit/N), N the enforcers the aggregators
//     say, SetFleet; one compare-and-swap checks and counts, and a request
//     it refuses is given back to the quota counter), so N enforcers admit
//     at most Limit + N - 1 however long the signal takes (an aggregator
//     down, a new key, a new day). The cap is on the count, not where the
//     counter started, so a fleet's size learnt mid-period applies at
//     once. Alone, or before a fleet's size is known, N is 1: the whole
//     limit, as a single gateway. While this enforcer's clock is off the
//     aggregators' (SetClockSkewed) the fail-safe lease is 0;
//   - Node names that are not unique across the fleet: two enforcers
//     named alike each take the one share, and each takes the other's
//     counted requests for its own.
//
// An enforcer whose events are lost on their way keeps them in inFlight
// for the rest of the period: it under-admits, never over-admits.
//
// The price, against raising the counter to s.Used (the earlier rule,
// whose overshoot grew with signal interval × rate × enforcers): near the
// end of a quota an enforcer answers 429 Limit Exceeded once its share is
// used up although others have not used theirs, until the next signal
// divides R again (within a second); and when R < N, the nodes at rank >=
// R%N get nothing, so up to N-1 requests of a period may go unused if
// traffic stays on those nodes. The quota and RateLimit headers an
// enforcer sends count its own lease, not the fleet's remainder.
//
// The plan's limit at this gateway decides, not s.Limit: when the two
// differ, one side has not yet read a change of the plan, and the gateway
// enforces the plan it has. SetUsed sets this enforcer's counter
// directly; in a fleet the aggregator records the adjustment in s.Used,
// and the next signal gives every enforcer its lease of what is left.
//
// # Throttles across a fleet
//
// Alone, a key's buckets are the plan's. In a fleet each enforcer admits
// its share of them (rate.go): the aggregator divides a busy key's rate
// by where its requests arrive and publishes a schemas.RateSignal;
// ApplyRate keeps this enforcer's share, and the time until which it
// holds (the division's AsOf + Config.RateStale, 3 s, on this
// enforcer's clock), in one atomic word of the key's keyPlanState. A
// request reads it (keyPlanState.shareAt) and, below a whole share,
// takes its token from a copy of the bucket scaled by it (bucket.scaled):
// the interval grows by 1/share, the tolerance (the burst's time) stays,
// so the burst shrinks by the share, never below one request. The key's
// tat is the same word at any share, so a new share applies to the next
// request, with nothing to reset. The per-method buckets take the key's
// share too. Where no division holds, the share is the fleet's default
// (SetFleet: 1/N, N the enforcers in the fleet as the aggregators say, or
// Config.Fleet before any; 1 alone). The fleet then admits, while
// divisions flow and once they have followed the traffic (within 2 s),
// the plan's rate wherever the requests come from (the rule and its
// bounds are in package aggregator's rate.go; a burst may exceed it by
// up to the burst of each enforcer's share); while they do not, at most
// N × 1/N of it, never N times it. The gateway-wide and stage
// buckets take the fleet's default share: they count every client's
// requests, which a load balancer spreads evenly (decide).
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
// request of a key hashes its value, later ones compare it). Values that
// matched no key are remembered too, in 1,024 fixed slots tagged with
// the keySet's generation, which every change of a key moves on: a
// client repeating a bad key is refused without hashing it again, and a
// value a change makes a key is never refused from there. Each slot is
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
// entry, its counters.
//
// Rotations. A key in a rotation has a second entry, for its previous
// value (catalog.APIKey.PreviousValueHash), in the hash table and, once a
// request showed the value, in the verified-value table, but not in the
// id table: the same id and the same plans slice (so the same
// keyPlanState pointers: either value takes the key's tokens, quota and
// local count), its own hash and fingerprint, and expires the end of the
// grace (or the key's expiry, if sooner). The request path does not know
// it is a previous value: it is a key entry that expires, refused from
// that instant whatever table found it. keySet.previous finds it by key
// id for the changes that replace it (a rotation makes the current
// value's entry the previous one's, a cancellation the other way round:
// the new entry of a value takes the old one's slots and recorded value)
// or drop it (finished, cancelled, the key deleted), marking it stale as
// any replaced entry. Keys without a rotation pay nothing for it: each
// entry carries its value's fingerprint (8 bytes, for usage events;
// emit takes a string of them without allocating) within the 160-byte
// size class it had. The table grows (copying itself, O(n)) when three
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
// # Metrics
//
// Each request is counted once, in emit, with the decision, the class of
// the status answered, the stage when one matched, and the latency; an
// admitted request's exchange with its upstream also in recordUpstream
// (its latency, and what failed it, which proxyError records in the
// meteredWriter). The counters are fixed arrays of atomic words in eight
// shards (metrics.go), chosen by the request's start time, so recording
// takes no lock and allocates nothing (BenchmarkMetricsRecord); a stage's
// index into them is its slot, given when a table holding the stage is
// first compiled and kept in its stageRoute. Config.Metrics registers a
// collector that sums the shards at scrape time. Labels come from fixed
// sets (decisions, status classes, failure reasons) or from the catalog
// (API id and stage name, capped at MaxMetricStages, the rest counted as
// "other"): never a path, a key or a plan.
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
// them. On the fasthttp plane the upstream's headers are awaited from the
// end of the request's write (upConn.SetReadDeadline, as net/http's
// ResponseHeaderTimeout), and the deadline then moves to the exchange's
// for the body (leanUpstream.extend).
package enforcer
