package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
)

// A key's expiry end to end on serve: set by the CLI (--expires-at) and
// by the AWS CLI as a tag, shown by both, and the gateway answers 403
// from that instant on (serve's clock, moved by the test); an expiry in
// the past is refused naming the field; --expires-at never lifts it.
func TestKeyExpiryEndToEnd(t *testing.T) {
	_, data, cfg := fixture(t)
	// The AWS CLI signs with the real clock: serve's starts there.
	now := time.Now().UTC().Truncate(time.Second)
	n := start(t, data, cfg, &now)
	ep := "http://" + n.addrs.admin
	cli := func(args ...string) (string, error) {
		return runCLI(append(args, "--endpoint", ep, "--data-dir", data)...)
	}
	var plans []map[string]any
	out, err := cli("plans", "list", "-o", "json")
	if err != nil || json.Unmarshal([]byte(out), &plans) != nil || len(plans) != 1 {
		t.Fatalf("plans list: %v %s", err, out)
	}
	free := plans[0]["id"].(string)
	at := now.Add(time.Hour)
	var key map[string]any
	out, err = cli("keys", "create", "--name", "expiring", "--value", "expiring-value-0000000001", "--enabled", "--expires-at", catalog.FormatExpiresAt(at), "-o", "json")
	if err != nil || json.Unmarshal([]byte(out), &key) != nil || key["expiresAt"] != catalog.FormatExpiresAt(at) {
		t.Fatalf("keys create --expires-at: %v %s", err, out)
	}
	id := key["id"].(string)
	if _, err := cli("plans", "add-key", free, id); err != nil {
		t.Fatal(err)
	}
	if _, err := cli("keys", "update", id, "--expires-at", catalog.FormatExpiresAt(now.Add(-time.Minute))); err == nil || !strings.Contains(err.Error(), "/expiresAt") || !strings.Contains(err.Error(), "not in the future") {
		t.Fatalf("an expiry in the past: %v", err)
	}
	gw := "http://" + n.addrs.gateway + "/prod/items"
	if code, _ := get(t, gw, "expiring-value-0000000001"); code != 200 {
		t.Fatalf("before the expiry: %d", code)
	}
	now = at
	if code, _ := get(t, gw, "expiring-value-0000000001"); code != 403 {
		t.Fatalf("at the expiry: %d, want 403", code)
	}
	if _, err := cli("keys", "update", id, "--expires-at", "never"); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, gw, "expiring-value-0000000001"); code != 200 {
		t.Fatalf("with the expiry lifted: %d", code)
	}
	entries, _, err := catalog.AuditLogAt(data+"/"+auditFile).Recent("", nil, 1, 1<<20)
	if err != nil || len(entries) != 1 || !strings.Contains(string(entries[0].Old), catalog.ExpiresAtTag) || strings.Contains(string(entries[0].New), catalog.ExpiresAtTag) {
		t.Fatalf("the audit log of lifting the expiry: %+v %v", entries, err)
	}

	// The AWS CLI sets it as a tag.
	awsBin, err := exec.LookPath("aws")
	if err != nil {
		if os.Getenv("TOLLGATE_REQUIRE_AWSCLI") == "1" {
			t.Fatal("aws CLI not found and TOLLGATE_REQUIRE_AWSCLI=1")
		}
		t.Skip("aws CLI not installed")
	}
	now = time.Now().UTC().Truncate(time.Second)
	creds := adminCreds(t, data)
	aws := func(args ...string) ([]byte, error) {
		c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(c, awsBin, append(append([]string{"apigateway"}, args...), "--endpoint-url", ep, "--output", "json")...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+creds.SecretAccessKey,
			"AWS_DEFAULT_REGION=us-east-1", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PAGER=",
			"AWS_MAX_ATTEMPTS=1", "AWS_EC2_METADATA_DISABLED=true")
		return cmd.CombinedOutput()
	}
	tag := catalog.FormatExpiresAt(now.Add(2 * time.Hour))
	b, err := aws("create-api-key", "--name", "aws-expiring", "--enabled", "--tags", catalog.ExpiresAtTag+"="+tag)
	var made map[string]any
	if err != nil || json.Unmarshal(b, &made) != nil {
		t.Fatalf("aws create-api-key --tags: %v %s", err, b)
	}
	if tags, _ := made["tags"].(map[string]any); tags[catalog.ExpiresAtTag] != tag {
		t.Fatalf("aws create-api-key answered %s", b)
	}
	b, err = aws("create-api-key", "--name", "aws-past", "--enabled", "--tags", catalog.ExpiresAtTag+"=2020-01-01T00:00:00Z")
	if err == nil || !strings.Contains(string(b), `tags["tollgate:expiresAt"]: 2020-01-01T00:00:00Z is not in the future`) {
		t.Fatalf("aws create-api-key with a past expiry: %v %s", err, b)
	}
}

// In a fleet, a key's expiry stops it on every enforcer at the instant
// itself: the enforcers' clocks (one clock here, moved by the test) are
// what decide, not when the change reached each of them.
func TestFleetKeyExpiresOnEveryEnforcerAtOnce(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	f := newFleet(t)
	ao := f.options(false, true)
	ao.config, ao.now = f.config, now
	admin := f.start(ao)
	var enforcers []*fleetNode
	for range 2 {
		o := f.options(true, false)
		o.now = now
		enforcers = append(enforcers, f.start(o))
	}
	plan := planID(t, admin, "Fleet")
	at := now().Add(time.Minute).Truncate(time.Second)
	code, key := admin.admin(t, "POST", "/apikeys", `{"name":"leaving","value":"leaving-fleet-value-0001","enabled":true,"expiresAt":"`+catalog.FormatExpiresAt(at)+`"}`)
	if code != 201 {
		t.Fatalf("create-api-key with expiresAt: %d %v", code, key)
	}
	if code, out := admin.admin(t, "POST", "/usageplans/"+plan+"/keys", `{"keyId":"`+key["id"].(string)+`","keyType":"API_KEY"}`); code != 201 {
		t.Fatalf("create-usage-plan-key: %d %v", code, out)
	}
	for _, e := range enforcers {
		e.waitStatus(t, "leaving-fleet-value-0001", 200, 10*time.Second)
	}
	clock.Store(at.UnixNano() - int64(time.Millisecond))
	for _, e := range enforcers {
		if code := e.status("leaving-fleet-value-0001"); code != 200 {
			t.Fatalf("a millisecond before the expiry, %s answered %d", e.addrs.gateway, code)
		}
	}
	clock.Store(at.UnixNano())
	for _, e := range enforcers {
		if code := e.status("leaving-fleet-value-0001"); code != 403 {
			t.Fatalf("at the expiry, %s answered %d", e.addrs.gateway, code)
		}
	}
}
