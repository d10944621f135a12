// Package console is tollgate's web console: the pages billing, support
// and account people open instead of writing curl or SQL. reportapi
// mounts it at /ui/ of the admin listener (Config.Console) of serve and
// reportapi, embedded or in a fleet, on SQLite or ClickHouse alike.
//
// What it shows and changes all goes through the admin API's own routes,
// in process (reportapi.Console.Call, as the signed-in user): the
// numbers are the API's answers (GetUsage, /v1/usage, /v1/usage/top,
// /v1/reports/billing), and a change (enable or disable a key, create
// one, move it to another plan with POST /v1/apikeys/{id}/move, set what
// remains of its quota with UpdateUsage) is validated, audited with the
// actor "console:<name>" and refused exactly as over the network; a
// refusal shows the API's error. Only a key's last changes are read
// directly, from the end of the audit log (catalog.AuditLog.Recent,
// bounded by auditScan).
//
// Pages (pages.go) are server-rendered html/template; charts are SVG
// written by the server (chart.go): no script at all (the
// Content-Security-Policy forbids it), no asset from elsewhere, one small
// stylesheet, all embedded in the binary. Every change is two steps
// (change.go): a GET shows in words what will happen, and its form POSTs
// the change.
//
// Signing in (session.go) takes the admin bearer token and a name for
// the audit log. The session is a cookie signed with a key derived from
// the token (HttpOnly, SameSite=Strict, Path=/ui/, Secure behind TLS,
// 8 hours by default), so the server keeps nothing per session and every
// node with the same token accepts it; without a token no session is
// valid. Signing out revokes the session on that node until it would have
// expired (a node that restarts, or another node, accepts it until then;
// changing the token ends every session). Each change carries a CSRF
// token bound to the session, and net/http's CrossOriginProtection
// refuses a POST a browser marks as cross-origin, sign-in included. What
// a caller who is not signed in can cost is bounded: forms of 8 KiB,
// failed sign-ins 5 a second (burst 20) in all, then 429 (the right token
// is taken all the same: guesses must not lock the operators out).
//
// Scale: a plan's keys are paged 50 at a time from GetUsage's position
// (a page costs its size at any number of keys); its order by use, and
// its heaviest keys, are the store's ranking of the period
// (/v1/usage/top, 1,000 keys deep: on the embedded store, a DAY or
// MONTH period's rows in one pass), drawn only on that view and kept
// 30 s per plan and period (topCache); billing pages the month's rows
// 100 at a time. Ranges are whole hours or days, which the stores answer
// from their rollups. TestConsoleSpeed (make bench-console) times every
// page against 300 ms.
package console
