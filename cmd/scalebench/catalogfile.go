package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
)

// The catalog every size uses: one API with a key-protected GET /items on
// stage prod, one plan whose limits no benchmark request reaches, and the
// keys, all in that plan.
const (
	apiID    = "benchapi"
	planName = "Bench"
	// gatewayPath is what the benchmark requests at a gateway.
	gatewayPath = "/prod/items"
)

// fileKeyValue is the value of the file's key i: deterministic, so that
// the benchmark can call the gateway with any key, and 25 characters
// (values take 20–128 printable ASCII characters).
func fileKeyValue(i int) string { return fmt.Sprintf("scalebench-key-%010d", i) }

func fileKeyName(i int) string { return fmt.Sprintf("sb-%08d", i) }

// writeCatalogFile writes the configuration file of n keys to path,
// streaming: one key a line, whatever n. The upstream is where admitted
// requests go.
func writeCatalogFile(ctx context.Context, path string, n int, upstream string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write catalog file: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintf(w, `{"apis": [{"id": %q, "stages": [{"name": "prod", "upstream": %q}],
  "resources": [{"path": "/items", "methods": {"GET": {"apiKeyRequired": true}}}]}],
"usagePlans": [{"name": %q, "throttle": {"rateLimit": 1000000, "burstLimit": 1000000},
  "quota": {"limit": 1000000000, "period": "DAY"}, "apiStages": [{"apiId": %q, "stage": "prod"}]}],
"apiKeys": [
`, apiID, upstream, planName, apiID)
	for i := range n {
		if i%65536 == 0 && ctx.Err() != nil {
			f.Close()
			return ctx.Err()
		}
		sep := ","
		if i == n-1 {
			sep = ""
		}
		fmt.Fprintf(w, `{"name": %q, "value": %q, "enabled": true, "usagePlans": [%q]}%s`+"\n",
			fileKeyName(i), fileKeyValue(i), planName, sep)
	}
	w.WriteString("]}\n")
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write catalog file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write catalog file: %w", err)
	}
	return nil
}

// importCSV is an ImportApiKeys file of n keys, all in the plan planID,
// whose values differ from the catalog file's.
func importCSV(n int, planID string) []byte {
	b := make([]byte, 0, n*64)
	b = append(b, "Name,Key,Enabled,UsagePlanIds\n"...)
	for i := range n {
		b = fmt.Appendf(b, "imp-%08d,scalebench-import-%010d,true,%s\n", i, i, planID)
	}
	return b
}
