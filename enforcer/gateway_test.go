package enforcer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

const gwYAML = `
gateway:
  upstreamTimeout: 300ms
apis:
  - id: abc123api
    name: items-api
    stages:
      - name: prod
        upstream: {{UPSTREAM}}
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}, POST: {apiKeyRequired: true}}
      - path: /items/{id}
        methods: {GET: {apiKeyRequired: true}}
      - path: /reports
        methods: {GET: {apiKeyRequired: true}}
      - path: /health
        methods: {GET: {apiKeyRequired: false}}
      - path: /fail
        methods: {GET: {apiKeyRequired: true}}
      - path: /slow
        methods: {GET: {apiKeyRequired: true}}
      - path: /dribble
        methods: {GET: {apiKeyRequired: true}}
      - path: /bigheaders
        methods: {GET: {apiKeyRequired: true}}
      - path: /cut
        methods: {GET: {apiKeyRequired: true}}
      - path: /huge
        methods: {GET: {apiKeyRequired: true}}
  - id: otherapi
    stages:
      - name: v1
        upstream: {{UPSTREAM}}
    resources:
      - path: /things
        methods: {ANY: {apiKeyRequired: true}}
usagePlans:
  - name: Free Tier
    throttle: {rateLimit: 1, burstLimit: 3}
    quota: {limit: 5, period: DAY}
    apiStages:
      - apiId: abc123api
        stage: prod
        throttle: {"/items/POST": {rateLimit: 1, burstLimit: 1}}
  - name: Other
    apiStages: [{apiId: otherapi, stage: v1}]
apiKeys:
  - {name: widget, value: widgetwidgetwidget0001, enabled: true, usagePlans: [Free Tier]}
  - {name: disabled, value: disableddisabled000001, enabled: false, usagePlans: [Free Tier]}
  - {name: planless, value: planlessplanless000001, enabled: true}
  - {name: other-only, value: otherotherotherother01, enabled: true, usagePlans: [Other]}
`

const widget = "widgetwidgetwidget0001"

// env is a gateway on loopback in front of a recording upstream, with a
// clock the test moves.
type env struct {
	t        testing.TB
	clock    atomic.Int64
	gw       *Gateway
	cat      *catalog.Catalog // what gw was built from
	url      string
	upstream *httptest.Server
	metrics  *prometheus.Registry // the gateway's

	mu     sync.Mutex
	seen   []*http.Request // requests the upstream received
	bodies []int           // body bytes the upstream read, -1 when the read failed
	events []schemas.UsageEvent
}

func (e *env) Offer(ev schemas.UsageEvent) bool {
	e.mu.Lock()
	e.events = append(e.events, ev)
	e.mu.Unlock()
	return true
}

func newEnv(t testing.TB, yaml string) *env {
	t.Helper()
	return newEnvServer(t, yaml, ServerConfig{})
}

// newEnvServer is newEnv with the gateway listener configured by sc.
func newEnvServer(t testing.TB, yaml string, sc ServerConfig) *env {
	t.Helper()
	e := &env{t: t}
	e.clock.Store(testEpoch.UnixNano())
	e.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.seen = append(e.seen, r.Clone(context.Background()))
		e.mu.Unlock()
		switch r.URL.Path {
		case "/fail":
			w.WriteHeader(500)
			io.WriteString(w, "upstream broke")
		case "/slow":
			<-r.Context().Done() // until the gateway gives up
		case "/dribble": // headers and a first part of the body, then nothing
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "first part;")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case "/cut": // a first part of the body, then the connection drops
			io.WriteString(w, "first part;")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "/huge": // far more than socket buffers hold, until the gateway gives up
			chunk := make([]byte, 64<<10)
			for range 4096 { // 256 MiB at most
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		case "/bigheaders":
			for i := range 100 {
				w.Header().Set(fmt.Sprintf("X-Big-%d", i), strings.Repeat("h", 1000))
			}
			io.WriteString(w, "ok")
		default:
			body, err := io.ReadAll(r.Body)
			e.mu.Lock()
			if err != nil {
				e.bodies = append(e.bodies, -1)
			} else {
				e.bodies = append(e.bodies, len(body))
			}
			e.mu.Unlock()
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.RequestURI(), len(body))
		}
	}))
	t.Cleanup(e.upstream.Close)
	c := testCatalog(t, strings.ReplaceAll(yaml, "{{UPSTREAM}}", e.upstream.URL))
	e.metrics = prometheus.NewRegistry()
	gw, err := New(Config{Events: e, Now: e.clock.Load, Metrics: e.metrics}, c)
	if err != nil {
		t.Fatal(err)
	}
	e.gw, e.cat = gw, c
	e.url, _ = serveGateway(t, gw, sc)
	return e
}

// testPlane is the data plane the gateway's tests run on: the default,
// or TOLLGATE_TEST_DATA_PLANE's (make test runs them on both).
func testPlane(t testing.TB) DataPlane {
	p, err := ParseDataPlane(os.Getenv("TOLLGATE_TEST_DATA_PLANE"))
	if err != nil {
		t.Fatalf("TOLLGATE_TEST_DATA_PLANE: %v", err)
	}
	return p
}

// serveGateway serves gw on a loopback listener on the test's data plane
// until the test ends, and returns its URL and server.
func serveGateway(t testing.TB, gw *Gateway, sc ServerConfig) (string, Server) {
	t.Helper()
	srv, err := NewGatewayServer(gw, testPlane(t), sc)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String(), srv
}

func (e *env) advance(d time.Duration) { e.clock.Add(int64(d)) }

type resp struct {
	status int
	body   string
	h      http.Header
}

func (e *env) do(method, path string, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header[hdr[i]] = append(req.Header[hdr[i]], hdr[i+1]) // keep the name's case as given
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, string(b), r.Header}
}

// lastRejection is lastEvent once the rejections table has emitted its
// counts: requests rejected before a key was identified have no event of
// their own.
func (e *env) lastRejection() schemas.UsageEvent {
	e.t.Helper()
	e.gw.FlushRejections()
	return e.lastEvent()
}

func (e *env) lastEvent() schemas.UsageEvent {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.events) == 0 {
		e.t.Fatal("no usage event")
	}
	return e.events[len(e.events)-1]
}

func (e *env) lastSeen() *http.Request {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.seen) == 0 {
		e.t.Fatal("upstream received nothing")
	}
	return e.seen[len(e.seen)-1]
}

func (e *env) nSeen() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.seen)
}

func wantAWS(t *testing.T, r resp, status int, msg, errType string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status = %d, want %d (body %q)", r.status, status, r.body)
	}
	if want := `{"message":"` + msg + `"}`; r.body != want {
		t.Errorf("body = %q, want %q", r.body, want)
	}
	if got := r.h.Get("x-amzn-ErrorType"); got != errType {
		t.Errorf("x-amzn-ErrorType = %q, want %q", got, errType)
	}
	if got := r.h.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
}

func TestAdmittedRequestIsProxied(t *testing.T) {
	e := newEnv(t, gwYAML)
	r := e.do("GET", "/prod/items/42?color=red", "x-api-key", widget,
		"X-Tollgate-Key-Id", "spoofed", "X-Forwarded-For", "6.6.6.6")
	if r.status != 200 || r.body != "GET /items/42?color=red 0" {
		t.Fatalf("got %d %q, want 200 from the upstream with the stage stripped", r.status, r.body)
	}
	up := e.lastSeen()
	k := e.gw.table.Load().firstPlan(widget)
	if got := up.Header.Get("X-Api-Key"); got != "" {
		t.Errorf("upstream saw x-api-key %q; it must be removed", got)
	}
	if got := up.Header.Get("X-Tollgate-Key-Id"); got != k.id {
		t.Errorf("X-Tollgate-Key-Id = %q, want %q", got, k.id)
	}
	if got := up.Header.Get("X-Tollgate-Plan-Id"); got != k.plan.id {
		t.Errorf("X-Tollgate-Plan-Id = %q, want %q", got, k.plan.id)
	}
	if got := up.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want only the connection's address", got)
	}
	if got := up.Header.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
	if got := r.h.Get("RateLimit-Policy"); got != `"throttle";q=3;w=3, "quota";q=5;w=86400` {
		t.Errorf("RateLimit-Policy = %q", got)
	}
	if got := r.h.Get("RateLimit"); got != `"throttle";r=2;t=1, "quota";r=4;t=50400` {
		t.Errorf("RateLimit = %q", got)
	}
	ev := e.lastEvent()
	want := schemas.UsageEvent{ID: ev.ID, Time: testEpoch.UnixNano(), APIID: "abc123api", Stage: "prod", KeyID: k.id,
		KeyFingerprint: catalog.Fingerprint(catalog.HashKey(widget)), PlanID: k.plan.id, Method: "GET", Resource: "/items/{id}", Status: 200,
		Decision: schemas.DecisionAllowed, BytesOut: int64(len(r.body))}
	if ev != want {
		t.Errorf("event = %+v\nwant    %+v", ev, want)
	}
	if ev.ID.UnixMilli() != testEpoch.UnixMilli() || ev.ID[6]>>4 != 7 {
		t.Errorf("event id %s is not a UUIDv7 of the request time", ev.ID)
	}
}

func TestKeyHeaderNameAnyCase(t *testing.T) {
	e := newEnv(t, gwYAML)
	for _, name := range []string{"x-api-key", "X-API-KEY", "X-Api-Key", "x-Api-kEY"} {
		if r := e.do("GET", "/prod/items", name, widget); r.status != 200 {
			t.Errorf("header %q: status %d, want 200", name, r.status)
		}
		e.advance(time.Second)
	}
}

func TestForbidden(t *testing.T) {
	tests := []struct {
		name string
		hdr  []string
		path string
	}{
		{"missing key", nil, "/prod/items"},
		{"empty key", []string{"x-api-key", ""}, "/prod/items"},
		{"unknown key", []string{"x-api-key", "unknownunknownunknown1"}, "/prod/items"},
		{"too short to be a key", []string{"x-api-key", "short"}, "/prod/items"},
		{"too long to be a key", []string{"x-api-key", strings.Repeat("k", 129)}, "/prod/items"},
		{"disabled key", []string{"x-api-key", "disableddisabled000001"}, "/prod/items"},
		{"key without plan", []string{"x-api-key", "planlessplanless000001"}, "/prod/items"},
		{"key whose plan covers another stage", []string{"x-api-key", "otherotherotherother01"}, "/prod/items"},
		{"right key, other api's stage", []string{"x-api-key", widget}, "/v1/things"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, gwYAML)
			r := e.do("GET", tt.path, tt.hdr...)
			wantAWS(t, r, 403, "Forbidden", "ForbiddenException")
			if n := e.nSeen(); n != 0 {
				t.Errorf("upstream received %d requests", n)
			}
			if ev := e.lastRejection(); ev.Decision != schemas.DecisionForbidden || ev.Status != 403 || ev.Stage == "" {
				t.Errorf("event = %+v", ev)
			}
		})
	}
}

func TestUndeclaredRoutes(t *testing.T) {
	for _, path := range []string{"/nope", "/prod", "/prod/", "/prod/orders", "/prod/items/1/2", "/prodx/items", "/prod//items"} {
		t.Run(path, func(t *testing.T) {
			e := newEnv(t, gwYAML)
			wantAWS(t, e.do("GET", path, "x-api-key", widget), 403, "Missing Authentication Token", "MissingAuthenticationTokenException")
			if ev := e.lastRejection(); ev.Decision != schemas.DecisionMissingToken {
				t.Errorf("decision = %v", ev.Decision)
			}
		})
	}
	t.Run("undeclared method", func(t *testing.T) {
		e := newEnv(t, gwYAML)
		wantAWS(t, e.do("DELETE", "/prod/items", "x-api-key", widget), 403, "Missing Authentication Token", "MissingAuthenticationTokenException")
	})
	t.Run("404 when configured", func(t *testing.T) {
		e := newEnv(t, strings.Replace(gwYAML, "gateway:\n", "gateway:\n  unknownRouteStatus: 404\n", 1))
		wantAWS(t, e.do("GET", "/nope"), 404, "Not Found", "NotFoundException")
	})
	t.Run("ANY method", func(t *testing.T) {
		e := newEnv(t, gwYAML)
		if r := e.do("PATCH", "/v1/things", "x-api-key", "otherotherotherother01"); r.status != 200 {
			t.Errorf("PATCH on ANY: %d", r.status)
		}
	})
}

func TestPublicMethodNeedsNoKey(t *testing.T) {
	e := newEnv(t, gwYAML)
	if r := e.do("GET", "/prod/health"); r.status != 200 {
		t.Fatalf("status %d, want 200", r.status)
	}
	if r := e.do("GET", "/prod/health", "x-api-key", "not-a-known-key-at-all"); r.status != 200 {
		t.Fatalf("with a bad key: status %d, want 200 (the key is not consulted)", r.status)
	}
	ev := e.lastEvent()
	if ev.KeyID != "" || ev.PlanID != "" || ev.Decision != schemas.DecisionAllowed {
		t.Errorf("event = %+v", ev)
	}
}

func TestThrottle(t *testing.T) {
	e := newEnv(t, gwYAML)
	for i := 0; i < 3; i++ {
		if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
			t.Fatalf("burst request %d: %d", i, r.status)
		}
	}
	r := e.do("GET", "/prod/items", "x-api-key", widget)
	wantAWS(t, r, 429, "Too Many Requests", "TooManyRequestsException")
	if got := r.h.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}
	if got := r.h.Get("RateLimit"); got != `"throttle";r=0;t=3` {
		t.Errorf("RateLimit = %q, want no tokens, full again in 3s", got)
	}
	if ev := e.lastEvent(); ev.Decision != schemas.DecisionThrottled || ev.Status != 429 {
		t.Errorf("event = %+v", ev)
	}
	e.advance(time.Second)
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("after a second: %d, want 200", r.status)
	}
	if n := e.nSeen(); n != 4 {
		t.Errorf("upstream saw %d requests, want 4", n)
	}
}

func TestPerMethodOverrideHasItsOwnBucket(t *testing.T) {
	e := newEnv(t, gwYAML)
	if r := e.do("POST", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("first POST: %d", r.status)
	}
	wantAWS(t, e.do("POST", "/prod/items", "x-api-key", widget), 429, "Too Many Requests", "TooManyRequestsException")
	// The plan bucket (burst 3) is untouched by POSTs.
	for i := 0; i < 3; i++ {
		if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
			t.Fatalf("GET %d after POSTs: %d", i, r.status)
		}
	}
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 429 {
		t.Fatalf("4th GET: %d, want 429", r.status)
	}
}

func TestQuota(t *testing.T) {
	e := newEnv(t, gwYAML)
	for i := 0; i < 5; i++ {
		if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
		e.advance(time.Second)
	}
	r := e.do("GET", "/prod/items", "x-api-key", widget)
	wantAWS(t, r, 429, "Limit Exceeded", "LimitExceededException")
	// 10:00:05 UTC: the DAY period ends at midnight.
	if got, want := r.h.Get("Retry-After"), fmt.Sprint(14*3600-5); got != want {
		t.Errorf("Retry-After = %q, want %s", got, want)
	}
	if got := r.h.Get("RateLimit"); !strings.Contains(got, `"quota";r=0;`) {
		t.Errorf("RateLimit = %q, want quota remaining 0", got)
	}
	if ev := e.lastEvent(); ev.Decision != schemas.DecisionQuotaExceeded {
		t.Errorf("decision = %v", ev.Decision)
	}
	// Rejected requests consumed no throttle tokens: the bucket is full.
	e.advance(14*time.Hour - 5*time.Second)
	for i := 0; i < 3; i++ {
		if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
			t.Fatalf("next day request %d: %d", i, r.status)
		}
	}
}

func TestQuotaCountsWhateverTheUpstreamAnswers(t *testing.T) {
	e := newEnv(t, gwYAML)
	for i := 0; i < 5; i++ {
		if r := e.do("GET", "/prod/fail", "x-api-key", widget); r.status != 500 {
			t.Fatalf("request %d: %d, want the upstream's 500", i, r.status)
		}
		e.advance(time.Second)
	}
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 429 {
		t.Fatalf("after 5 upstream errors: %d, want 429 Limit Exceeded", r.status)
	}
	if ev := e.lastEvent(); ev.Decision != schemas.DecisionQuotaExceeded {
		t.Errorf("decision = %v", ev.Decision)
	}
}

func TestThrottledRequestsDoNotConsumeQuota(t *testing.T) {
	e := newEnv(t, gwYAML)
	for i := 0; i < 20; i++ { // 3 pass, 17 throttled
		e.do("GET", "/prod/items", "x-api-key", widget)
	}
	e.advance(10 * time.Second)
	for i := 0; i < 2; i++ {
		if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
			t.Fatalf("request %d after throttling: %d; throttled requests must not use quota", i, r.status)
		}
	}
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 429 || r.body != `{"message":"Limit Exceeded"}` {
		t.Fatalf("6th admitted: %d %s", r.status, r.body)
	}
}

func TestStageAndGatewayThrottles(t *testing.T) {
	y := strings.Replace(gwYAML, "        upstream: {{UPSTREAM}}\n    resources:\n      - path: /items\n",
		"        upstream: {{UPSTREAM}}\n        throttle: {rateLimit: 1, burstLimit: 2}\n    resources:\n      - path: /items\n", 1)
	e := newEnv(t, y)
	e.do("GET", "/prod/health")
	e.do("GET", "/prod/health")
	// The stage bucket is shared by all clients, public methods included.
	wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 429, "Too Many Requests", "TooManyRequestsException")

	y = strings.Replace(gwYAML, "gateway:\n", "gateway:\n  throttle: {rateLimit: 1, burstLimit: 1}\n", 1)
	e = newEnv(t, y)
	e.do("GET", "/prod/health")
	wantAWS(t, e.do("GET", "/v1/things", "x-api-key", "otherotherotherother01"), 429, "Too Many Requests", "TooManyRequestsException")
}

func TestUpstreamFailures(t *testing.T) {
	e := newEnv(t, gwYAML)
	start := time.Now()
	wantAWS(t, e.do("GET", "/prod/slow", "x-api-key", widget), 504, "Endpoint request timed out", "")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("504 took %v; the upstream timeout is 300ms", d)
	}
	if ev := e.lastEvent(); ev.Status != 504 || ev.Decision != schemas.DecisionAllowed {
		t.Errorf("event = %+v", ev)
	}
	e.upstream.Close()
	e.advance(time.Minute)
	wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 502, "Bad Gateway", "")
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, gwYAML)
	wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget, "X-API-KEY", widget), 400, "Bad Request", "BadRequestException")
	if ev := e.lastRejection(); ev.Decision != schemas.DecisionBadRequest {
		t.Errorf("decision = %v", ev.Decision)
	}

	r := e.do("GET", "/prod/items", "x-api-key", widget, "X-Big", strings.Repeat("b", 64<<10))
	if r.status != 431 {
		t.Errorf("oversized header: %d, want 431", r.status)
	}
}

func rawRequest(t *testing.T, url, req string) string {
	t.Helper()
	c := rawConn(t, url)
	defer c.Close()
	io.WriteString(c, req)
	r, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	return fmt.Sprintf("%d %s", r.StatusCode, b)
}

func TestContentLengthWithTransferEncoding(t *testing.T) {
	e := newEnv(t, gwYAML)
	got := rawRequest(t, e.url, "POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: "+widget+
		"\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n")
	if got != `400 {"message":"Bad Request"}` {
		t.Errorf("CL+TE: %s, want 400", got)
	}
	// Also behind a large header block.
	e.advance(time.Minute)
	got = rawRequest(t, e.url, "POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: "+widget+
		"\r\nX-Pad: "+strings.Repeat("p", 12<<10)+"\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n")
	if got != `400 {"message":"Bad Request"}` {
		t.Errorf("CL+TE after 12 KiB of headers: %s, want 400", got)
	}
	// On a kept-alive connection, after a request with a body.
	c, br := e.dial(t, 5*time.Second)
	for i, req := range []string{
		// A body that looks like headers must not confuse the check.
		"POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: " + widget + "\r\nContent-Length: 30\r\n\r\nContent-Length: 5\r\n\r\nxxxxxxxxx",
		"POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: " + widget + "\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
		"POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: " + widget + "\r\nTransfer-Encoding: chunked\r\ncontent-length: 1\r\n\r\n1\r\na\r\n0\r\n\r\n",
	} {
		e.advance(time.Minute)
		io.WriteString(c, req)
		r, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if want := []int{200, 200, 400}[i]; r.StatusCode != want {
			t.Errorf("keep-alive request %d: %d, want %d", i, r.StatusCode, want)
		}
	}
	// Either framing alone is fine, and the body reaches the upstream.
	e.advance(time.Minute)
	got = rawRequest(t, e.url, "POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: "+widget+
		"\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n")
	if got != "200 POST /items 4" {
		t.Errorf("chunked: %s", got)
	}
	if ev := e.lastEvent(); ev.BytesIn != 4 {
		t.Errorf("chunked bytes in = %d, want 4", ev.BytesIn)
	}
	e.advance(time.Minute)
	got = rawRequest(t, e.url, "POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: "+widget+
		"\r\nContent-Length: 4\r\n\r\nabcd")
	if got != "200 POST /items 4" {
		t.Errorf("content-length: %s", got)
	}
}

func TestRateLimitHeadersCanBeTurnedOff(t *testing.T) {
	e := newEnv(t, strings.Replace(gwYAML, "gateway:\n", "gateway:\n  rateLimitHeaders: false\n", 1))
	r := e.do("GET", "/prod/items", "x-api-key", widget)
	if r.h.Get("RateLimit") != "" || r.h.Get("RateLimit-Policy") != "" {
		t.Errorf("headers sent although turned off: %v", r.h)
	}
	for i := 0; i < 3; i++ {
		r = e.do("GET", "/prod/items", "x-api-key", widget)
	}
	if r.status != 429 || r.h.Get("Retry-After") != "" {
		t.Errorf("429 = %d with Retry-After %q, want none", r.status, r.h.Get("Retry-After"))
	}
}

func TestHostRouting(t *testing.T) {
	y := strings.Replace(gwYAML, "      - name: v1\n        upstream: {{UPSTREAM}}\n",
		"      - name: v1\n        upstream: {{UPSTREAM}}\n        host: API.example.com\n        basePath: \"\"\n", 1)
	e := newEnv(t, y)
	req, _ := http.NewRequest("GET", e.url+"/things", nil)
	req.Host = "api.EXAMPLE.com:8443"
	req.Header.Set("x-api-key", "otherotherotherother01")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Errorf("host-routed request: %d", r.StatusCode)
	}
	if got := e.do("GET", "/things", "x-api-key", "otherotherotherother01"); got.status != 403 {
		t.Errorf("same path on another host: %d, want 403", got.status)
	}
}

func TestUpdateAppliesAtOnceAndKeepsCounters(t *testing.T) {
	e := newEnv(t, gwYAML)
	e.do("GET", "/prod/items", "x-api-key", widget)
	e.do("GET", "/prod/items", "x-api-key", widget)
	// The same catalog again (same ids): counters carry over.
	if err := e.gw.Update(e.catalogWith(func(c *catalog.Catalog) {})); err != nil {
		t.Fatal(err)
	}
	e.do("GET", "/prod/items", "x-api-key", widget)
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 429 {
		t.Errorf("after update: %d, want 429 (3 of burst 3 used before the update)", r.status)
	}
	if err := e.gw.Update(e.catalogWith(func(c *catalog.Catalog) { c.KeyByName("widget").Enabled = false })); err != nil {
		t.Fatal(err)
	}
	wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 403, "Forbidden", "ForbiddenException")
}

// catalogWith returns the running catalog changed by f.
func (e *env) catalogWith(f func(*catalog.Catalog)) *catalog.Catalog {
	c := e.cat.Clone()
	f(c)
	return c
}

// One key hammered over real HTTP from many connections admits exactly
// its quota.
func TestConcurrentRequestsAdmitExactlyTheQuota(t *testing.T) {
	y := strings.Replace(gwYAML, "throttle: {rateLimit: 1, burstLimit: 3}\n    quota: {limit: 5, period: DAY}",
		"throttle: {rateLimit: 1000000, burstLimit: 1000000}\n    quota: {limit: 150, period: DAY}", 1)
	e := newEnv(t, y)
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				switch e.do("GET", "/prod/items", "x-api-key", widget).status {
				case 200:
					ok.Add(1)
				case 429:
					limited.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 150 || limited.Load() != 170 {
		t.Fatalf("admitted %d, limited %d; want exactly 150 and 170", ok.Load(), limited.Load())
	}
}

// fakeDaily answers like a store: rows within the filter's days.
type fakeDaily []usage.DayCount

func (f fakeDaily) Daily(_ context.Context, fl usage.Filter) ([]usage.DayCount, error) {
	var out []usage.DayCount
	for _, r := range f {
		if r.Day >= fl.FromDay && r.Day <= fl.ToDay {
			out = append(out, r)
		}
	}
	return out, nil
}

// Usage earlier in a WEEK or MONTH period counts; usage before the period
// does not.
func TestRestoreQuotasLongPeriods(t *testing.T) {
	for _, tt := range []struct {
		period        string
		inPeriod, out string // days with usage
	}{
		// testEpoch is Friday 2026-11-27.
		{"WEEK", "2026-11-23", "2026-11-22"},
		{"MONTH", "2026-11-01", "2026-10-31"},
	} {
		t.Run(tt.period, func(t *testing.T) {
			e := newEnv(t, strings.Replace(gwYAML, "period: DAY", "period: "+tt.period, 1))
			k := e.gw.table.Load().firstPlan(widget)
			plan := k.plan.id
			day := func(s string) int64 { return ts(s+"T12:00:00Z") / 86400e9 }
			err := e.gw.RestoreQuotas(context.Background(), fakeDaily{
				{Day: day(tt.out), PlanID: plan, KeyID: k.id, Admitted: 100},
				{Day: day(tt.inPeriod), PlanID: plan, KeyID: k.id, Admitted: 4},
			})
			if err != nil {
				t.Fatal(err)
			}
			if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
				t.Fatalf("5th of 5: %d", r.status)
			}
			wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 429, "Limit Exceeded", "LimitExceededException")
		})
	}
}

func TestRestoreQuotas(t *testing.T) {
	e := newEnv(t, gwYAML)
	k := e.gw.table.Load().firstPlan(widget)
	plan := k.plan.id
	today := testEpoch.UnixNano() / 86400e9
	err := e.gw.RestoreQuotas(context.Background(), fakeDaily{
		{Day: today - 1, PlanID: plan, KeyID: k.id, Admitted: 5}, // yesterday: another period
		{Day: today, PlanID: plan, KeyID: k.id, Admitted: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("5th of 5: %d", r.status)
	}
	wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 429, "Limit Exceeded", "LimitExceededException")
}

func TestUnsafePathsAreRefused(t *testing.T) {
	y := strings.Replace(gwYAML, "      - path: /health\n", "      - path: /public/{proxy+}\n        methods: {GET: {apiKeyRequired: false}}\n      - path: /health\n", 1)
	e := newEnv(t, y)
	for _, p := range []string{"/prod/public/../items", "/prod/public/%2e%2e/items", "/prod/public/..%2Fitems",
		"/prod/items%2F42", "/prod/public/./x", "/prod/public/.."} {
		raw := rawRequest(t, e.url, "GET "+p+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if raw != `400 {"message":"Bad Request"}` {
			t.Errorf("GET %s: %s, want 400", p, raw)
		}
	}
	if n := e.nSeen(); n != 0 {
		t.Errorf("upstream received %d requests", n)
	}
	// Dots inside a segment are ordinary characters.
	if r := e.do("GET", "/prod/public/a..b/.well"); r.status != 200 {
		t.Errorf("dots inside segments: %d", r.status)
	}
}

func TestClientCannotStripIdentityHeaders(t *testing.T) {
	e := newEnv(t, gwYAML)
	r := e.do("GET", "/prod/items", "x-api-key", widget, "Connection", "X-Tollgate-Key-Id, X-Tollgate-Plan-Id")
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	up := e.lastSeen()
	if up.Header.Get("X-Tollgate-Key-Id") == "" || up.Header.Get("X-Tollgate-Plan-Id") == "" {
		t.Errorf("identity headers stripped through Connection: %v", up.Header)
	}
}

func TestUpgradesAreNotProxied(t *testing.T) {
	e := newEnv(t, gwYAML)
	r := e.do("GET", "/prod/items", "x-api-key", widget, "Connection", "Upgrade", "Upgrade", "websocket")
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if up := e.lastSeen(); up.Header.Get("Upgrade") != "" {
		t.Errorf("upstream was asked to upgrade: %v", up.Header)
	}
}

func TestUpdateAppliesUpstreamTimeout(t *testing.T) {
	e := newEnv(t, gwYAML)
	c := e.catalogWith(func(c *catalog.Catalog) { c.Gateway.UpstreamTimeout = catalog.Duration(50 * time.Millisecond) })
	if err := e.gw.Update(c); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	wantAWS(t, e.do("GET", "/prod/slow", "x-api-key", widget), 504, "Endpoint request timed out", "")
	if d := time.Since(start); d >= 300*time.Millisecond {
		t.Errorf("504 after %v; the new timeout is 50ms", d)
	}
}

func TestSetUsed(t *testing.T) {
	e := newEnv(t, gwYAML)
	k := e.gw.table.Load().firstPlan(widget)
	plan := k.plan.id
	e.do("GET", "/prod/items", "x-api-key", widget)
	e.do("GET", "/prod/items", "x-api-key", widget) // 2 of 5 used
	delta, err := e.gw.SetUsed(plan, k.id, 4)
	if err != nil || delta != 2 {
		t.Fatalf("SetUsed = %d, %v; want used 2 -> 4 (delta 2)", delta, err)
	}
	e.advance(10 * time.Second) // the throttle is not what this tests
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("the one remaining request: %d", r.status)
	}
	wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 429, "Limit Exceeded", "LimitExceededException")
	// Lowering the count works too.
	if delta, err := e.gw.SetUsed(plan, k.id, 0); err != nil || delta != -5 {
		t.Fatalf("lower: %d, %v", delta, err)
	}
	e.advance(10 * time.Second)
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("after lowering: %d", r.status)
	}
	for _, tt := range []struct {
		plan, key string
		used      int64
		want      string
	}{
		{plan, k.id, -1, "negative"},
		{"nope", k.id, 1, catalog.ErrNoSuchKeyPlan.Error()},
		{plan, "nope", 1, catalog.ErrNoSuchKeyPlan.Error()},
	} {
		if _, err := e.gw.SetUsed(tt.plan, tt.key, tt.used); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("SetUsed(%s, %s, %d) = %v, want %q", tt.plan, tt.key, tt.used, err, tt.want)
		}
	}
	other := e.gw.table.Load().firstPlan("otherotherotherother01")
	if _, err := e.gw.SetUsed(other.plan.id, other.id, 1); !errors.Is(err, catalog.ErrNoQuota) {
		t.Errorf("plan without quota: %v", err)
	}
}
