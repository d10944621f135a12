// Package notify sends quota notifications to webhooks: a key's use of
// its quota crossing a webhook's thresholds (default 80% and 100%), a key
// starting to be throttled, a key disabled.
//
// A webhook (catalog.Webhook) is in the catalog, so every node of a
// fleet has it; notifications are sent by one node: the one that knows
// the key's usage. In tollgate serve that is serve itself (its gateway's
// counters are the key's usage); in a fleet it is the aggregator that
// owns the key's partition (the quota authority), never an enforcer,
// which sees only its own share of the key's requests.
//
// # From an event to a delivery
//
//	Quota(usages)          ─┐
//	Events(usage events)   ─┼─▶ outbox (notify.db) ──Run──▶ POST url
//	CatalogChanged(change) ─┘      id = hash of the facts      signed, retried
//
// Detection is by level, not by edge: a threshold t is crossed when the
// key's count reaches ceil(limit × t/100) in the period, and the
// notification's id is a hash of (webhook, event, key, plan, period
// end, t). The outbox's primary key is that id: seeing the key above
// the threshold again, in this process or after a restart, or at the
// next owner of its partition after a rebalance, writes nothing new. A
// crossing while the node was down is noticed at the next count.
// Throttling is one notification per key, plan and hour in which its
// requests were throttled; a key disabled, one per change that disabled
// it (its id holds the key's lastUpdatedDate).
//
// The outbox is a SQLite table (outbox.go), synchronous=FULL: a
// notification is on disk before anything sends it (the notifications
// one call finds are written in one transaction: one sync of the disk
// for a batch in which many keys crossed, on the drainer's or the signal
// writer's goroutine), and leaves the pending state only once a
// receiver answered 2xx, or after MaxAge (24h) of attempts. A node killed mid-retry sends it after its restart,
// with the same id: delivery is at least once, and the receiver drops
// copies by id.
//
// # Delivery
//
// Run takes what is due every second (at once after a notice), at most
// Concurrency (4) attempts at a time, each bounded by Timeout (10s: the
// connection, the request and the answer's headers), the answer read up
// to 64 KiB and discarded. A failed attempt (an error, a timeout, an
// answer other than 2xx; redirects are not followed) is retried after
// MinBackoff (1s), doubling up to MaxBackoff (1h), until MaxAge. A
// failed attempt also holds back its webhook for the same doubling wait:
// its other notifications are not attempted meanwhile, and those past
// MaxAge are given up without another attempt. A slow or dead receiver
// therefore costs at most Concurrency attempts of Timeout per wait, not
// one per notification waiting for it, and the other webhooks'
// notifications go meanwhile. The outbox
// holds at most MaxPending (100,000) waiting notifications; past that
// new ones are dropped and counted.
//
// Every request carries the headers
//
//	Tollgate-Notification-Id: <id>
//	Tollgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//
// Verify checks them as a receiver should (README.md shows it with
// openssl). The Guard refuses to connect to link-local addresses (cloud
// metadata) always, and to loopback and private ones unless told to
// (--webhook-allow-private), checked on the address dialled.
//
// Stats counts what was noticed, attempted, delivered, failed and given
// up, for the process to publish with its metrics; List lists the
// deliveries for the admin API.
package notify
