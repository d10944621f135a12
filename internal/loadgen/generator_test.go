package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// short keeps generator tests quick; results are checked for shape, not size.
func short(addr string) Config {
	return Config{Addr: addr, Conns: 4, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond, Timeout: 2 * time.Second}
}

func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	start := time.Now()
	res, err := g.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if limit := cfg.Warmup + cfg.Duration + time.Second; time.Since(start) > limit {
		t.Errorf("Run took %v, want under %v", time.Since(start), limit)
	}
	return res
}

func addrOf(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

func TestRunCountsStatusesAndSendsTheRequest(t *testing.T) {
	var served, bad atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/prod/items" || r.Host != "api.test" ||
			r.Header.Get("X-Api-Key") != "k1" || r.ProtoMinor != 1 {
			bad.Add(1)
		}
		if served.Add(1)%3 == 0 {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"items":[1,2,3]}`)
	}))
	defer srv.Close()

	cfg := short(addrOf(srv))
	cfg.Path, cfg.Host = "/prod/items", "api.test"
	cfg.Header = http.Header{"x-api-key": {"k1"}}
	res := run(t, cfg)

	if bad.Load() != 0 {
		t.Errorf("server saw %d requests that were not the configured one", bad.Load())
	}
	if res.Errors.Total() != 0 {
		t.Errorf("errors = %+v, want none", res.Errors)
	}
	if res.Status[200] == 0 || res.Status[429] == 0 {
		t.Errorf("status = %v, want both 200 and 429", res.Status)
	}
	if got := res.Status[200] + res.Status[429]; got != res.Responses || len(res.Status) != 2 {
		t.Errorf("status = %v, sum %d; want only 200 and 429 summing to %d responses", res.Status, got, res.Responses)
	}
	if res.Latency.Count() != res.Responses {
		t.Errorf("latency count %d != responses %d", res.Latency.Count(), res.Responses)
	}
	if uint64(served.Load()) <= res.Responses {
		t.Errorf("server served %d, client measured %d: warm-up responses were counted", served.Load(), res.Responses)
	}
	if res.RPS() <= 0 || res.Latency.Quantile(0.99) <= 0 {
		t.Errorf("rps %v, p99 %v; want positive", res.RPS(), res.Latency.Quantile(0.99))
	}
}

func TestRunReadsChunkedBodies(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		for i := range 3 { // flushing before the end makes net/http chunk
			fmt.Fprintf(w, "part %d;", i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Sum", "3")
	}))
	defer srv.Close()

	res := run(t, short(addrOf(srv)))
	if res.Errors.Total() != 0 || res.Reconnects != 0 {
		t.Errorf("errors %+v, reconnects %d; want none (chunked bodies must be read exactly)", res.Errors, res.Reconnects)
	}
	if res.Status[200] == 0 || res.Status[200] != res.Responses {
		t.Errorf("status = %v of %d responses, want all 200", res.Status, res.Responses)
	}
}

func TestRunReconnectsWhenServerCloses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		fmt.Fprint(w, "bye")
	}))
	defer srv.Close()

	res := run(t, short(addrOf(srv)))
	if res.Errors.Total() != 0 {
		t.Errorf("errors = %+v, want none", res.Errors)
	}
	if res.Responses == 0 || res.Reconnects < res.Responses {
		t.Errorf("responses %d, reconnects %d; want a reconnect after every response", res.Responses, res.Reconnects)
	}
}

// TestRunReconnectsAfterAbruptClose uses a raw server that answers two
// requests on a connection, then closes it without saying so.
func TestRunReconnectsAfterAbruptClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for range 2 {
					for { // skip the request head
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if line == "\r\n" {
							break
						}
					}
					if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")); err != nil {
						return
					}
				}
			}()
		}
	}()

	res := run(t, short(ln.Addr().String()))
	if res.Status[200] == 0 {
		t.Fatalf("status = %v, want 200s", res.Status)
	}
	if res.Reconnects == 0 {
		t.Errorf("reconnects = 0, want some")
	}
	if res.Errors.Connect+res.Errors.Timeout+res.Errors.Parse != 0 {
		t.Errorf("errors = %+v, want only read/write errors from the closes", res.Errors)
	}
}

func TestRunIsBoundedWhenServerHangs(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	cfg := short(addrOf(srv))
	cfg.Timeout = 100 * time.Millisecond
	res := run(t, cfg)
	if res.Responses != 0 {
		t.Errorf("responses = %d, want 0", res.Responses)
	}
	if res.Errors.Timeout == 0 {
		t.Errorf("errors = %+v, want timeouts", res.Errors)
	}

	// A request cut off by the end of the run is not an error.
	cfg.Timeout = time.Minute
	res = run(t, cfg)
	if res.Errors.Total() != 0 {
		t.Errorf("errors = %+v, want none for requests cut off at the end", res.Errors)
	}
}

func TestRunStopsWhenContextEnds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	cfg := short(addrOf(srv))
	cfg.Duration = time.Hour
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = g.Run(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run returned after %v, want soon after the context ended", d)
	}
}

func TestRunCountsConnectErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	cfg := short(addr)
	cfg.Conns = 1
	res := run(t, cfg)
	if res.Errors.Connect == 0 || res.Responses != 0 {
		t.Errorf("errors %+v, responses %d; want connect errors only", res.Errors, res.Responses)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"minimal", Config{Addr: "127.0.0.1:1"}, ""},
		{"no addr", Config{}, "addr is required"},
		{"bad path", Config{Addr: "a:1", Path: "items"}, "must start with /"},
		{"space in path", Config{Addr: "a:1", Path: "/a b"}, "must start with /"},
		{"host header", Config{Addr: "a:1", Header: http.Header{"Host": {"x"}}}, "Config.Host"},
		{"crlf in value", Config{Addr: "a:1", Header: http.Header{"X-Api-Key": {"a\r\nb"}}}, "control bytes"},
		{"negative conns", Config{Addr: "a:1", Conns: -1}, "conns"},
		{"negative rate", Config{Addr: "a:1", Rate: -1}, "rate"},
		{"two problems", Config{Method: "G T"}, "addr is required\nmethod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestBuildRequest(t *testing.T) {
	cfg := Config{Addr: "127.0.0.1:9", Method: "POST", Path: "/x?y=1", Body: []byte("hi"),
		Header: http.Header{"X-Api-Key": {"k"}, "Accept": {"a", "b"}}}.withDefaults()
	got := string(cfg.buildRequest())
	want := "POST /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAccept: a\r\nAccept: b\r\nX-Api-Key: k\r\nContent-Length: 2\r\n\r\nhi"
	if got != want {
		t.Errorf("request =\n%q\nwant\n%q", got, want)
	}
}

func TestRunPaced(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()

	cfg := short(addrOf(srv))
	cfg.Conns, cfg.Rate = 2, 200 // a slot every 10 ms per connection
	cfg.Warmup, cfg.Duration = 100*time.Millisecond, 500*time.Millisecond
	start := time.Now()
	var began, ended []time.Duration
	cfg.OnMeasureStart = func() { began = append(began, time.Since(start)) }
	cfg.OnMeasureEnd = func() { ended = append(ended, time.Since(start)) }
	res := run(t, cfg)

	// 200/s for 0.5 s is 100 slots; the connections' first and last
	// slots may fall either side of the period's edges.
	if res.Responses < 95 || res.Responses > 105 {
		t.Errorf("responses = %d, want 100 ± 5 (paced at 200/s for 0.5s)", res.Responses)
	}
	if total := served.Load(); total < 115 || total > 125 {
		t.Errorf("server served %d, want 120 ± 5 over warm-up and measured period", total)
	}
	if res.Late != 0 || res.Errors.Total() != 0 {
		t.Errorf("late %d, errors %+v; want none from a fast server", res.Late, res.Errors)
	}
	if len(began) != 1 || len(ended) != 1 {
		t.Fatalf("hooks called %d and %d times, want once each", len(began), len(ended))
	}
	if began[0] < cfg.Warmup || ended[0] < cfg.Warmup+cfg.Duration || ended[0] > cfg.Warmup+cfg.Duration+200*time.Millisecond {
		t.Errorf("hooks at %v and %v, want at the measured period's start (%v) and end (%v)",
			began[0], ended[0], cfg.Warmup, cfg.Warmup+cfg.Duration)
	}
}

func TestRunPacedCountsLateRequests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // a server slower than the schedule
	}))
	defer srv.Close()

	cfg := short(addrOf(srv))
	cfg.Conns, cfg.Rate = 2, 1000 // a slot every 2 ms per connection
	res := run(t, cfg)
	if res.Responses == 0 || res.Late+uint64(2*cfg.Conns) < res.Responses {
		t.Errorf("late %d of %d responses, want nearly all", res.Late, res.Responses)
	}
}
