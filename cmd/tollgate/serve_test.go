package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog/catalogdb"
	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/reportapi"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

var frozen = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

const serveYAML = `
apis:
  - id: abc123api
    stages: [{name: prod, upstream: "{{UPSTREAM}}"}]
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}}
usagePlans:
  - name: Free Tier
    throttle: {rateLimit: 1, burstLimit: 3}
    quota: {limit: 5, period: DAY}
    apiStages: [{apiId: abc123api, stage: prod}]
apiKeys:
  - {name: widget, value: widgetwidgetwidget0001, enabled: true, usagePlans: [Free Tier]}
  - {name: generated, enabled: true, usagePlans: [Free Tier]}
`

type node struct {
	addrs  serveAddrs
	stdout *bytes.Buffer
	cancel context.CancelFunc
	done   chan error
}

// start runs `tollgate serve` in-process on loopback ports chosen by the
// system, with a frozen clock.
func start(t *testing.T, dataDir, config string, now *time.Time) *node {
	t.Helper()
	return startWith(t, testServeOptions(dataDir, config, now))
}

// testServeOptions are the options start runs serve with.
func testServeOptions(dataDir, config string, now *time.Time) options {
	return options{gateway: true, admin: true, config: config, listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", dataDir: dataDir,
		queueSize: 1024, flushEvery: time.Hour, shutdownTimeout: 10 * time.Second, now: func() time.Time { return *now }}
}

// startWith is start with the options given.
func startWith(t *testing.T, o options) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{stdout: &bytes.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan serveAddrs, 1)
	go func() { n.done <- run(ctx, o, n.stdout, slog.New(slog.DiscardHandler), ready) }()
	select {
	case n.addrs = <-ready:
	case err := <-n.done:
		cancel()
		t.Fatalf("serve did not start: %v", err)
	}
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *node) stop(t *testing.T) {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	if err := <-n.done; err != nil {
		t.Errorf("serve returned %v", err)
	}
}

func get(t *testing.T, url, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if key != "" {
		req.Header.Set("x-api-key", key)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

func writeConfig(t *testing.T, dir, upstream string) string {
	t.Helper()
	p := filepath.Join(dir, "tollgate.yaml")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(serveYAML, "{{UPSTREAM}}", upstream)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServeMetersAndSurvivesRestart(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := writeConfig(t, dir, up.URL)
	now := frozen

	n := start(t, data, cfg, &now)
	if !strings.Contains(n.stdout.String(), `API key "generated"`) {
		t.Errorf("generated key value not shown on stdout: %q", n.stdout.String())
	}
	if code, body := get(t, "http://"+n.addrs.admin+"/healthz", ""); code != 200 {
		t.Fatalf("healthz: %d %s", code, body)
	}
	gw := "http://" + n.addrs.gateway + "/prod/items"
	want := []int{200, 200, 200, 429} // burst 3, frozen clock
	for i, w := range want {
		if code, body := get(t, gw, "widgetwidgetwidget0001"); code != w {
			t.Fatalf("request %d: %d %s, want %d", i, code, body, w)
		}
	}
	if code, _ := get(t, gw, ""); code != 403 {
		t.Fatalf("no key: %d", code)
	}
	if code, _ := get(t, "http://"+n.addrs.admin+"/metrics", ""); code != 403 {
		t.Errorf("metrics without credentials: %d, want 403", code)
	}
	creds := adminCreds(t, data)
	if !strings.Contains(n.stdout.String(), "export AWS_ACCESS_KEY_ID=TGAK") {
		t.Errorf("first start did not say how to use the admin credentials: %q", n.stdout.String())
	}
	m := promtest.Scrape(t, "http://"+n.addrs.admin+"/metrics", "Bearer "+creds.Token)
	wantFamilies(t, "serve", m, append(runtimeFamilies, "tollgate_gateway_requests_total", "tollgate_gateway_stage_requests_total",
		"tollgate_gateway_request_duration_seconds", "tollgate_gateway_upstream_duration_seconds", "tollgate_gateway_upstream_failures_total",
		"tollgate_usage_events_queued", "tollgate_usage_events_written_total", "tollgate_usage_write_failures_total",
		"tollgate_admin_request_duration_seconds", "tollgate_audit_writes_total")...)
	for name, want := range map[string]float64{
		"tollgate_usage_events_dropped_total":                                                      0,
		`tollgate_gateway_requests_total{class="2xx",decision="allowed"}`:                          3,
		`tollgate_gateway_requests_total{class="4xx",decision="throttled"}`:                        1,
		`tollgate_gateway_requests_total{class="4xx",decision="forbidden"}`:                        1,
		`tollgate_gateway_stage_requests_total{api="abc123api",decision="allowed",stage="prod"}`:   3,
		`tollgate_admin_request_duration_seconds_count{class="4xx",method="GET",route="/metrics"}`: 1,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	n.stop(t)

	// Every request reached the store on shutdown.
	st, err := sqlitestore.Open(filepath.Join(data, "usage.db"))
	if err != nil {
		t.Fatal(err)
	}
	evs, err := st.Events(context.Background(), 0, 1<<62, 100)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	var allowed int
	for _, e := range evs {
		if e.Decision == schemas.DecisionAllowed {
			allowed++
		}
	}
	if len(evs) != 5 || allowed != 3 {
		t.Fatalf("stored %d events (%d allowed), want 5 (3)", len(evs), allowed)
	}

	// Restart a little later: 3 of 5 used today, so 2 more, then 429.
	now = frozen.Add(10 * time.Second)
	n = start(t, data, cfg, &now)
	if n.stdout.Len() != 0 {
		t.Errorf("restart printed %q; the generated key must be shown once only", n.stdout.String())
	}
	gw = "http://" + n.addrs.gateway + "/prod/items"
	for i, w := range []int{200, 200, 429} {
		code, body := get(t, gw, "widgetwidgetwidget0001")
		if code != w {
			t.Fatalf("after restart, request %d: %d %s, want %d", i, code, body, w)
		}
		if w == 429 && body != `{"message":"Limit Exceeded"}` {
			t.Fatalf("after restart: %s, want Limit Exceeded", body)
		}
	}
	n.stop(t)

	// tollgate usage reads what was metered.
	out, err := runCLI("usage", "--data-dir", data, "--plan", "Free Tier", "--key", "widget",
		"--from", "2026-11-26", "--to", "2026-11-27", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var u struct {
		UsagePlanID string
		StartDate   string
		EndDate     string
		Values      map[string][][2]int64
	}
	if err := json.Unmarshal([]byte(out), &u); err != nil {
		t.Fatalf("usage -o json: %v in %q", err, out)
	}
	if u.StartDate != "2026-11-26" || u.EndDate != "2026-11-27" || len(u.Values) != 1 {
		t.Fatalf("usage = %s", out)
	}
	for _, v := range u.Values {
		if len(v) != 2 || v[0] != [2]int64{0, 5} || v[1] != [2]int64{5, 0} {
			t.Errorf("values = %v, want [[0 5] [5 0]]", v)
		}
	}
	text, err := runCLI("usage", "--data-dir", data, "--plan", "Free Tier", "--key", "widget", "--from", "2026-11-27", "--to", "2026-11-27")
	if err != nil || !strings.Contains(text, "2026-11-27  5     0") {
		t.Errorf("usage text = %q, %v", text, err)
	}
}

func TestServeRefusesInvalidConfigAndKeepsCatalog(t *testing.T) {
	up := httptest.NewServer(http.NotFoundHandler())
	defer up.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := writeConfig(t, dir, up.URL)
	now := frozen
	n := start(t, data, cfg, &now)
	n.stop(t)
	before := catalogBytes(t, data)

	bad := strings.ReplaceAll(strings.ReplaceAll(serveYAML, "{{UPSTREAM}}", up.URL), "period: DAY", "period: YEAR")
	bad = strings.Replace(bad, "limit: 5", "limit: 6", 1)
	os.WriteFile(cfg, []byte(bad), 0o600)
	err := run(context.Background(), options{gateway: true, admin: true, config: cfg, listen: "127.0.0.1:0", adminListen: "127.0.0.1:0",
		dataDir: data, queueSize: 16, shutdownTimeout: time.Second, now: func() time.Time { return now }}, io.Discard, slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "quota.period") || !strings.Contains(err.Error(), "tollgate.yaml:") {
		t.Fatalf("err = %v, want a validation error naming the file and field", err)
	}
	if after := catalogBytes(t, data); after != before {
		t.Error("the refused file changed the stored catalog")
	}
}

func TestUsageFlagErrors(t *testing.T) {
	dir := t.TempDir()
	db, err := catalogdb.Open(filepath.Join(dir, catalogFile)) // an empty catalog
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := runCLI("usage", "--data-dir", t.TempDir(), "--plan", "p", "--key", "k", "--from", "2026-11-01", "--to", "2026-11-02"); err == nil || !strings.Contains(err.Error(), "no catalog.db here") {
		t.Errorf("usage on a folder without a catalog: err = %v, want it to say there is no catalog.db", err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--plan", "p", "--key", "k", "--from", "2026-11-01", "--to", "yesterday"}, `--to: "yesterday" is not a date`},
		{[]string{"--plan", "p", "--key", "k", "--from", "2026-11-02", "--to", "2026-11-01"}, "--to 2026-11-01 is before --from 2026-11-02"},
		{[]string{"--plan", "p", "--key", "k", "--from", "0001-01-01", "--to", "9999-12-31"}, `--from: "0001-01-01" is outside 1970-01-01 ... 2105-12-31`},
		{[]string{"--plan", "p", "--key", "k", "--from", "2026-01-01", "--to", "2106-01-01"}, `--to: "2106-01-01" is outside`},
		{[]string{"--plan", "p", "--key", "k", "--from", "2026-01-01", "--to", "2026-12-31"}, "--to: the range from 2026-01-01 to 2026-12-31 is 365 days; at most 90 days"},
		{[]string{"--plan", "p", "--key", "k", "--from", "2026-01-01", "--to", "2026-03-31"}, `--plan "p": no usage plan`}, // 90 days
		{[]string{"--plan", "p", "--key", "k", "--from", "2026-11-01", "--to", "2026-11-02"}, `--plan "p": no usage plan`},
		{[]string{"--key", "k", "--from", "2026-11-01", "--to", "2026-11-02"}, `"plan" not set`},
	}
	for _, tt := range tests {
		_, err := runCLI(append([]string{"usage", "--data-dir", dir}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("usage %v: err = %v, want %q", tt.args, err, tt.want)
		}
	}
}

func runCLI(args ...string) (string, error) {
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestServeListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name string
		edit func(*options)
		want string
	}{
		{"bad gateway address", func(o *options) { o.listen = "127.0.0.1:notaport" }, "gateway listen:"},
		{"admin address in use", func(o *options) { o.adminListen = busy.Addr().String() }, "admin listen:"},
		{"demo upstream address in use", func(o *options) { o.demoUpstream = busy.Addr().String() }, "demo upstream listen:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := options{gateway: true, admin: true, listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", dataDir: t.TempDir(), queueSize: 16, shutdownTimeout: time.Second}
			tt.edit(&o)
			err := run(context.Background(), o, io.Discard, slog.New(slog.DiscardHandler), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// A key disabled through the admin API is refused by the gateway at once,
// and stays disabled after a restart.
func TestAdminAPIChangesReachTheGateway(t *testing.T) {
	_, data, cfg := fixture(t)
	now := frozen
	n := start(t, data, cfg, &now)
	gw := "http://" + n.addrs.gateway + "/prod/items"
	if code, _ := get(t, gw, "widgetwidgetwidget0001"); code != 200 {
		t.Fatalf("before: %d", code)
	}
	creds := adminCreds(t, data)
	var list struct {
		Item []struct{ ID, Name string }
	}
	req, _ := http.NewRequest("GET", "http://"+n.addrs.admin+"/apikeys?name=widget", nil)
	req.Header.Set("Authorization", "Bearer "+creds.Token)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(r.Body).Decode(&list)
	r.Body.Close()
	if len(list.Item) != 1 {
		t.Fatalf("get-api-keys: %+v", list)
	}
	patch := `{"patchOperations":[{"op":"replace","path":"/enabled","value":"false"}]}`
	req, _ = http.NewRequest("PATCH", "http://"+n.addrs.admin+"/apikeys/"+list.Item[0].ID, strings.NewReader(patch))
	req.Header.Set("Authorization", "Bearer "+creds.Token)
	r, err = http.DefaultClient.Do(req)
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("update-api-key: %v %v", err, r.Status)
	}
	r.Body.Close()
	if code, _ := get(t, gw, "widgetwidgetwidget0001"); code != 403 {
		t.Fatalf("right after disabling: %d, want 403", code)
	}
	// Both doors are in the audit log: the file's creations, then the
	// API's change, with who, what, and the values before and after.
	out, err := runCLI("audit", "--data-dir", data, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var entries []struct {
		Actor, Action, Kind, ID, Name, KeyPrefix string
		Old, New                                 *struct{ Enabled bool }
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct {
			Actor, Action, Kind, ID, Name, KeyPrefix string
			Old, New                                 *struct{ Enabled bool }
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		entries = append(entries, e)
	}
	last := entries[len(entries)-1]
	if last.Actor != "bearer token" || last.Action != "PATCH /apikeys/"+list.Item[0].ID || last.Kind != "apiKey" || last.KeyPrefix != "widg" ||
		last.Old == nil || !last.Old.Enabled || last.New == nil || last.New.Enabled {
		t.Errorf("last audit entry = %+v", last)
	}
	if first := entries[0]; first.Actor != "config file" || first.Old != nil || !strings.HasPrefix(first.Action, "apply ") {
		t.Errorf("first audit entry = %+v", first)
	}
	if strings.Contains(out, "widgetwidgetwidget0001") {
		t.Error("the audit log holds a key value")
	}
	text, _ := runCLI("audit", "--data-dir", data)
	if !strings.Contains(text, "bearer token") || !strings.Contains(text, "updated") || !strings.Contains(text, "widg…") {
		t.Errorf("audit text:\n%s", text)
	}
	n.stop(t)
	// Restart with the same --config: the file has not changed since it
	// was applied, so the API's change stands.
	n = start(t, data, cfg, &now)
	if code, _ := get(t, "http://"+n.addrs.gateway+"/prod/items", "widgetwidgetwidget0001"); code != 403 {
		t.Fatalf("after restart with the same file: %d, want 403", code)
	}
	n.stop(t)
	// An edited file is applied again and wins for what it names.
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(b, []byte("# edited\n")...), 0o600)
	n = start(t, data, cfg, &now)
	if code, _ := get(t, "http://"+n.addrs.gateway+"/prod/items", "widgetwidgetwidget0001"); code != 200 {
		t.Fatalf("after restart with an edited file: %d, want 200 (the file says enabled)", code)
	}
}

// UpdateUsage survives a restart: the adjustment is in the store.
func TestUpdateUsageSurvivesRestart(t *testing.T) {
	_, data, cfg := fixture(t)
	now := frozen
	n := start(t, data, cfg, &now)
	creds := adminCreds(t, data)
	admin := func(method, path, body string) []byte {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+n.addrs.admin+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+creds.Token)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		out, _ := io.ReadAll(r.Body)
		if r.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", method, path, r.StatusCode, out)
		}
		return out
	}
	var plans struct{ Item []struct{ ID string } }
	json.Unmarshal(admin("GET", "/usageplans", ""), &plans)
	var keys struct{ Item []struct{ ID string } }
	json.Unmarshal(admin("GET", "/apikeys?name=widget", ""), &keys)
	planID, keyID := plans.Item[0].ID, keys.Item[0].ID
	admin("PATCH", "/usageplans/"+planID+"/keys/"+keyID+"/usage", `{"patchOperations":[{"op":"replace","path":"/remaining","value":"1"}]}`)
	n.stop(t)
	if out, err := runCLI("audit", "--data-dir", data, "-o", "json"); err != nil ||
		!strings.Contains(out, `"kind":"usage","id":"`+planID+"/"+keyID+`","old":{"remaining":5},"new":{"remaining":1}`) {
		t.Errorf("UpdateUsage not audited: %v\n%s", err, out)
	}

	now = frozen.Add(time.Minute)
	n = start(t, data, cfg, &now)
	gw := "http://" + n.addrs.gateway + "/prod/items"
	if code, _ := get(t, gw, "widgetwidgetwidget0001"); code != 200 {
		t.Fatalf("the one request left: %d", code)
	}
	if code, body := get(t, gw, "widgetwidgetwidget0001"); code != 429 || body != `{"message":"Limit Exceeded"}` {
		t.Fatalf("after restart: %d %s, want Limit Exceeded (remaining was set to 1)", code, body)
	}
}

// The native usage API reads what the gateway metered.
func TestNativeUsageAPI(t *testing.T) {
	_, data, cfg := fixture(t)
	now := frozen
	n := start(t, data, cfg, &now)
	gw := "http://" + n.addrs.gateway + "/prod/items"
	for i := 0; i < 3; i++ {
		get(t, gw, "widgetwidgetwidget0001")
	}
	get(t, gw, "")
	n.stop(t) // flushes the events
	n = start(t, data, "", &now)
	creds := adminCreds(t, data)
	req, _ := http.NewRequest("GET", "http://"+n.addrs.admin+"/v1/usage?from=2026-11-27T00:00:00Z&to=2026-11-28T00:00:00Z&group_by=decision&format=csv", nil)
	req.Header.Set("Authorization", "Bearer "+creds.Token)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	want := "time,decision,requests,bytes_in,bytes_out,latency_ms_sum\n2026-11-27T00:00:00Z,admitted,3,0,0,0\n2026-11-27T00:00:00Z,forbidden,1,0,23,0\n"
	if string(body) != want {
		t.Errorf("/v1/usage:\n%s\nwant\n%s", body, want)
	}
}

// adminCreds reads the admin credentials serve created in data.
func adminCreds(t *testing.T, data string) reportapi.Credentials {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, credentialsFile))
	var c reportapi.Credentials
	if err != nil || json.Unmarshal(b, &c) != nil || c.Token == "" {
		t.Fatalf("admin credentials file: %v %s", err, b)
	}
	return c
}

// fixture makes a temporary folder with a config file (serveYAML) whose
// API points at an upstream answering 200, and names the data folder.
func fixture(t *testing.T) (dir, data, cfg string) {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)
	dir = t.TempDir()
	return dir, filepath.Join(dir, "data"), writeConfig(t, dir, up.URL)
}
