package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The CLI against a running serve: keys, plans, apply, usage.
func TestAdminCLI(t *testing.T) {
	dir, data, cfg := fixture(t)
	now := frozen
	n := start(t, data, cfg, &now)
	ep := "http://" + n.addrs.admin
	cli := func(args ...string) string {
		t.Helper()
		out, err := runCLI(append(args, "--endpoint", ep, "--data-dir", data)...)
		if err != nil {
			t.Fatalf("tollgate %v: %v", args, err)
		}
		return out
	}
	var key map[string]any
	json.Unmarshal([]byte(cli("keys", "create", "--name", "cli-key", "--value", "cli-key-value-000000000001", "--enabled", "-o", "json")), &key)
	if key["value"] != "cli-key-value-000000000001" {
		t.Fatalf("keys create: %v", key)
	}
	table := cli("keys", "list", "--name", "cli")
	if !strings.Contains(table, "cli-key") || !strings.Contains(table, "cli-…") || !strings.HasPrefix(table, "ID") {
		t.Errorf("keys list table:\n%s", table)
	}
	var plans []map[string]any
	json.Unmarshal([]byte(cli("plans", "list", "-o", "json")), &plans)
	if len(plans) != 1 {
		t.Fatalf("plans list: %v", plans)
	}
	free := plans[0]["id"].(string)
	var updated map[string]any
	json.Unmarshal([]byte(cli("plans", "update", free, "--set", "/quota/limit=7", "--set", "/description=seven a day", "-o", "json")), &updated)
	if q, _ := updated["quota"].(map[string]any); q["limit"] != float64(7) || updated["description"] != "seven a day" {
		t.Errorf("plans update: %v", updated)
	}
	if _, err := runCLI("plans", "update", free, "--set", "/quota/period=YEAR", "--endpoint", ep, "--data-dir", data); err == nil || !strings.Contains(err.Error(), "quota.period") {
		t.Errorf("invalid plans update: %v", err)
	}
	cli("keys", "update", key["id"].(string), "--enabled", "false")
	if got := cli("keys", "get", key["id"].(string), "-o", "yaml"); !strings.Contains(got, "enabled: false") {
		t.Errorf("keys get -o yaml:\n%s", got)
	}
	cli("keys", "update", key["id"].(string), "--enabled", "true")
	cli("plans", "add-key", free, key["id"].(string))
	if got := cli("plans", "keys", free, "-o", "csv"); !strings.Contains(got, key["id"].(string)+",cli-key,API_KEY,cli-…") {
		t.Errorf("plans keys -o csv:\n%s", got)
	}
	gw := "http://" + n.addrs.gateway + "/prod/items"
	if code, _ := get(t, gw, "cli-key-value-000000000001"); code != 200 {
		t.Fatalf("the CLI's key at the gateway: %d", code)
	}
	cli("usage", "update", "--plan", free, "--key", key["id"].(string), "--remaining", "0")
	if code, _ := get(t, gw, "cli-key-value-000000000001"); code != 429 {
		t.Fatalf("after usage update --remaining 0: %d", code)
	}

	// apply -f: the same file twice changes nothing the second time.
	extra := filepath.Join(dir, "extra.yaml")
	os.WriteFile(extra, []byte("usagePlans:\n  - name: Gold\n    apiStages: []\n"), 0o600)
	if out := cli("apply", "-f", extra); !strings.Contains(out, `created usage plan "Gold"`) {
		t.Errorf("first apply: %s", out)
	}
	if out := cli("apply", "-f", extra); strings.TrimSpace(out) != "unchanged" {
		t.Errorf("second apply: %s", out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("usagePlans:\n  - name: Bad\n    quota: {limit: 1, period: YEAR}\n"), 0o600)
	if _, err := runCLI("apply", "-f", bad, "--endpoint", ep, "--data-dir", data); err == nil || !strings.Contains(err.Error(), "quota.period") {
		t.Errorf("bad apply: %v", err)
	}

	csvFile := filepath.Join(dir, "keys.csv")
	os.WriteFile(csvFile, []byte("Name,Key,Enabled\nimp-1,imported-key-value-000000001,true\nimp-2,short,true\n"), 0o600)
	if out := cli("keys", "import", csvFile); !strings.Contains(out, "imported 1 keys") || !strings.Contains(out, "warning: Row 3") {
		t.Errorf("keys import: %s", out)
	}
	// Restart to flush the usage events, then read them back.
	n.stop(t)
	n = start(t, data, cfg, &now)
	ep = "http://" + n.addrs.admin
	if out := cli("usage", "billing", "--month", "2026-11", "-o", "csv"); !strings.Contains(out, "customer_id,key_id,key_name,plan_name,requests_admitted") ||
		!strings.Contains(out, ",cli-key,Free Tier,1,7,DAY,0,0,1\n") {
		t.Errorf("usage billing:\n%s", out)
	}
	if out := cli("usage", "get", "--plan", free, "--key", key["id"].(string), "--from", "2026-11-26", "--to", "2026-11-27"); !strings.Contains(out, "2026-11-26") ||
		!strings.Contains(out, "2026-11-27") {
		t.Errorf("usage get:\n%s", out)
	}
	// Every report is bounded; past the bound, the server's 400 names the
	// parameter and the limit.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"usage", "get", "--plan", free, "--from", "0001-01-01", "--to", "9999-12-31"}, `startDate: "0001-01-01" is outside 1970-01-01 ... 2105-12-31`},
		{[]string{"usage", "get", "--plan", free, "--from", "2026-01-01", "--to", "2026-12-31"}, "at most 90 days"},
		{[]string{"usage", "export", "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-03T00:00:00Z", "--granularity", "minute"}, "granularity=minute reads at most 1 day"},
		{[]string{"usage", "export", "--from", "0001-01-01T00:00:00Z", "--granularity", "month"}, "from: 0001-01-01T00:00:00Z is outside"},
		{[]string{"usage", "export", "--from", "2026-11-01T00:00:00Z", "--key", "nobody"}, `key: no API key has the id or name "nobody"`},
		{[]string{"usage", "top", "--from", "2025-01-01T00:00:00Z"}, "/v1/usage/top reads at most 92 days"},
		{[]string{"usage", "billing", "--month", "0001-01"}, "month: 0001-01 is outside 1970-01 ... 2105-12"},
	} {
		if _, err := runCLI(append(tt.args, "--endpoint", ep, "--data-dir", data)...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("tollgate %v: %v, want an error containing %q", tt.args, err, tt.want)
		}
	}

	if _, err := runCLI("keys", "list", "--endpoint", ep, "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "no admin token") {
		t.Errorf("without credentials: %v", err)
	}
	if _, err := runCLI("keys", "list", "--endpoint", ep, "--data-dir", data, "-o", "xml"); err == nil || !strings.Contains(err.Error(), `-o "xml"`) {
		t.Errorf("bad -o: %v", err)
	}
	// With access keys and no token, the CLI signs with SigV4.
	t.Setenv("TOLLGATE_ADMIN_ACCESS_KEY_ID", "TGAKWRONGWRONGWRONG0")
	t.Setenv("TOLLGATE_ADMIN_SECRET_ACCESS_KEY", "wrong")
	if _, err := runCLI("keys", "list", "--endpoint", ep, "--data-dir", data); err == nil || !strings.Contains(err.Error(), "UnrecognizedClientException") {
		t.Errorf("signed with unknown keys: %v", err)
	}
}

func TestCellsFormatNumbersPlainly(t *testing.T) {
	got := cells(map[string]any{"n": float64(1234567), "f": 2.5, "b": true, "s": "x"}, []string{"n", "f", "b", "s", "missing"})
	if strings.Join(got, "|") != "1234567|2.5|true|x|" {
		t.Errorf("cells = %q", got)
	}
}
