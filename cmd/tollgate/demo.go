package main

import (
	"encoding/json"
	"net/http"
	"time"
)

// newDemoUpstream is a small service for `make run` and the README: it
// answers any path with JSON describing the request it received, so a
// user can see what the gateway forwarded (path without the stage, the
// X-Tollgate-* headers, no x-api-key).
func newDemoUpstream() *http.Server {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"service":   "tollgate demo upstream",
			"method":    r.Method,
			"path":      r.URL.Path,
			"query":     r.URL.RawQuery,
			"keyId":     r.Header.Get("X-Tollgate-Key-Id"),
			"planId":    r.Header.Get("X-Tollgate-Plan-Id"),
			"hasApiKey": r.Header.Get("X-Api-Key") != "",
		})
	})
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
}
