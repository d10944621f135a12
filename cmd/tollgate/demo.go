package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"
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

func newDemoUpstreamCmd() *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "demo-upstream",
		Short: "Run only the demo upstream (it echoes each request it receives as JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("demo upstream listen: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "demo upstream listening on %s\n", ln.Addr())
			return serveUntil(cmd.Context(), newDemoUpstream(), ln, 10*time.Second)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9080", "listen address")
	return cmd
}
