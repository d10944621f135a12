package reportapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestAdminThrottle(t *testing.T) {
	clock := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	h, err := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Now: func() time.Time { return clock },
		Metrics: prometheus.NewRegistry(), Throttle: AdminThrottle{RateLimit: 2, BurstLimit: 3}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func() (int, http.Header, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+testCreds.Token)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode, r.Header, r.Header.Get("x-amzn-ErrorType")
	}
	for i := 0; i < 3; i++ {
		if code, _, _ := get(); code != 200 {
			t.Fatalf("request %d of the burst: %d", i, code)
		}
	}
	if code, h, typ := get(); code != 429 || typ != "TooManyRequestsException" || h.Get("Retry-After") != "1" {
		t.Fatalf("past the burst: %d %s, Retry-After %q", code, typ, h.Get("Retry-After"))
	}
	clock = clock.Add(500 * time.Millisecond) // one token at 2/s
	if code, _, _ := get(); code != 200 {
		t.Fatalf("after refill: %d", code)
	}
	// Health is never throttled.
	for i := 0; i < 10; i++ {
		r, _ := http.Get(srv.URL + "/healthz")
		r.Body.Close()
		if r.StatusCode != 200 {
			t.Fatalf("healthz throttled: %d", r.StatusCode)
		}
	}
}
