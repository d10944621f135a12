package enforcer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/logs"
	imetrics "github.com/tollgate/tollgate/internal/metrics"
	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

// EventSink takes usage events off the request path. Offer must not block;
// it returns false when it had to drop the event.
type EventSink interface {
	Offer(ev schemas.UsageEvent) bool
}

// DailySource reads daily usage rollups; the gateway uses it to restore
// quota counters after a restart.
type DailySource interface {
	Daily(ctx context.Context, f usage.Filter) ([]usage.DayCount, error)
}

// Config configures a Gateway.
type Config struct {
	// Events receives one event per request, except for requests
	// rejected before a key was identified, which are counted and sent
	// as one event per group and minute (see Run and FlushRejections).
	// Nil discards them.
	Events EventSink
	// Transport carries requests to upstreams. Nil means NewTransport
	// with the catalog's upstream timeout, rebuilt when it changes.
	Transport http.RoundTripper
	// Now returns the current Unix time in nanoseconds. Nil means
	// time.Now; tests inject a clock.
	Now func() int64
	// Logger receives configuration changes, never per-request lines,
	// with component=enforcer. Nil discards.
	Logger *slog.Logger
	// Node names this enforcer in its usage events (UsageEvent.Node).
	// The aggregator counts admitted requests per node and signals the
	// counts back, which is how an enforcer tells its own admissions
	// already counted from those still on their way (see ApplySignal).
	// Every enforcer sharing an events topic needs its own name, stable
	// across restarts (a host name, a pod name). Default "": right for a
	// single enforcer.
	Node string
	// Metrics is where the gateway registers its metrics (requests by
	// decision, status class and stage; latencies; upstream failures:
	// see metrics.go). The request path counts them in atomic arrays
	// either way. Nil: not registered.
	Metrics prometheus.Registerer
	// Fleet is how many enforcers share the fleet's throttles until a
	// division of a key's throttle names how many there are (rate.go):
	// each admits 1/Fleet of a key's limits where no division holds.
	// 0 or 1: the whole limits, as a single enforcer.
	Fleet int
	// RateStale is how long a division of a key's throttle holds after
	// the aggregator made it. Default DefaultRateStale.
	RateStale time.Duration
}

// Gateway is the enforcer's HTTP handler: it identifies the key, applies
// the plan, proxies admitted requests and meters every request.
type Gateway struct {
	cfg   Config
	table atomic.Pointer[table]
	// mu serialises changes (Load, Apply, Update) and guards what
	// follows.
	mu sync.Mutex
	// global holds the counters of the shared buckets (gateway, stages)
	// by name, so that they survive new tables.
	global map[string]*atomic.Int64
	// planIdx gives each plan its index in table.plans for as long as it
	// exists. An index freed by a change is reused only by a later
	// change (see Apply).
	planIdx map[string]int32
	freeIdx []int32
	nextIdx int32
	// ownTransport is set when the gateway built its transport, which it
	// then rebuilds when the catalog's upstream timeout changes.
	ownTransport bool
	timeout      time.Duration
	// rejections counts requests rejected before a key was identified
	// (flood.go).
	rejections *rejections
	metrics    *metrics
	// fleetShare is a key's share of its throttles where no division
	// holds (SetFleet).
	fleetShare atomic.Uint32
	// failSafe is the share of a quota's limit a key gets before a
	// signal of the period: fleetShare, or 0 while skewed (SetClockSkewed).
	failSafe atomic.Uint32
	skewed   atomic.Bool
	fleetN   atomic.Int32
	// upstreams are the fasthttp plane's clients, by scheme and host
	// (leanproxy.go); guarded by mu.
	upstreams map[string]*leanUpstream
}

var _ http.Handler = (*Gateway)(nil)

type discard struct{}

func (discard) Offer(schemas.UsageEvent) bool { return true }

// New returns a gateway enforcing c, which must be valid. c nil is an
// empty catalog, for a gateway that Load or Apply fill.
func New(cfg Config, c *catalog.Catalog) (*Gateway, error) {
	if cfg.Events == nil {
		cfg.Events = discard{}
	}
	if cfg.Now == nil {
		cfg.Now = func() int64 { return time.Now().UnixNano() }
	}
	cfg.Logger = logs.For(cfg.Logger, "enforcer")
	if cfg.RateStale <= 0 {
		cfg.RateStale = DefaultRateStale
	}
	g := &Gateway{cfg: cfg, ownTransport: cfg.Transport == nil, rejections: newRejections(),
		global: map[string]*atomic.Int64{}, planIdx: map[string]int32{}, metrics: newMetrics()}
	g.SetFleet(cfg.Fleet)
	if err := imetrics.Register(cfg.Metrics, "gateway", g.metrics.collector()); err != nil {
		return nil, err
	}
	var err error
	if c == nil {
		err = g.Load(catalog.NewState())
	} else {
		err = g.Update(c)
	}
	if err != nil {
		return nil, err
	}
	return g, nil
}

// Update swaps in a new catalog, validating it first: a full load (see
// Load). Counters of keys and plans that remain carry over; requests in
// flight finish on the catalog they started with.
func (g *Gateway) Update(c *catalog.Catalog) error {
	if err := catalog.Validate(c, nil); err != nil {
		return fmt.Errorf("update gateway: %w", err)
	}
	return g.Load(catalog.StateOf(c))
}

// RestoreQuotas raises every quota counter to the usage the store holds
// for the current period, so that a restart never grants free quota.
func (g *Gateway) RestoreQuotas(ctx context.Context, src DailySource) error {
	now := g.cfg.Now()
	t := g.table.Load()
	// The longest period is a month; read from the earliest start.
	from := catalog.Month.Start(catalog.Month.Index(now))
	from = min(from, catalog.Week.Start(catalog.Week.Index(now)))
	rows, err := src.Daily(ctx, usage.Filter{FromDay: utc.Day(from), ToDay: utc.Day(now)})
	if err != nil {
		return fmt.Errorf("restore quotas: %w", err)
	}
	type kp struct{ key, plan string }
	sums := map[kp]int64{}
	starts := map[string]int64{} // plan → first day of its current period
	for _, p := range t.plans {
		if p != nil && p.quota != nil {
			start, _ := p.quota.q.Period.Bounds(now)
			starts[p.id] = utc.Day(start)
		}
	}
	for _, r := range rows {
		if s, ok := starts[r.PlanID]; ok && r.Day >= s {
			sums[kp{r.KeyID, r.PlanID}] += r.Admitted + r.Adjustment
		}
	}
	for k, n := range sums {
		if st, p := t.keyPlan(k.key, k.plan); st != nil {
			p.quota.raise(&st.quota, now, n)
		}
	}
	return nil
}

// SetUsed sets a key's used count under a plan in the current period
// (AWS UpdateUsage; usage.QuotaUpdate checks the rule and calls it):
// requests go on counting from there. It returns the change to the
// count, to record in the usage store so that a restart restores it.
//
// It sets this enforcer's counter only. Alone (no quota signals), that
// counter is the key's usage and delta is the change to record. In a
// fleet, once a signal applied, the counter is this enforcer's lease
// (see ApplySignal): what remains then holds here until the next signal,
// and delta is the change to the lease, not to the fleet's usage; the
// quota authority computes the fleet's adjustment from its own count
// (the period's limit - remaining - its Used) and the next signal, with
// that adjustment in Used, replaces every enforcer's lease, this one's
// included. What this enforcer admitted is counted as before.
func (g *Gateway) SetUsed(planID, keyID string, used int64) (delta int64, err error) {
	// The counters exist for every key in a plan, whatever stages the plan
	// covers.
	st, p := g.table.Load().keyPlan(keyID, planID)
	if st == nil {
		return 0, catalog.ErrNoSuchKeyPlan
	}
	if p.quota == nil {
		return 0, catalog.ErrNoQuota
	}
	if used < 0 {
		return 0, fmt.Errorf("used count %d is negative", used)
	}
	return p.quota.set(&st.quota, g.cfg.Now(), used), nil
}

// ServeHTTP enforces and proxies one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := g.cfg.Now()
	t := g.table.Load()
	fc := connOf(r)
	lim := &defaultLimits
	if fc != nil && fc.lim != nil {
		lim = fc.lim
	}
	var d decision
	var rj *rejection
	ambiguous := false
	switch {
	case badFraming(r, fc):
		d.outcome, ambiguous = schemas.DecisionBadRequest, true
	case unsafePath(r.URL):
		d.outcome = schemas.DecisionBadRequest
	case r.ContentLength > lim.maxBodyBytes:
		// Refused before a byte of the body is read.
		d.outcome, rj = schemas.DecisionBadRequest, rejTooLarge
	default:
		t.decide(&d, r.Host, r.URL.Path, r.Method, r.Header[hAPIKey], start)
	}
	if t.headers {
		setRateLimitHeaders(w.Header(), &d)
	}
	if d.outcome == schemas.DecisionAllowed {
		g.proxy(w, r, &d, fc, lim, start)
		return
	}
	if rj == nil {
		rj = rejectionFor(d.outcome, t.notFound)
	}
	// A refused request that carried a body, or whose framing the
	// check could not trust, ends its connection: bytes the gateway did
	// not read must never be taken for the next request. A refused
	// request without a body (no Transfer-Encoding, no or a zero
	// Content-Length) left nothing unread, so the connection stays open,
	// exactly as it does after an admitted request without a body: a
	// flood of keyless GETs costs no handshake per refusal.
	hasBody := r.ContentLength != 0
	out := rj.write(w, hasBody || ambiguous)
	if hasBody {
		linger(w, fc)
	}
	g.emit(&d, r.Method, start, g.cfg.Now(), int32(rj.status), 0, out)
}

// emit builds the request's usage event and hands it off, or counts the
// request in the rejections table if it was rejected before a key was
// identified. end is when the response was complete.
func (g *Gateway) emit(d *decision, method string, start, end int64, status int32, in, out int64) {
	g.metrics.record(d, start, end, status)
	if aggregated(d) {
		g.rejections.add(d, method, end, status, (end-start)/1e3, in, out)
		return
	}
	var ev schemas.UsageEvent
	g.event(&ev, d, method, start, end, status, in, out)
	g.cfg.Events.Offer(ev)
}

// event fills in the usage event of one request.
func (g *Gateway) event(ev *schemas.UsageEvent, d *decision, method string, start, end int64, status int32, in, out int64) {
	*ev = schemas.UsageEvent{
		ID: schemas.NewEventID(start), Time: start, Method: method, Decision: d.outcome,
		Status: status, BytesIn: in, BytesOut: out, Node: g.cfg.Node,
	}
	if d.stage != nil {
		ev.APIID, ev.Stage = d.stage.apiID, d.stage.stage
	}
	if d.route != nil {
		ev.Resource = d.route.resource
	}
	if d.key != nil {
		ev.KeyID, ev.KeyFingerprint = d.key.keyID(), d.key.fingerprint()
	}
	if d.plan != nil {
		ev.PlanID = d.plan.id
	}
	ev.LatencyMicros = (end - start) / 1e3
}

// unsafePath reports a path whose meaning depends on who reads it: dot
// segments, which many upstreams resolve after the gateway has matched the
// unresolved path (/public/../items would reach /items without a key), and
// encoded slashes, which the gateway would split and the upstream would
// not. Both are refused with 400 rather than guessed at.
func unsafePath(u *url.URL) bool { return unsafePathOf(u.Path, u.RawPath) }

// unsafePathOf is unsafePath for a decoded path and its raw form ("" or
// the path itself when nothing was escaped): both planes' check.
func unsafePathOf(p, raw string) bool {
	if strings.Contains(p, "/.") {
		for seg := range strings.SplitSeq(p, "/") {
			if seg == "." || seg == ".." {
				return true
			}
		}
	}
	return raw != p && (strings.Contains(raw, "%2f") || strings.Contains(raw, "%2F"))
}

// proxy forwards an admitted request and meters it. A response cut while
// streaming (the exchange deadline, the upstream or the client failing)
// makes the reverse proxy panic with http.ErrAbortHandler, so that
// net/http cuts the connection rather than end the response as if it were
// complete; the request is metered before the panic goes on, with 504,
// 502 or 499 for what cut it.
func (g *Gateway) proxy(w http.ResponseWriter, r *http.Request, d *decision, fc *framingConn, lim *limits, start int64) {
	// Identify the consumer to the upstream; never pass on what a client
	// claims in these headers. Rewrite copies them to the outbound request
	// after the proxy has removed hop-by-hop headers, so a client cannot
	// strip them by naming them in Connection either.
	delete(r.Header, hTollgateKeyID)
	delete(r.Header, hTollgatePlanID)
	if d.key != nil {
		r.Header[hTollgateKeyID] = d.key.id[:]
	}
	if d.plan != nil {
		r.Header[hTollgatePlanID] = d.plan.idHeader
	}
	var cb *countingBody
	if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		cb = &countingBody{ReadCloser: r.Body, max: lim.maxBodyBytes}
		r.Body = cb
	}
	if fc != nil {
		fc.arm(r.ContentLength != 0, lim)
	}
	m := writerPool.Get().(*meteredWriter)
	m.ResponseWriter, m.status, m.n, m.fc, m.failure = w, 0, 0, fc, upstreamOK
	from := g.cfg.Now()
	done := false
	defer func() {
		if done {
			return
		}
		// Panicking: the response was cut (see above).
		status := int32(http.StatusBadGateway)
		if fc != nil && fc.disarm() {
			status = http.StatusGatewayTimeout
		} else if r.Context().Err() != nil {
			status = 499
		}
		end := g.cfg.Now()
		g.metrics.recordUpstream(start, from, end, failureOf(int(status)))
		g.emit(d, r.Method, start, end, status, bytesIn(r, cb), m.n)
	}()
	d.stage.proxy.ServeHTTP(m, r)
	done = true
	if fc != nil {
		fc.disarm()
	}
	status, out, failure := int32(m.status), m.n, m.failure
	m.ResponseWriter, m.fc = nil, nil
	writerPool.Put(m)
	if status == 0 {
		status = http.StatusOK
	}
	end := g.cfg.Now()
	g.metrics.recordUpstream(start, from, end, failure)
	g.emit(d, r.Method, start, end, status, bytesIn(r, cb), out)
}

// bytesIn is the request body's size: as declared, or as counted when
// chunked.
func bytesIn(r *http.Request, cb *countingBody) int64 {
	if cb != nil {
		return cb.n
	}
	return r.ContentLength
}

// ServerConfig bounds what a client may hold on the gateway listener. Zero
// fields take their defaults.
type ServerConfig struct {
	// ReadHeaderTimeout bounds reading request headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections. Default 120s.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps request headers; larger ones get 431. Default
	// 16 KiB (net/http allows 4 KiB of slack on top).
	MaxHeaderBytes int
	// BodyTimeout bounds reading an admitted request's body, from the
	// start of its proxying. Past it the upstream request is aborted,
	// the client gets 408 if the upstream has not answered yet, and the
	// connection is closed. Default 29s, AWS's integration timeout.
	BodyTimeout time.Duration
	// MaxBodyBytes caps request bodies. A larger Content-Length gets 413
	// before anything is read or proxied; a chunked body that grows past
	// it is cut, the upstream request aborted, and the client gets 413 if
	// the upstream has not answered yet. Default 10 MiB, AWS's payload
	// limit.
	MaxBodyBytes int64
	// ExchangeTimeout bounds an admitted request as a whole: reading its
	// body, the upstream's answer and the streaming of its body. Past it
	// the client gets 504 if no response had started; a response already
	// streaming is cut (the connection is closed mid-body). The catalog's
	// upstreamTimeout bounds the wait for the response headers within
	// it. Default 60s: a body read in BodyTimeout and an answer in AWS's
	// 29 s.
	ExchangeTimeout time.Duration
}

// Validate reports negative limits.
func (sc ServerConfig) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"ReadHeaderTimeout", int64(sc.ReadHeaderTimeout)}, {"IdleTimeout", int64(sc.IdleTimeout)},
		{"MaxHeaderBytes", int64(sc.MaxHeaderBytes)}, {"BodyTimeout", int64(sc.BodyTimeout)},
		{"MaxBodyBytes", sc.MaxBodyBytes}, {"ExchangeTimeout", int64(sc.ExchangeTimeout)},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("server config: %s must not be negative, got %d", f.name, f.v))
		}
	}
	return errors.Join(errs...)
}

// Defaults of ServerConfig.
const (
	DefaultBodyTimeout     = 29 * time.Second
	DefaultMaxBodyBytes    = 10 << 20
	DefaultExchangeTimeout = 60 * time.Second
)

// withDefaults fills in the zero fields.
func (sc ServerConfig) withDefaults() ServerConfig {
	if sc.ReadHeaderTimeout <= 0 {
		sc.ReadHeaderTimeout = 10 * time.Second
	}
	if sc.IdleTimeout <= 0 {
		sc.IdleTimeout = 120 * time.Second
	}
	if sc.MaxHeaderBytes <= 0 {
		sc.MaxHeaderBytes = 16 << 10
	}
	return sc
}

// limits are the handler's bounds of sc.
func (sc ServerConfig) limits() limits {
	lim := defaultLimits
	if sc.BodyTimeout > 0 {
		lim.bodyTimeout = sc.BodyTimeout
	}
	if sc.MaxBodyBytes > 0 {
		lim.maxBodyBytes = sc.MaxBodyBytes
	}
	if sc.ExchangeTimeout > 0 {
		lim.exchangeTimeout = sc.ExchangeTimeout
	}
	return lim
}

// limits are the bounds the handler applies, from the ServerConfig of the
// server its connection came through.
type limits struct {
	bodyTimeout     time.Duration
	maxBodyBytes    int64
	exchangeTimeout time.Duration
}

var defaultLimits = limits{DefaultBodyTimeout, DefaultMaxBodyBytes, DefaultExchangeTimeout}

// NewServer returns the gateway's http.Server. Serve it on a listener from
// WrapListener: served on another, it fails closed, answering every
// request 500 (the framing checks and the body and exchange limits need
// the wrapped connection; without them the gateway would be open to
// request smuggling and stalled bodies), and logs that once, with the
// gateway's logger when h is a *Gateway, else slog's default one.
func NewServer(h http.Handler, sc ServerConfig) *http.Server {
	sc = sc.withDefaults()
	lim := sc.limits()
	return &http.Server{
		Handler:           requireWrapped(h, serverLogger(h)),
		ReadHeaderTimeout: sc.ReadHeaderTimeout,
		IdleTimeout:       sc.IdleTimeout,
		MaxHeaderBytes:    sc.MaxHeaderBytes,
		ConnContext:       connContext(&lim),
		ConnState:         connState,
	}
}

// QuotaUsage returns a key's use of its quota under a plan in the period
// containing now, the period's limit and its end (Unix ns); false if the
// key is not in the plan or the plan has no quota. In tollgate serve this
// is the key's usage (quota notifications read it); in a fleet it is this
// enforcer's lease.
func (g *Gateway) QuotaUsage(planID, keyID string) (used, limit, end int64, ok bool) {
	st, p := g.table.Load().keyPlan(keyID, planID)
	if st == nil || p.quota == nil {
		return 0, 0, 0, false
	}
	now := g.cfg.Now()
	sp := p.quota.span(now)
	return p.quota.used(&st.quota, now), p.quota.limit(sp.idx), sp.end, true
}
