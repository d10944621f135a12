package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
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

// run is a sample of n responses of status code with latency lat, each
// costing the server cpu.
func run(n uint64, code int, lat, cpu time.Duration) sample {
	return sample{Result: result(n, code, lat), cpu: time.Duration(n) * cpu}
}

// runs are a side's samples, at the load's connections and paced.
type runs struct{ sat, paced []sample }

// outcomeOf builds the outcome of sc whose sides ran as given, in sc's
// order.
func outcomeOf(sc scenario, bySide map[string]runs) *outcome {
	o := &outcome{sc: sc}
	for _, label := range sc.sides {
		if r, ok := bySide[label]; ok {
			o.sides = append(o.sides, &side{label: label, runs: r.sat, paced: r.paced})
		}
	}
	return o
}

func TestEvaluate(t *testing.T) {
	proxy, reject, throttle := scenarios[indexScenario("proxy")], scenarios[indexScenario("reject")], scenarios[indexScenario("throttle")]
	ms, us := time.Millisecond, time.Microsecond
	one := func(s sample) []sample { return []sample{s} }
	// A proxy run within every target.
	good := func() map[string]runs {
		return map[string]runs{
			sideDirect:      {one(run(3000, 200, 2*ms, 10*us)), one(run(200, 200, 300*us, 15*us))},
			sideNginx:       {one(run(1000, 200, 5*ms, 20*us)), one(run(200, 200, 500*us, 25*us))},
			sideBareRP:      {one(run(800, 200, 6*ms, 40*us)), one(run(200, 200, 600*us, 45*us))},
			sideBareFast:    {one(run(1100, 200, 5*ms, 18*us)), one(run(200, 200, 450*us, 20*us))},
			sideTollgate:    {[]sample{run(900, 200, 5*ms, 25*us), run(10, 200, 60*ms, 90*us), run(950, 200, 5*ms, 25*us)}, one(run(200, 200, 900*us, 30*us))},
			sideTollgateNet: {one(run(700, 200, 6500*us, 50*us)), one(run(200, 200, 1200*us, 55*us))},
		}
	}
	with := func(m map[string]runs, label string, r runs) map[string]runs {
		m[label] = r
		return m
	}
	without := func(m map[string]runs, label string) map[string]runs {
		delete(m, label)
		return m
	}
	tests := []struct {
		name          string
		o             *outcome
		wantFailed    []string // substrings of the failed checks, in order
		wantUnchecked int
	}{
		{name: "proxy within targets", o: outcomeOf(proxy, good())},
		{
			name: "tollgate fasthttp costlier, slower and later than nginx",
			o: outcomeOf(proxy, with(good(), sideTollgate,
				runs{one(run(700, 200, 5*ms, 30*us)), one(run(200, 200, 1500*us, 30*us))})),
			wantFailed: []string{"tollgate fasthttp CPU per request ≤ 1.30 × nginx's (1.500 × (medians 30.0 vs 20.0 µs))",
				"tollgate fasthttp req/s ≥ 0.80 × nginx req/s (0.700 × (medians 700 vs 1000 req/s))", "tollgate fasthttp p99 added to a direct call, paced"},
		},
		{
			// The machine's speed drifts between rounds: each round's
			// ratio is within the target, the ratio of the two sides'
			// medians (from different rounds) is not.
			name: "a drifting machine: ratios are taken round by round",
			o: outcomeOf(proxy, with(with(good(), sideNginx,
				runs{[]sample{run(1200, 200, 5*ms, 12*us), run(500, 200, 5*ms, 30*us), run(1000, 200, 5*ms, 20*us)}, one(run(200, 200, 500*us, 25*us))}),
				sideTollgate, runs{[]sample{run(1000, 200, 5*ms, 15*us), run(420, 200, 5*ms, 38*us), run(820, 200, 5*ms, 27*us)}, one(run(200, 200, 900*us, 30*us))})),
		},
		{
			name: "the same runs out of step: the third round over",
			o: outcomeOf(proxy, with(with(good(), sideNginx,
				runs{[]sample{run(1200, 200, 5*ms, 12*us), run(500, 200, 5*ms, 30*us), run(1000, 200, 5*ms, 20*us)}, one(run(200, 200, 500*us, 25*us))}),
				sideTollgate, runs{[]sample{run(1000, 200, 5*ms, 15*us), run(420, 200, 5*ms, 45*us), run(820, 200, 5*ms, 27*us)}, one(run(200, 200, 900*us, 30*us))})),
			wantFailed: []string{"tollgate fasthttp CPU per request ≤ 1.30 × nginx's (1.350 × (medians 27.0 vs 20.0 µs))"},
		},
		{
			name:       "net/http slower and later than the bare ReverseProxy",
			o:          outcomeOf(proxy, with(good(), sideTollgateNet, runs{one(run(600, 200, 8*ms, 50*us)), nil})),
			wantFailed: []string{"tollgate net/http req/s ≥ 0.85 × bare ReverseProxy", "tollgate net/http p99 ≤ bare ReverseProxy p99 + 1.000ms"},
		},
		{
			name: "tollgate answered other statuses when paced",
			o: outcomeOf(proxy, with(good(), sideTollgate,
				runs{one(run(900, 200, 5*ms, 25*us)), []sample{run(200, 200, 900*us, 30*us), run(1, 502, ms, 0)}})),
			wantFailed: []string{"every tollgate fasthttp response is 200"},
		},
		{
			name:          "no nginx: its targets are not checked",
			o:             outcomeOf(proxy, without(good(), sideNginx)),
			wantUnchecked: 2,
		},
		{
			name: "rejections: tollgate fasthttp slower than nginx",
			o: outcomeOf(reject, map[string]runs{
				sideNginx:       {sat: one(run(1000, 403, ms, 10*us))},
				side403:         {sat: one(run(1000, 403, ms, 10*us))},
				sideTollgate:    {sat: one(run(850, 403, 50*ms, 10*us))},
				sideTollgateNet: {sat: one(run(900, 403, 50*ms, 10*us))},
			}),
			wantFailed: []string{"tollgate fasthttp req/s ≥ 0.90 × nginx req/s (0.850 ×"},
		},
		{
			name: "rejections: baseline broken",
			o: outcomeOf(reject, map[string]runs{
				side403:         {sat: one(run(0, 403, 0, 0))},
				sideTollgateNet: {sat: one(run(1000, 403, ms, 10*us))},
			}),
			wantFailed:    []string{"every Go 403 handler response is 403", "tollgate net/http req/s ≥"},
			wantUnchecked: 1,
		},
		{
			name: "baseline only",
			o: outcomeOf(reject, map[string]runs{
				sideNginx: {sat: one(run(1000, 403, ms, 10*us))},
				side403:   {sat: one(run(1000, 403, ms, 10*us))},
			}),
			wantUnchecked: 2,
		},
		{
			name: "throttled: a few admitted, but not many",
			o: outcomeOf(throttle, map[string]runs{
				sideNginx:       {sat: []sample{run(1000, 429, ms, 10*us), run(5, 200, ms, 10*us)}},
				sideTollgate:    {sat: []sample{run(1000, 429, ms, 10*us), run(50, 200, ms, 10*us)}},
				sideTollgateNet: {sat: one(run(1000, 429, ms, 10*us))},
			}),
			wantFailed: []string{"every tollgate fasthttp response is 429 (or 200, at most 1%)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var failed []string
			for _, c := range evaluate(tt.o) {
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
			if got := unchecked(tt.o); len(got) != tt.wantUnchecked {
				t.Errorf("unchecked = %q, want %d", got, tt.wantUnchecked)
			}
		})
	}
}

func TestUntilUndisturbed(t *testing.T) {
	tests := []struct {
		name       string
		others     []float64 // of the successive runs
		reruns     int
		wantRuns   int
		wantOthers float64
	}{
		{"quiet at once", []float64{0.02}, 2, 1, 0.02},
		{"quiet the second time", []float64{0.4, 0.05, 0.5}, 2, 2, 0.05},
		{"never quiet", []float64{0.4, 0.3, 0.2, 0.1}, 2, 3, 0.2},
		{"no reruns", []float64{0.4}, 0, 1, 0.4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var runs, told int
			res, err := untilUndisturbed(func() (sample, error) {
				runs++
				return sample{others: tt.others[runs-1]}, nil
			}, 0.1, tt.reruns, func(sample) { told++ })
			if err != nil || runs != tt.wantRuns || told != runs-1 || res.others != tt.wantOthers {
				t.Errorf("runs %d, told %d, kept others %v, err %v; want %d runs, %v kept", runs, told, res.others, err, tt.wantRuns, tt.wantOthers)
			}
		})
	}
}

func TestTables(t *testing.T) {
	us := time.Microsecond
	o := outcomeOf(scenarios[indexScenario("proxy")], map[string]runs{
		sideDirect:   {[]sample{run(3000, 200, 2*time.Millisecond, 10*us)}, []sample{run(200, 200, 300*us, 15*us)}},
		sideNginx:    {[]sample{run(1000, 200, 5*time.Millisecond, 20*us)}, []sample{run(200, 200, 500*us, 25*us)}},
		sideTollgate: {[]sample{run(900, 200, 5*time.Millisecond, 25*us)}, []sample{run(200, 200, 900*us, 30*us)}},
	})
	sat := saturatedTable(o)
	want := []string{"tollgate fasthttp", "900", "0.900", "5.000ms", "5.000ms", "5.000ms", "5.000ms", "5.000ms", "25.0", "1.250", "0%", "900"}
	if got := sat.rows[2]; !slices.Equal(got, want) {
		t.Errorf("saturated row = %q, want %q", got, want)
	}
	paced, ok := pacedTable(o)
	want = []string{"tollgate fasthttp", "200", "0.900ms", "0.900ms", "0.900ms", "+0.600ms", "+0.600ms", "0", "30.0", "1.200", "0%"}
	if !ok || !slices.Equal(paced.rows[2], want) {
		t.Errorf("paced row = %q, want %q", paced.rows[2], want)
	}
	var b strings.Builder
	sat.writeText(&b)
	if lines := strings.Split(b.String(), "\n"); len(lines) != 5 || len([]rune(lines[0])) != len([]rune(lines[1])) {
		t.Errorf("text table not aligned:\n%s", b.String())
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
	type seen struct{ path, host, xff, xfh, xfp, key, keepAlive, userAgent string }
	var got seen
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = seen{r.URL.RequestURI(), r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Api-Key"), r.Header.Get("Keep-Alive"), r.UserAgent()}
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
				req.Header.Set("User-Agent", "")             // none
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
				want := seen{tt.wantPath, target.Host, "127.0.0.1", strings.TrimPrefix(proxy.url, "http://"), "http", "k", "", ""}
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
		{"baseline only", []string{"--baseline-only", "--nginx", ""}, ""},
		{"missing nginx", []string{"--baseline-only", "--nginx", "/nonexistent/nginx"}, "nginx-light"},
		{"bad pacing", []string{"--baseline-only", "--nginx", "", "--paced-rate", "0", "--paced-conns", "0"}, "--paced-rate 0"},
		{"bad reruns", []string{"--baseline-only", "--nginx", "", "--reruns", "-1", "--max-others", "2"}, "--reruns -1"},
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
					cfg.rounds != 3 || cfg.gogc != "400" || len(cfg.scenarios) != 3 ||
					cfg.pacedRate != 1000 || cfg.pacedConns != 8 || cfg.pacedDuration != 5*time.Second ||
					cfg.maxOthers != 0.1 || cfg.reruns != 2 {
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
