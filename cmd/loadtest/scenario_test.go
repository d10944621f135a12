package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/loadgen"
	"github.com/valyala/fasthttp"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{9, 1, 5}, 5},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if got := median([]time.Duration{3, 1, 2}); got != 2 {
		t.Errorf("median of durations = %v, want 2", got)
	}
}

// result builds a one-second result of n responses of status code, all
// with latency lat.
func result(n uint64, code int, lat time.Duration) *loadgen.Result {
	h := &loadgen.Histogram{}
	for range n {
		h.Record(lat)
	}
	return &loadgen.Result{Duration: time.Second, Responses: n, Status: map[int]uint64{code: n}, Latency: h}
}

func TestEvaluate(t *testing.T) {
	proxy, reject := scenarios[indexScenario("proxy")], scenarios[indexScenario("reject")]
	ms := time.Millisecond
	tests := []struct {
		name       string
		sc         scenario
		base, tg   []*loadgen.Result
		wantFailed []string // substrings of the failed checks, in order
	}{
		{
			name: "proxy within targets",
			sc:   proxy,
			base: []*loadgen.Result{result(1000, 200, 5*ms), result(1200, 200, 5*ms), result(800, 200, 5*ms)},
			tg:   []*loadgen.Result{result(900, 200, 6*ms), result(10, 200, 60*ms), result(950, 200, 5*ms)},
		},
		{
			name:       "proxy too slow and late",
			sc:         proxy,
			base:       []*loadgen.Result{result(1000, 200, 5*ms)},
			tg:         []*loadgen.Result{result(800, 200, 7*ms)},
			wantFailed: []string{"req/s ≥ 0.85", "p99 ≤"},
		},
		{
			name:       "tollgate answered other statuses",
			sc:         proxy,
			base:       []*loadgen.Result{result(1000, 200, 5*ms)},
			tg:         []*loadgen.Result{result(1000, 200, 5*ms), result(1000, 502, 5*ms)},
			wantFailed: []string{"every tollgate response is 200"},
		},
		{
			name:       "baseline broken",
			sc:         reject,
			base:       []*loadgen.Result{result(0, 403, 0)},
			tg:         []*loadgen.Result{result(1000, 403, ms)},
			wantFailed: []string{"every Go 403 handler response is 403", "req/s ≥"},
		},
		{
			name: "rejections have no p99 target",
			sc:   reject,
			base: []*loadgen.Result{result(1000, 403, ms)},
			tg:   []*loadgen.Result{result(860, 403, 50*ms)},
		},
		{
			name: "baseline only",
			sc:   reject,
			base: []*loadgen.Result{result(1000, 403, ms)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &outcome{sc: tt.sc, baseline: &side{label: tt.sc.baseline, rounds: tt.base}}
			if tt.tg != nil {
				o.tollgate = &side{label: "tollgate", rounds: tt.tg}
			}
			var failed []string
			for _, c := range evaluate(o) {
				if !c.ok {
					failed = append(failed, c.what+" ("+c.got+")")
				}
			}
			if len(failed) != len(tt.wantFailed) {
				t.Fatalf("failed checks = %q, want %d matching %q", failed, len(tt.wantFailed), tt.wantFailed)
			}
			for i, want := range tt.wantFailed {
				if !strings.Contains(failed[i], want) {
					t.Errorf("failed check %d = %q, want it to contain %q", i, failed[i], want)
				}
			}
		})
	}
}

func TestStripStage(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/prod/items", "/items"},
		{"/prod/items/1", "/items/1"},
		{"/prod", "/"},
		{"/prod/", "/"},
		{"/production/items", "/production/items"},
		{"/items", "/items"},
	}
	for _, tt := range tests {
		if got := stripStage(tt.in, "/prod"); got != tt.want {
			t.Errorf("stripStage(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestBareProxiesStripStageAndForward holds both bare proxies, the
// ReverseProxy and the fasthttp one, to the same behaviour.
func TestBareProxiesStripStageAndForward(t *testing.T) {
	type seen struct{ path, host, xff, xfh, xfp, key, keepAlive string }
	var got seen
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = seen{r.URL.RequestURI(), r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Api-Key"), r.Header.Get("Keep-Alive")}
		w.Header().Set("Content-Type", "application/json")
		w.Write(upstreamBody)
	}))
	defer upstream.Close()
	target, _ := url.Parse(upstream.URL)

	fp, err := newFastProxy(target, "/prod")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fast := newFastServer(fp.serve)
	go fast.Serve(ln)
	defer fast.Shutdown()
	bare := httptest.NewServer(newBareProxy(target, "/prod"))
	defer bare.Close()

	for _, proxy := range []struct{ name, url string }{{"ReverseProxy", bare.URL}, {"fasthttp", "http://" + ln.Addr().String()}} {
		t.Run(proxy.name, func(t *testing.T) {
			tests := []struct {
				path       string
				wantStatus int
				wantPath   string
			}{
				{"/prod/items?page=2", 200, "/items?page=2"},
				{"/prod/a%2Fb", 200, "/a%2Fb"},
				{"/prod", 200, "/"},
				{"/production/items", 404, ""},
				{"/items", 404, ""},
			}
			for _, tt := range tests {
				got = seen{}
				req, _ := http.NewRequest(http.MethodGet, proxy.url+tt.path, nil)
				req.Header.Set("X-Api-Key", "k")
				req.Header.Set("X-Forwarded-For", "6.6.6.6") // must not be trusted
				req.Header.Set("Keep-Alive", "timeout=5")    // hop-by-hop
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("GET %s: %v", tt.path, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.wantStatus || got.path != tt.wantPath {
					t.Errorf("GET %s: status %d, upstream path %q; want %d, %q", tt.path, resp.StatusCode, got.path, tt.wantStatus, tt.wantPath)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("GET %s: Content-Type %q, want application/json", tt.path, ct)
				}
				if tt.wantStatus != 200 {
					continue
				}
				want := seen{tt.wantPath, target.Host, "127.0.0.1", strings.TrimPrefix(proxy.url, "http://"), "http", "k", ""}
				if got != want {
					t.Errorf("GET %s: upstream saw %+v, want %+v", tt.path, got, want)
				}
				if string(body) != string(upstreamBody) {
					t.Errorf("GET %s: body %q, want %q", tt.path, body, upstreamBody)
				}
			}
		})
	}
}

func TestFastProxyTargets(t *testing.T) {
	for _, target := range []string{"https://127.0.0.1:1", "http://127.0.0.1:1/base", "/relative"} {
		u, _ := url.Parse(target)
		if _, err := newFastProxy(u, "/prod"); err == nil {
			t.Errorf("newFastProxy(%q): no error", target)
		}
	}
}

// BenchmarkFastProxy is the fasthttp proxy's own work per request, the
// upstream's answer included (a loopback fasthttp server). Its one
// allocation is RequestCtx.Init's, the benchmark's: a server reuses its
// RequestCtx.
func BenchmarkFastProxy(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	upstream := newFastServer(func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("application/json")
		ctx.Response.SetBodyRaw(upstreamBody)
	})
	go upstream.Serve(ln)
	defer upstream.Shutdown()
	p, err := newFastProxy(&url.URL{Scheme: "http", Host: ln.Addr().String()}, "/prod")
	if err != nil {
		b.Fatal(err)
	}
	var req fasthttp.Request
	req.SetRequestURI("http://gateway.test/prod/items")
	req.Header.Set("X-Api-Key", validKey)
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		ctx.Init(&req, remote, nil)
		p.serve(&ctx)
		if ctx.Response.StatusCode() != fasthttp.StatusOK {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

func TestParseRunFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"baseline only", []string{"--baseline-only"}, ""},
		{"defaults need tollgate", nil, "--tollgate PATH is required"},
		{"missing binary", []string{"--tollgate", "/nonexistent/tollgate"}, "--tollgate"},
		{"bad numbers", []string{"--baseline-only", "--conns", "0", "--rounds", "0", "--gogc", "x"}, "--conns 0"},
		{"unknown scenario", []string{"--baseline-only", "--scenarios", "proxy,bogus"}, `unknown scenario "bogus"`},
		{"stray argument", []string{"--baseline-only", "extra"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			cfg, err := parseRunFlags(tt.args, &stderr)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if cfg.conns != 64 || cfg.duration != 10*time.Second || cfg.warmup != 2*time.Second ||
					cfg.rounds != 3 || cfg.gogc != "400" || len(cfg.scenarios) != 2 {
					t.Errorf("defaults = %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	got := shellQuote([]string{"bin/loadtest", "run", "--out", "my results.md", "it's"})
	want := `bin/loadtest run --out 'my results.md' 'it'\''s'`
	if got != want {
		t.Errorf("shellQuote = %s, want %s", got, want)
	}
}
