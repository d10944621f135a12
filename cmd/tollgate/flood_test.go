package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// A flood of requests without a key against tollgate serve over loopback,
// over three minutes of its clock: the store holds a few events per
// minute, not one per request, and /v1/usage reports every request in
// its minute. Each minute reaches the store once it has ended (Run), the
// last one on shutdown.
func TestServeFloodIsStoredPerMinute(t *testing.T) {
	_, data, cfg := fixture(t)
	var clock atomic.Int64
	clock.Store(frozen.UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan serveAddrs, 1)
	o := options{gateway: true, admin: true, config: cfg, listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", dataDir: data,
		queueSize: 1024, flushEvery: 20 * time.Millisecond, shutdownTimeout: 10 * time.Second,
		now: func() time.Time { return time.Unix(0, clock.Load()) }}
	go func() { done <- run(ctx, o, io.Discard, slog.New(slog.DiscardHandler), ready) }()
	var addrs serveAddrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("serve did not start: %v", err)
	}
	defer func() {
		if cancel != nil {
			cancel()
			<-done
		}
	}()

	const perMinute, minutes = 1000, 3
	c := &http.Client{}
	defer c.CloseIdleConnections()
	usageByMinute := func() string {
		t.Helper()
		url := fmt.Sprintf("http://%s/v1/usage?from=2026-11-27T10:00:00Z&to=2026-11-27T11:00:00Z&granularity=minute&group_by=decision&format=csv", addrs.admin)
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+adminCreds(t, data).Token)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return string(b)
	}
	row := func(minute int) string { return fmt.Sprintf("2026-11-27T10:%02d:00Z,forbidden,%d,", minute, perMinute) }
	for m := range minutes {
		for i := range perMinute {
			method, path := "GET", "/prod/items" // no key: forbidden
			switch i % 4 {
			case 1:
				path = "/prod/nope"
			case 2:
				method = "BREW"
			case 3:
				path = fmt.Sprintf("/prod/items/%d", i) // undeclared
			}
			wantForbidden(t, c, method, "http://"+addrs.gateway+path)
		}
		clock.Add(int64(time.Minute))
		if m == minutes-1 {
			break // the minute under way: stored on shutdown
		}
		// The minute has ended: within a second or so (Run's tick, then
		// the drainer's) it is stored, all of it.
		poll.UntilOK(t, 10*time.Second, 20*time.Millisecond, fmt.Sprintf("minute %d stored once it ended", m), func() error {
			if got := usageByMinute(); !strings.Contains(got, row(m)) {
				return fmt.Errorf("/v1/usage\n%s\nwant a row %s", got, row(m))
			}
			return nil
		})
	}
	cancel()
	cancel = nil
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}

	st, err := sqlitestore.Open(filepath.Join(data, "usage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, err := st.Events(context.Background(), 0, math.MaxInt64, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	mins, err := st.Minutes(context.Background(), 0, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	perMin := map[int64]int64{}
	for _, m := range mins {
		perMin[m.Minute] += m.Requests
	}
	t.Logf("%d requests stored as %d events, %d minute rows", perMinute*minutes, len(evs), len(mins))
	// Groups: forbidden on /items; missing token on "" with GET and OTHER.
	if len(evs) > 3*minutes {
		t.Errorf("%d stored events for %d requests, want at most %d (groups x minutes)", len(evs), perMinute*minutes, 3*minutes)
	}
	for m := range int64(minutes) {
		if got := perMin[frozen.Unix()/60+m]; got != perMinute {
			t.Errorf("minute %d: %d requests in the store, want %d", m, got, perMinute)
		}
	}
}

// wantForbidden sends a request without a key and fails unless it gets 403.
func wantForbidden(t *testing.T, c *http.Client, method, url string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	r, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if r.StatusCode != 403 {
		t.Fatalf("%s %s: %d, want 403", method, url, r.StatusCode)
	}
}
