package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/poll"
)

const articleAPI = `
apis:
  - id: abc123api
    stages: [{name: prod, upstream: "{{UPSTREAM}}"}]
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}, POST: {apiKeyRequired: true}}
      - path: /reports
        methods: {GET: {apiKeyRequired: true}}
  - id: custom1api
    stages: [{name: prod, upstream: "{{UPSTREAM}}", basePath: /custom}]
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}, POST: {apiKeyRequired: true}}
      - path: /reports
        methods: {GET: {apiKeyRequired: true}}
`

// The article's workflow, step by step, with the real aws CLI pointed at
// tollgate's admin API; then the gateway enforces what it created, and
// get-usage reports it. Embedded (serve) and on a Kafka catalog (serve
// --kafka: the changes go through the config topic, the usage through the
// events topic).
func TestArticleWorkflowWithAWSCLI(t *testing.T) {
	t.Run("serve", func(t *testing.T) {
		articleWorkflow(t, func(t *testing.T, cfg, data string) serveAddrs {
			ctx, cancel := context.WithCancel(context.Background())
			ready := make(chan serveAddrs, 1)
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, options{gateway: true, admin: true, config: cfg, listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", dataDir: data,
					queueSize: 1024, flushEvery: 20 * time.Millisecond, shutdownTimeout: 5 * time.Second}, io.Discard, slog.New(slog.DiscardHandler), ready)
			}()
			t.Cleanup(func() { cancel(); <-done })
			select {
			case addrs := <-ready:
				return addrs
			case err := <-done:
				t.Fatal(err)
			}
			return serveAddrs{}
		})
	})
	t.Run("serve --kafka", func(t *testing.T) {
		articleWorkflow(t, func(t *testing.T, cfg, data string) serveAddrs {
			f := newFleet(t)
			o := f.options(true, true)
			o.config, o.dataDir, o.flushEvery = cfg, data, 20*time.Millisecond
			return f.start(o).addrs
		})
	})
}

func articleWorkflow(t *testing.T, start func(t *testing.T, cfg, data string) serveAddrs) {
	awsBin, err := exec.LookPath("aws")
	if err != nil {
		if os.Getenv("TOLLGATE_REQUIRE_AWSCLI") == "1" {
			t.Fatal("aws CLI not found and TOLLGATE_REQUIRE_AWSCLI=1")
		}
		t.Skip("aws CLI not installed")
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "apis.yaml")
	os.WriteFile(cfg, []byte(strings.ReplaceAll(articleAPI, "{{UPSTREAM}}", up.URL)), 0o600)
	t.Setenv("TOLLGATE_ADMIN_ACCESS_KEY_ID", "TGAKARTICLE000000000")
	t.Setenv("TOLLGATE_ADMIN_SECRET_ACCESS_KEY", "articlesecretarticlesecretarticlesecret0")

	addrs := start(t, cfg, filepath.Join(dir, "data"))

	aws := func(args ...string) map[string]any {
		t.Helper()
		c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(c, awsBin, append(append([]string{"apigateway"}, args...), "--endpoint-url", "http://"+addrs.admin, "--output", "json")...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=TGAKARTICLE000000000", "AWS_SECRET_ACCESS_KEY=articlesecretarticlesecretarticlesecret0",
			"AWS_DEFAULT_REGION=us-east-1", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PAGER=",
			"AWS_MAX_ATTEMPTS=1", "AWS_EC2_METADATA_DISABLED=true")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws %v: %v\n%s", args, err, out)
		}
		var m map[string]any
		if len(strings.TrimSpace(string(out))) > 0 {
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatalf("aws %v printed %s", args, out)
			}
		}
		return m
	}
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }

	// Step 2: create API keys.
	acme := aws("create-api-key", "--name", "Partner-Acme-Corp", "--description", "API key for Acme Corp integration", "--enabled")
	widget := aws("create-api-key", "--name", "Partner-Widget-Inc", "--description", "API key for Widget Inc", "--enabled")
	legacy := aws("create-api-key", "--name", "Legacy-Client", "--value", "custom-api-key-value-here-min-20-chars", "--enabled")
	if str(legacy, "value") != "custom-api-key-value-here-min-20-chars" || len(str(acme, "value")) != 40 {
		t.Fatalf("created keys: %v %v", acme, legacy)
	}
	// Step 3: the tiers.
	free := aws("create-usage-plan", "--name", "Free Tier", "--description", "Free plan for evaluation",
		"--throttle", "burstLimit=20,rateLimit=10", "--quota", "limit=100,period=DAY", "--api-stages", "apiId=abc123api,stage=prod")
	premium := aws("create-usage-plan", "--name", "Premium Tier", "--description", "Premium plan for production use",
		"--throttle", "burstLimit=200,rateLimit=100", "--quota", "limit=10000,period=DAY", "--api-stages", "apiId=abc123api,stage=prod")
	aws("create-usage-plan", "--name", "Enterprise Tier", "--description", "Enterprise plan with high limits",
		"--throttle", "burstLimit=1000,rateLimit=500", "--quota", "limit=100000,period=DAY", "--api-stages", "apiId=abc123api,stage=prod")
	custom := aws("create-usage-plan", "--name", "Custom Plan", "--api-stages",
		`[{"apiId": "custom1api", "stage": "prod", "throttle": {"/items/GET": {"burstLimit": 100, "rateLimit": 50}, "/items/POST": {"burstLimit": 20, "rateLimit": 10}, "/reports/GET": {"burstLimit": 1, "rateLimit": 0.1}}}]`,
		"--throttle", "burstLimit=50,rateLimit=25", "--quota", "limit=5000,period=DAY")
	if q, _ := free["quota"].(map[string]any); q["offset"] != float64(0) || q["period"] != "DAY" {
		t.Errorf("free plan quota %v: offset must be echoed as 0", free["quota"])
	}
	// Step 4: keys into plans.
	aws("create-usage-plan-key", "--usage-plan-id", str(premium, "id"), "--key-id", str(acme, "id"), "--key-type", "API_KEY")
	aws("create-usage-plan-key", "--usage-plan-id", str(free, "id"), "--key-id", str(widget, "id"), "--key-type", "API_KEY")
	aws("create-usage-plan-key", "--usage-plan-id", str(custom, "id"), "--key-id", str(acme, "id"), "--key-type", "API_KEY")

	// The day the requests below are counted in (taken before them, so
	// that a run across midnight UTC fails the usage check loudly rather
	// than reading the wrong day).
	today := time.Now().UTC().Format("2006-01-02")
	// The gateway enforces it at once.
	gw := "http://" + addrs.gateway
	if code, _ := get(t, gw+"/prod/items", str(widget, "value")); code != 200 {
		t.Fatalf("widget on the free tier: %d", code)
	}
	if code, _ := get(t, gw+"/prod/items", str(legacy, "value")); code != 403 {
		t.Fatalf("legacy key in no plan: %d, want 403", code)
	}
	if code, _ := get(t, gw+"/custom/reports", str(acme, "value")); code != 200 {
		t.Fatalf("acme on the custom plan: %d", code)
	}
	if code, body := get(t, gw+"/custom/reports", str(acme, "value")); code != 429 || body != `{"message":"Too Many Requests"}` {
		t.Fatalf("the /reports/GET override (burst 1): %d %s", code, body)
	}
	for i := 0; i < 4; i++ {
		get(t, gw+"/prod/items", str(widget, "value"))
	}

	// The dashboard's view: plan keys, then get-usage per key.
	keys := aws("get-usage-plan-keys", "--usage-plan-id", str(free, "id"))
	items, _ := keys["items"].([]any)
	if len(items) != 1 || str(items[0].(map[string]any), "name") != "Partner-Widget-Inc" {
		t.Fatalf("get-usage-plan-keys: %v", keys)
	}
	var remaining float64
	// The store is written every 20ms; the CLI takes longer than that.
	poll.UntilOK(t, 5*time.Second, 50*time.Millisecond, "get-usage counts the 5 requests", func() error {
		u := aws("get-usage", "--usage-plan-id", str(free, "id"), "--key-id", str(widget, "id"), "--start-date", today, "--end-date", today)
		vals, _ := u["items"].(map[string]any)
		days, _ := vals[str(widget, "id")].([]any)
		var used float64
		if len(days) == 1 {
			pair := days[0].([]any)
			used, remaining = pair[0].(float64), pair[1].(float64)
		}
		if used != 5 {
			return fmt.Errorf("get-usage used = %v, want 5", used)
		}
		return nil
	})
	if remaining != 95 {
		t.Errorf("remaining = %v, want 95", remaining)
	}
	// update-usage: two requests left today, then Limit Exceeded.
	u := aws("update-usage", "--usage-plan-id", str(free, "id"), "--key-id", str(widget, "id"),
		"--patch-operations", "op=replace,path=/remaining,value=2")
	if vals, _ := u["items"].(map[string]any); vals == nil {
		t.Errorf("update-usage printed %v", u)
	}
	for i, want := range []int{200, 200, 429} {
		if code, _ := get(t, gw+"/prod/items", str(widget, "value")); code != want {
			t.Fatalf("after update-usage, request %d: %d, want %d", i, code, want)
		}
	}
	// The article's boto3 dashboard lists the plan's keys and usage.
	if out, ran := boto3Dashboard(t, "http://"+addrs.admin, str(free, "id")); ran &&
		(!strings.Contains(out, `"key_name": "Partner-Widget-Inc"`) || !strings.Contains(out, `"total_requests": 7`)) {
		t.Errorf("dashboard.py printed %q, want Partner-Widget-Inc with 7 requests", out)
	}
	// Removing the key from its plan takes effect at once.
	aws("delete-usage-plan-key", "--usage-plan-id", str(free, "id"), "--key-id", str(widget, "id"))
	if code, _ := get(t, gw+"/prod/items", str(widget, "value")); code != 403 {
		t.Fatalf("after delete-usage-plan-key: %d, want 403", code)
	}
}

// boto3Dashboard runs testdata/dashboard.py (the article's script) with
// Python's boto3. TOLLGATE_REQUIRE_BOTO3=1 (CI) makes a missing boto3 a
// failure instead of a skip.
func boto3Dashboard(t *testing.T, endpoint, planID string) (out string, ran bool) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(py, "-c", "import boto3").Run()
	}
	if err != nil {
		if os.Getenv("TOLLGATE_REQUIRE_BOTO3") == "1" {
			t.Fatalf("python3 with boto3 not found and TOLLGATE_REQUIRE_BOTO3=1: %v", err)
		}
		t.Log("python3 with boto3 not installed: dashboard check skipped")
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/dashboard.py", planID)
	cmd.Env = append(os.Environ(), "TOLLGATE_ENDPOINT="+endpoint, "AWS_ACCESS_KEY_ID=TGAKARTICLE000000000",
		"AWS_SECRET_ACCESS_KEY=articlesecretarticlesecretarticlesecret0", "AWS_DEFAULT_REGION=eu-west-1",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dashboard.py: %v\n%s", err, b)
	}
	return string(b), true
}
