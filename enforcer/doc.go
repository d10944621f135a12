// Package enforcer is the gateway: it routes each request to an API
// stage, identifies its key, applies the key's usage plan (throttles,
// quota) in AWS API Gateway's order, proxies what it admits and meters
// every request it answers with one usage event.
//
// Serve a Gateway with NewServer on a listener from WrapListener:
//
//	gw, err := enforcer.New(enforcer.Config{Events: queue}, cat)
//	srv := enforcer.NewServer(gw, enforcer.ServerConfig{})
//	err = srv.Serve(enforcer.WrapListener(ln))
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
