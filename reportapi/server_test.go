package reportapi

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
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

func TestMetrics(t *testing.T) {
	h, _ := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Metrics: func() []Metric {
		return []Metric{{Name: "tollgate_x_total", Help: "X.", Type: "counter", Value: 42}}
	}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	r, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
	r.Header.Set("Authorization", "Bearer "+testCreds.Token)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	want := "# HELP tollgate_x_total X.\n# TYPE tollgate_x_total counter\ntollgate_x_total 42\n"
	if body != want {
		t.Errorf("metrics = %q, want %q", body, want)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{Credentials: testCreds}); err == nil || !strings.Contains(err.Error(), "Ready is required") {
		t.Errorf("err = %v", err)
	}
}
