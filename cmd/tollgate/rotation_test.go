package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/poll"
)

// A rotation end to end on serve, through the CLI: keys rotate --grace
// prints the new value once with both fingerprints; both values work
// through the gateway for the same key; keys get shows both
// fingerprints; --finish refuses the old value at once, and the end of
// the grace would have refused it at that instant (serve's clock, moved
// by the test); --cancel gives it back. Bad input names the field.
func TestKeyRotationEndToEnd(t *testing.T) {
	_, data, cfg := fixture(t)
	now := time.Now().UTC().Truncate(time.Second)
	n := start(t, data, cfg, &now)
	ep := "http://" + n.addrs.admin
	cli := func(args ...string) (string, error) {
		return runCLI(append(args, "--endpoint", ep, "--data-dir", data)...)
	}
	// A plan of its own: the fixture's has a quota of 5 a day, and the
	// clock stands still.
	var plan map[string]any
	out, err := cli("plans", "create", "--name", "Rotation", "--rate", "1000", "--burst", "1000", "--api-stage", "abc123api:prod", "-o", "json")
	if err != nil || json.Unmarshal([]byte(out), &plan) != nil {
		t.Fatalf("plans create: %v %s", err, out)
	}
	const oldValue = "rotating-value-0000000001"
	var key map[string]any
	out, err = cli("keys", "create", "--name", "rotating", "--value", oldValue, "--enabled", "-o", "json")
	if err != nil || json.Unmarshal([]byte(out), &key) != nil {
		t.Fatalf("keys create: %v %s", err, out)
	}
	id := key["id"].(string)
	if _, err := cli("plans", "add-key", plan["id"].(string), id); err != nil {
		t.Fatal(err)
	}
	gw := "http://" + n.addrs.gateway + "/prod/items"
	if code, _ := get(t, gw, oldValue); code != 200 {
		t.Fatalf("before the rotation: %d", code)
	}

	for _, bad := range []struct{ args, want string }{
		{"--grace -1h", "grace: -1h0m0s is negative"},
		{"--grace 31d", `grace: "31d" is not a duration`},
		{"--grace 744h", "grace: 744h0m0s is over the longest grace, 30 days"},
		{"", "give --grace"},
		{"--grace 1h --finish", "give one of"},
	} {
		args := append([]string{"keys", "rotate", id}, strings.Fields(bad.args)...)
		if _, err := cli(args...); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("keys rotate %s: %v, want %q", bad.args, err, bad.want)
		}
	}

	out, err = cli("keys", "rotate", id, "--grace", "24h")
	if err != nil {
		t.Fatalf("keys rotate --grace 24h: %v %s", err, out)
	}
	m := regexp.MustCompile(`shown this once:\s+(\S{40})\s`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keys rotate printed no new value:\n%s", out)
	}
	newValue := m[1]
	oldFP, newFP := catalog.Fingerprint(catalog.HashKey(oldValue)), catalog.Fingerprint(catalog.HashKey(newValue))
	// The admin API reads the real clock (serve's gateway the test's):
	// the end of the grace is 24 h from the call.
	m = regexp.MustCompile(`previous value: fingerprint ` + oldFP + `, refused from (\S+)\n`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "new value:      fingerprint "+newFP) {
		t.Fatalf("keys rotate printed\n%s\nwithout both fingerprints", out)
	}
	until := m[1]
	if u, err := catalog.ParseExpiresAt(until); err != nil || u.Sub(time.Now()) > 24*time.Hour || u.Sub(time.Now()) < 24*time.Hour-time.Minute {
		t.Fatalf("the grace ends at %s, not 24 h from now", until)
	}
	for _, v := range []string{oldValue, newValue} {
		if code, body := get(t, gw, v); code != 200 || !strings.Contains(body, id) && body != "" {
			t.Fatalf("in the grace, %s: %d %s", v, code, body)
		}
	}
	out, err = cli("keys", "get", id)
	if err != nil || !strings.Contains(out, newFP) || !strings.Contains(out, oldFP) || !strings.Contains(out, until) || strings.Contains(out, newValue) {
		t.Fatalf("keys get in the grace: %v\n%s", err, out)
	}
	if out, err := cli("keys", "list", "-o", "csv"); err != nil || !strings.Contains(out, "valueFingerprint,previousValueFingerprint,previousValueExpiresAt") || !strings.Contains(out, newFP+","+oldFP+","+until) {
		t.Fatalf("keys list in the grace: %v\n%s", err, out)
	}
	// Rotating again in the grace is refused, saying how to end it.
	if _, err := cli("keys", "rotate", id, "--grace", "1h"); err == nil || !strings.Contains(err.Error(), until) || !strings.Contains(err.Error(), "finish") {
		t.Fatalf("a second rotation in the grace: %v", err)
	}
	// --finish: refused at once, however long the grace had left.
	if out, err := cli("keys", "rotate", id, "--finish"); err != nil || !strings.Contains(out, "rotation finished") {
		t.Fatalf("keys rotate --finish: %v %s", err, out)
	}
	if code, _ := get(t, gw, oldValue); code != 403 {
		t.Fatalf("after --finish, the old value: %d, want 403", code)
	}
	if code, _ := get(t, gw, newValue); code != 200 {
		t.Fatalf("after --finish, the new value: %d", code)
	}
	if _, err := cli("keys", "rotate", id, "--finish"); err == nil || !strings.Contains(err.Error(), "no rotation in its grace") {
		t.Fatalf("--finish twice: %v", err)
	}
	// --cancel: the previous value back, the new one refused.
	out, err = cli("keys", "rotate", id, "--grace", "1h", "-o", "json")
	var third map[string]any
	if err != nil || json.Unmarshal([]byte(out), &third) != nil || third["previousValueFingerprint"] != newFP {
		t.Fatalf("keys rotate -o json: %v %s", err, out)
	}
	thirdValue := third["value"].(string)
	if out, err := cli("keys", "rotate", id, "--cancel"); err != nil || !strings.Contains(out, "rotation cancelled") || !strings.Contains(out, newFP) {
		t.Fatalf("keys rotate --cancel: %v %s", err, out)
	}
	if code, _ := get(t, gw, thirdValue); code != 403 {
		t.Fatalf("after --cancel, the cancelled value: %d, want 403", code)
	}
	if code, _ := get(t, gw, newValue); code != 200 {
		t.Fatalf("after --cancel, the value given back: %d", code)
	}
	// The end of a grace, on serve's clock: the old value refused at the
	// instant.
	out, err = cli("keys", "rotate", id, "--grace", "90m", "-o", "json")
	var fourth map[string]any
	if err != nil || json.Unmarshal([]byte(out), &fourth) != nil {
		t.Fatalf("keys rotate: %v %s", err, out)
	}
	at, err := catalog.ParseExpiresAt(fourth["previousValueExpiresAt"].(string))
	if err != nil {
		t.Fatal(err)
	}
	now = at.Add(-time.Second)
	if code, _ := get(t, gw, newValue); code != 200 {
		t.Fatalf("a second before the end of the grace: %d", code)
	}
	now = at
	if code, _ := get(t, gw, newValue); code != 403 {
		t.Fatalf("at the end of the grace: %d, want 403", code)
	}
	// The audit log: the three actions, the fingerprints, no value.
	entries, _, err := catalog.AuditLogAt(data+"/"+auditFile).Recent(id, nil, 10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
		for _, v := range []string{oldValue, newValue, thirdValue, catalog.HashKey(newValue), catalog.HashKey(oldValue)} {
			if strings.Contains(string(e.Old)+string(e.New), v) {
				t.Errorf("%s: a value or its hash in the audit log", e.Action)
			}
		}
	}
	if got := strings.Join(actions, "\n"); !strings.Contains(got, "/rotate/cancel") || !strings.Contains(got, "/rotate/finish") || !strings.Contains(got, id+"/rotate\n") {
		t.Errorf("audited actions:\n%s", got)
	}
}

// In a fleet, a rotation reaches every enforcer: both values work on
// each during the grace, and each refuses the old value at the instant
// the grace ends (their clocks decide); an enforcer restarted in the
// grace (from its catalog snapshot, Kafka unreachable) still accepts
// the old value and refuses it at the same instant.
func TestFleetKeyRotationWithARestart(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	f := newFleet(t)
	ao := f.options(false, true)
	ao.config, ao.now = f.config, now
	admin := f.start(ao)
	var opts []options
	var enforcers []*fleetNode
	for range 2 {
		o := f.options(true, false)
		o.now = now
		opts = append(opts, o)
		enforcers = append(enforcers, f.start(o))
	}
	plan := planID(t, admin, "Fleet")
	const oldValue = "rotating-fleet-value-0001"
	code, key := admin.admin(t, "POST", "/apikeys", `{"name":"rotating","value":"`+oldValue+`","enabled":true}`)
	if code != 201 {
		t.Fatalf("create-api-key: %d %v", code, key)
	}
	id := key["id"].(string)
	if code, out := admin.admin(t, "POST", "/usageplans/"+plan+"/keys", `{"keyId":"`+id+`","keyType":"API_KEY"}`); code != 201 {
		t.Fatalf("create-usage-plan-key: %d %v", code, out)
	}
	for _, e := range enforcers {
		e.waitStatus(t, oldValue, 200, 10*time.Second)
	}
	code, rotated := admin.admin(t, "POST", "/v1/apikeys/"+id+"/rotate", `{"grace":"10m"}`)
	if code != 201 {
		t.Fatalf("rotate: %d %v", code, rotated)
	}
	newValue := rotated["value"].(string)
	at, err := catalog.ParseExpiresAt(rotated["previousValueExpiresAt"].(string))
	if err != nil {
		t.Fatal(err)
	}
	// GetApiKey shows both fingerprints. (The admin API reads the real
	// clock: the end of the grace is checked on the enforcers.)
	if _, k := admin.admin(t, "GET", "/apikeys/"+id, ""); k["previousValueFingerprint"] != catalog.Fingerprint(catalog.HashKey(oldValue)) ||
		k["valueFingerprint"] != catalog.Fingerprint(catalog.HashKey(newValue)) || k["previousValueExpiresAt"] != rotated["previousValueExpiresAt"] {
		t.Fatalf("GetApiKey in the grace: %v", k)
	}
	for _, e := range enforcers {
		e.waitStatus(t, newValue, 200, 10*time.Second)
		if code := e.status(oldValue); code != 200 {
			t.Fatalf("in the grace, %s answered the old value %d", e.addrs.gateway, code)
		}
	}
	// Enforcer 1 restarts in the grace, with Kafka unreachable: it has
	// the rotation from its catalog snapshot alone.
	enforcers[1].stop(t) // leaves a catalog snapshot
	f.proxy.Blackhole(t)
	enforcers[1] = f.start(opts[1])
	enforcers[1].waitStatus(t, newValue, 200, 10*time.Second)
	if code := enforcers[1].status(oldValue); code != 200 {
		t.Fatalf("restarted in the grace, the enforcer answered the old value %d", code)
	}
	f.proxy.Restore(t)
	clock.Store(at.UnixNano() - int64(time.Millisecond))
	for _, e := range enforcers {
		if code := e.status(oldValue); code != 200 {
			t.Fatalf("a millisecond before the end of the grace, %s answered %d", e.addrs.gateway, code)
		}
	}
	clock.Store(at.UnixNano())
	for _, e := range enforcers {
		if code := e.status(oldValue); code != 403 {
			t.Fatalf("at the end of the grace, %s answered the old value %d", e.addrs.gateway, code)
		}
		if code := e.status(newValue); code != 200 {
			t.Fatalf("at the end of the grace, %s answered the new value %d", e.addrs.gateway, code)
		}
	}
	// The events topic says which value each request showed: both
	// admitted in the grace, the old one refused after it, all the key's.
	k, err := f.kafka.config()
	if err != nil {
		t.Fatal(err)
	}
	oldFP, newFP := catalog.Fingerprint(catalog.HashKey(oldValue)), catalog.Fingerprint(catalog.HashKey(newValue))
	poll.UntilOK(t, 30*time.Second, 50*time.Millisecond, "the key's events carry the fingerprints", func() error {
		seen := map[string]bool{}
		for _, e := range readEvents(t, k) {
			if e.KeyID == id {
				seen[e.Decision.String()+"/"+e.KeyFingerprint] = true
			}
		}
		for _, want := range []string{"allowed/" + oldFP, "allowed/" + newFP, "forbidden/" + oldFP} {
			if !seen[want] {
				return fmt.Errorf("no %s event of the key among %v", want, seen)
			}
		}
		return nil
	})
}
