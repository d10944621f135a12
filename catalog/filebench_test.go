package catalog

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// bigFile renders a configuration file of n keys spread over four plans,
// as a customer-base import would look: YAML as an operator writes it, or
// JSON as a program generates it (indented, one field a line).
func bigFile(n int, asJSON bool) []byte {
	var b bytes.Buffer
	plans := []string{"Free Tier", "Premium Tier", "Enterprise Tier", "Custom Plan"}
	if asJSON {
		b.WriteString(`{
  "apis": [
    {
      "id": "abc123api",
      "stages": [{"name": "prod", "upstream": "http://127.0.0.1:9080"}],
      "resources": [{"path": "/items", "methods": {"GET": {"apiKeyRequired": true}}}]
    }
  ],
  "usagePlans": [
`)
		for i, p := range plans {
			sep := ","
			if i == len(plans)-1 {
				sep = ""
			}
			fmt.Fprintf(&b, `    {"name": %q, "throttle": {"rateLimit": 10, "burstLimit": 20}, "quota": {"limit": 1000, "period": "DAY"}, "apiStages": [{"apiId": "abc123api", "stage": "prod"}]}%s
`, p, sep)
		}
		b.WriteString("  ],\n  \"apiKeys\": [\n")
		for i := range n {
			if i > 0 {
				b.WriteString(",\n")
			}
			s := strconv.Itoa(1_000_000 + i)
			b.WriteString("    {\n      \"name\": \"customer-" + s + "\",\n")
			b.WriteString("      \"value\": \"value-of-customer-" + s + "\",\n")
			b.WriteString("      \"enabled\": true,\n")
			b.WriteString("      \"customerId\": \"c" + s + "\",\n")
			b.WriteString("      \"usagePlans\": [\"" + plans[i%len(plans)] + "\"]\n    }")
		}
		b.WriteString("\n  ]\n}\n")
		return b.Bytes()
	}
	b.WriteString(`apis:
  - id: abc123api
    stages: [{name: prod, upstream: "http://127.0.0.1:9080"}]
    resources: [{path: /items, methods: {GET: {apiKeyRequired: true}}}]
usagePlans:
`)
	for _, p := range plans {
		fmt.Fprintf(&b, "  - name: %s\n    throttle: {rateLimit: 10, burstLimit: 20}\n    quota: {limit: 1000, period: DAY}\n    apiStages: [{apiId: abc123api, stage: prod}]\n", p)
	}
	b.WriteString("apiKeys:\n")
	for i := range n {
		s := strconv.Itoa(1_000_000 + i)
		b.WriteString("  - name: customer-" + s + "\n")
		b.WriteString("    value: value-of-customer-" + s + "\n")
		b.WriteString("    enabled: true\n")
		b.WriteString("    customerId: c" + s + "\n")
		b.WriteString("    usagePlans: [" + plans[i%len(plans)] + "]\n")
	}
	return b.Bytes()
}

// BenchmarkParseFile reads files of 10k and 100k keys, YAML and JSON.
// A 1M-key file must be read well within the 30 s start budget:
// TOLLGATE_BENCH_1M=1 adds that size (~2.5 s and 320 MB as JSON on 2
// cores; ~20 s and 3.5 GB as YAML).
func BenchmarkParseFile(b *testing.B) {
	sizes := []int{10_000, 100_000}
	if os.Getenv("TOLLGATE_BENCH_1M") != "" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		for _, format := range []string{"yaml", "json"} {
			content := bigFile(n, format == "json")
			b.Run(fmt.Sprintf("keys=%d/%s", n, format), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(content)))
				for b.Loop() {
					f, err := ParseFile("big."+format, content)
					if err != nil {
						b.Fatal(err)
					}
					if len(f.Catalog.APIKeys) != n {
						b.Fatalf("%d keys, want %d", len(f.Catalog.APIKeys), n)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/key")
			})
		}
	}
}

// BenchmarkApplyFileNewKeys applies a file of 100k keys to an empty
// catalog (a first start), with the one-by-one path for comparison.
func BenchmarkApplyFileNewKeys(b *testing.B) {
	const n = 100_000
	content := bigFile(n, true)
	for _, bulk := range []bool{true, false} {
		b.Run(fmt.Sprintf("bulk=%v", bulk), func(b *testing.B) {
			bulkNewKeys = bulk
			defer func() { bulkNewKeys = true }()
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				f, err := ParseFile("big.json", content)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				tx := NewState().Begin()
				if _, err := ApplyFile(tx, f, time.Unix(1_800_000_000, 0)); err != nil {
					b.Fatal(err)
				}
				if tx.NumKeys() != n {
					b.Fatalf("%d keys", tx.NumKeys())
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/key")
		})
	}
}
