package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/benchkit"
)

// The keys the scenarios send.
const (
	validKey     = "loadtest-key-0000000000000001"
	throttledKey = "loadtest-key-0000000000000002"
	unknownKey   = "unknown-key-000000000000000000"
)

// plan is a usage plan's throttle, which tollgate's config and nginx's
// are both given.
type plan struct {
	name  string
	key   string // the one key on the plan
	rate  int    // tokens a second
	burst int    // the bucket's size
}

var (
	// loadPlan's limits are far beyond what a load test reaches, so the
	// gateway does all of its enforcement work without ever refusing.
	loadPlan = plan{name: "Load", key: validKey, rate: 1_000_000_000, burst: 1_000_000_000}
	// tightPlan refuses all but one request a second: the throttle
	// scenario.
	tightPlan = plan{name: "Tight", key: throttledKey, rate: 1, burst: 1}
)

// tollgateConfig is the tollgate config the harness runs with: one API
// with a prod stage on upstream and a key-protected GET /items, and the
// plans loadPlan and tightPlan, each with its key.
func tollgateConfig(upstream string) string {
	var plans, keys strings.Builder
	for _, p := range []plan{loadPlan, tightPlan} {
		fmt.Fprintf(&plans, `  - name: %s
    throttle: {rateLimit: %d, burstLimit: %d}
    quota: {limit: 1000000000000, period: DAY}
    apiStages:
      - apiId: loadapi
        stage: prod
`, p.name, p.rate, p.burst)
		fmt.Fprintf(&keys, `  - name: %s-key
    value: %s
    enabled: true
    usagePlans: [%s]
`, strings.ToLower(p.name), p.key, p.name)
	}
	return `apis:
  - id: loadapi
    name: load-api
    stages:
      - name: prod
        upstream: ` + upstream + `
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}}
usagePlans:
` + plans.String() + `apiKeys:
` + keys.String()
}

// tollgateAddrs are the addresses tollgate announced.
type tollgateAddrs struct{ gateway, admin string }

// startTollgate writes the config into dir and starts the tollgate binary
// at path with it on the data plane plane ("fasthttp", "net/http"), then
// waits until tollgate has announced both addresses on stderr and its
// admin /healthz answers 200, all within timeout. The process is kept by
// procs.
func startTollgate(ctx context.Context, procs *benchkit.Procs, path, dir, upstreamURL, plane string, env []string, timeout time.Duration) (tollgateAddrs, *benchkit.Proc, error) {
	configFile := filepath.Join(dir, "tollgate.yaml")
	dataDir := filepath.Join(dir, "data")
	if err := os.WriteFile(configFile, []byte(tollgateConfig(upstreamURL)), 0o644); err != nil {
		return tollgateAddrs{}, nil, fmt.Errorf("write tollgate config: %w", err)
	}
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		return tollgateAddrs{}, nil, fmt.Errorf("make tollgate data dir: %w", err)
	}

	gateway, admin := make(chan string, 1), make(chan string, 1)
	onLine := func(line string) {
		kind, addr, ok := benchkit.ListenLine(line)
		switch {
		case !ok:
		case kind == "gateway":
			offer(gateway, addr)
		case kind == "admin":
			offer(admin, addr)
		}
	}
	args := []string{"serve", "--config", configFile, "--listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--data-dir", dataDir, "--data-plane", plane}
	p, err := procs.StartProc(ctx, procConfig("tollgate "+plane, path, args, env, onLine))
	if err != nil {
		return tollgateAddrs{}, nil, err
	}
	deadline := time.Now().Add(timeout)
	var addrs tollgateAddrs
	if addrs.gateway, err = waitFor(ctx, p, gateway, time.Until(deadline), `"gateway listening" on stderr`); err != nil {
		return addrs, nil, err
	}
	if addrs.admin, err = waitFor(ctx, p, admin, time.Until(deadline), `"admin listening" on stderr`); err != nil {
		return addrs, nil, err
	}
	if err := waitHealthy(ctx, p, "http://"+addrs.admin+"/healthz", time.Until(deadline)); err != nil {
		return addrs, nil, err
	}
	return addrs, p, nil
}

// waitHealthy polls url until it answers 200, p exits, or timeout passes.
func waitHealthy(ctx context.Context, p *benchkit.Proc, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("health check: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if ctx.Err() != nil {
			return fmt.Errorf("health check: %w", ctx.Err())
		}
		if p.Exited() != nil || time.Now().After(deadline) {
			return fmt.Errorf("%s: GET %s did not answer 200 within %v (last: %s)\n%s", p.Name(), url, timeout, last, p.Failure())
		}
		benchkit.Pause(ctx, 50*time.Millisecond)
	}
}
