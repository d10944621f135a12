package reportapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/promtest"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	r, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

func TestHealthFollowsReadiness(t *testing.T) {
	var ready atomic.Bool
	h, err := New(Config{Ready: ready.Load, Credentials: testCreds})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := get(t, srv.URL+path); code != 503 {
			t.Errorf("%s before ready: %d, want 503", path, code)
		}
	}
	ready.Store(true)
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(t, srv.URL+path); code != 200 || body != `{"status":"ok"}` {
			t.Errorf("%s when ready: %d %s", path, code, body)
		}
	}
	r, _ := http.NewRequest("GET", srv.URL+"/debug/pprof/", nil)
	r.Header.Set("Authorization", "Bearer "+testCreds.Token)
	if got := send(t, r); got.status != 404 {
		t.Errorf("pprof served without Profiling: %+v", got)
	}
}

// A fault Health reports (metering stopped) makes /readyz answer 503 with
// the reason, while /healthz stays 200; it clears with the fault.
func TestReadinessReportsHealth(t *testing.T) {
	var fault atomic.Pointer[error]
	h, err := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Health: func() error {
		if p := fault.Load(); p != nil {
			return *p
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	e := errors.New("usage store refuses writes: database disk image is malformed")
	fault.Store(&e)
	if code, body := get(t, srv.URL+"/readyz"); code != 503 || !strings.Contains(body, `"reason":"usage store refuses writes: database disk image is malformed"`) {
		t.Errorf("readyz with a fault: %d %s", code, body)
	}
	if code, _ := get(t, srv.URL+"/healthz"); code != 200 {
		t.Errorf("healthz with a fault: %d, want 200", code)
	}
	fault.Store(nil)
	if code, body := get(t, srv.URL+"/readyz"); code != 200 || body != `{"status":"ok"}` {
		t.Errorf("readyz after the fault: %d %s", code, body)
	}
}

// TestMetrics serves a registry at /metrics, with the API's own
// metrics: latency by route pattern (never the path asked for) and the
// audit log's writes.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	x := prometheus.NewCounter(prometheus.CounterOpts{Name: "tollgate_x_total", Help: "X."})
	x.Add(42)
	reg.MustRegister(x)
	m, err := catalog.NewManager(catalog.StateOf(&catalog.Catalog{}), memSaver{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	audit := catalog.AuditLogAt(filepath.Join(t.TempDir(), "audit.log"))
	m.SetAudit(audit, time.Now)
	h, err := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Catalog: m, Usage: fakeUsage{},
		Metrics: reg, Registerer: reg, Audit: audit, Throttle: AdminThrottle{RateLimit: 1e9, BurstLimit: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := &adminClient{t: t, url: srv.URL, cat: m}
	for i := range 3 {
		if code, body := c.call("POST", "/apikeys", map[string]any{"name": fmt.Sprint("k", i), "enabled": true}, nil); code != 201 {
			t.Fatalf("create key: %d %s", code, body)
		}
	}
	for i := range 100 {
		c.send("GET", fmt.Sprintf("/apikeys/nokey%03d", i), nil)
		c.send("GET", fmt.Sprintf("/nothing/here%03d", i), nil)
	}
	get(t, srv.URL+"/healthz")
	got := promtest.Scrape(t, srv.URL+"/metrics", "Bearer "+testCreds.Token)
	for name, want := range map[string]float64{
		"tollgate_x_total":                             42,
		`tollgate_audit_writes_total{result="ok"}`:     3,
		`tollgate_audit_writes_total{result="failed"}`: 0,
		`tollgate_admin_request_duration_seconds_count{class="2xx",method="POST",route="/apikeys"}`:     3,
		`tollgate_admin_request_duration_seconds_count{class="4xx",method="GET",route="/apikeys/{id}"}`: 100,
		`tollgate_admin_request_duration_seconds_count{class="4xx",method="GET",route="unmatched"}`:     100,
		`tollgate_admin_request_duration_seconds_count{class="2xx",method="GET",route="/healthz"}`:      1,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	if n := len(got.With("tollgate_admin_request_duration_seconds_count")); n > 5 {
		t.Errorf("%d latency series after 200 distinct paths: %v", n, got.With("tollgate_admin_request_duration_seconds_count"))
	}
	for name := range got {
		if strings.Contains(name, "nokey") || strings.Contains(name, "here0") {
			t.Errorf("series %s names a path", name)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{Credentials: testCreds}); err == nil || !strings.Contains(err.Error(), "Ready is required") {
		t.Errorf("err = %v", err)
	}
}
