// Package reportapi is tollgate's admin listener: the HTTP API through
// which the catalog is read and changed and usage is reported, on a
// go-chi/chi router (New, server.go).
//
// GET /healthz and GET /readyz answer anyone (Config.Ready, Config.Health).
// Every other request, unknown paths included, is authenticated first
// (auth.go: AWS Signature Version 4, checked with the AWS SDK's own
// signer, or a bearer token), then throttled (throttle.go, AdminThrottle).
// Behind that:
//
//   - the AWS API Gateway REST API (2015-07-09) for API keys (apikeys.go,
//     ImportApiKeys included) and usage plans, their keys, GetUsage and
//     UpdateUsage (usageplans.go), with AWS's error bodies and
//     x-amzn-ErrorType;
//   - POST /v1/apply, a configuration file merged into the catalog as at
//     start (apply.go);
//   - POST /v1/apikeys/{id}/move, a key moved from one usage plan to
//     another in one change (usageplans.go moveKey), which AWS's
//     DeleteUsagePlanKey and CreateUsagePlanKey cannot do without
//     leaving the key in no plan between them;
//   - the native usage API, /v1/usage, /v1/usage/top and
//     /v1/reports/billing, and /openapi.json (native.go); and
//     /v1/usage/lost, the usage enforcers reported they dropped, on a
//     MinuteStore that is also a LostStore (lost.go: ClickHouse; 501
//     elsewhere);
//   - /metrics, the process's registry (Config.Metrics, served by
//     promhttp) and, with Config.Profiling, /debug/pprof.
//
// With Config.Registerer the API times every request by operation: its
// method and the pattern of the route chi matched ("/apikeys/{id}",
// never the path asked for; "unmatched" when none did), and shows the
// audit log's writes (Config.Audit): metrics.go.
//
// The package declares what it needs and the caller wires it: a
// CatalogStore (catalog.Manager: every change validated, audited and
// committed, locally or to the fleet's config log), a UsageStore for
// GetUsage (Daily), a MinuteStore for the native reports (Report, one
// aggregating query of the store) and a QuotaAdjuster for UpdateUsage.
// usage/sqlitestore and usage/chstore are both UsageStore and MinuteStore;
// a nil one leaves its endpoints out. A MinuteStore that is also a
// BillingStore or a TopStore (sqlitestore: per-month and per-day rows
// kept as events arrive) answers billing, and top consumers of whole
// days, from those; others through Report (native.go).
//
// With Config.Console, the web console (package console) is mounted at
// /ui/: it signs its users in itself and calls this API in process
// (Console.Call), outside the admin throttle.
//
// A SigV4 signature covers the body, so bodies are read before their
// sender is known; server.go and auth.go bound what that costs (a size
// per route, a budget shared by the bodies being read, a deadline), and
// WrapListener bounds the connections held open (MaxConns).
package reportapi
