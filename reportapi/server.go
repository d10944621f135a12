package reportapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures the admin API.
type Config struct {
	// Ready reports whether the gateway serves; /healthz and /readyz
	// answer 503 until it does. Required.
	Ready func() bool
	// Health, when not nil, reports a fault that makes the process unfit
	// for traffic though it serves (the usage store refusing writes, so
	// metering has stopped): /readyz then answers 503 with the reason,
	// while /healthz stays 200 (restarting would not mend it). Nil: none.
	Health func() error
	// Credentials authenticate every request but /healthz and /readyz.
	// Required.
	Credentials Credentials
	// Now is the clock signatures are checked against. Nil: time.Now.
	Now func() time.Time
	// Catalog is what the AWS-compatible endpoints read and change. Nil:
	// those endpoints are not served.
	Catalog CatalogStore
	// Usage answers GetUsage. Nil: GetUsage is not served.
	Usage UsageStore
	// Quotas carries out UpdateUsage. Nil (or no Usage): not served.
	Quotas QuotaAdjuster
	// Minutes answers the native usage API (/v1/usage, /v1/reports)
	// and serves /openapi.json. Nil: not served.
	Minutes MinuteStore
	// Throttle limits authenticated requests; zero values take the
	// defaults (100 requests/s, burst 1000).
	Throttle AdminThrottle
	// Profiling mounts net/http/pprof under /debug/pprof. Off by default.
	Profiling bool
	// Metrics is what /metrics serves, in Prometheus's exposition
	// formats (promhttp.HandlerFor): the process's registry. Nil: no
	// /metrics.
	Metrics prometheus.Gatherer
	// Registerer is where the API registers its own metrics: request
	// latency by operation (metrics.go) and, with Audit, the audit log's
	// writes. Nil: not registered (nor counted).
	Registerer prometheus.Registerer
	// Audit counts the audit log's writes (catalog.AuditLog). Nil: not
	// shown.
	Audit AuditCounter
	// Deliveries lists this node's notification deliveries
	// (/v1/webhooks/deliveries; without Catalog, the only route besides
	// health and metrics: the aggregator's). Nil: that route answers 501.
	Deliveries DeliveryLister
	// CheckWebhookURL, when not nil, checks a webhook's URL when it is
	// created or changed (notify.Guard.CheckURL: it resolves, to an
	// address notifications may go to), returning a message for the url
	// field, "" if it is acceptable.
	CheckWebhookURL func(ctx context.Context, url string) string
	// Console, when not nil, builds the web console mounted at /ui/
	// (package console): it signs its users in itself, with the bearer
	// token, so it is outside the admin authentication, and makes its
	// changes through Console.Call, the same routes as the API's.
	Console func(Console) (http.Handler, error)
}

// Console is what the admin API gives the web console.
type Console struct {
	// Token is the admin bearer token ("" when there is none).
	Token string
	// Call makes an admin API request in process, as actor: the same
	// routes, metrics and audit as a request over the network (not the
	// throttle: see throttle.go)
	// (the actor replaces the authentication, which the caller has done
	// its own way). It answers the status, headers and body the API
	// wrote.
	Call func(ctx context.Context, actor, method, target string, body []byte) (status int, header http.Header, resp []byte)
}

// Validate reports every problem with the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Ready == nil {
		errs = append(errs, errors.New("reportapi: Ready is required"))
	}
	if err := c.Credentials.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("reportapi: %w", err))
	}
	return errors.Join(errs...)
}

// Request body bounds, per route. Bodies are read (and for SigV4 hashed)
// before the caller is authenticated, so each route takes no more than it
// needs.
const (
	// maxJSONBody bounds the JSON bodies of the AWS-compatible
	// operations: the largest, a usage plan with its stages and method
	// throttles, takes a few KiB.
	maxJSONBody = 1 << 20
	// maxFileBody bounds the files: ImportApiKeys' CSV and /v1/apply's
	// configuration. 10 MiB is API Gateway's payload quota and holds
	// AWS's 10,000 keys per account many times over.
	maxFileBody = 10 << 20
)

// bodyLimit returns the largest body r's route takes.
func bodyLimit(r *http.Request) int64 {
	if r.Method == http.MethodPost && (r.URL.Path == "/v1/apply" || r.URL.Path == "/apikeys" && r.URL.Query().Get("mode") == "import") {
		return maxFileBody
	}
	return maxJSONBody
}

// tooLarge answers a body over its route's bound.
func tooLarge(limit int64) *apiError {
	return &apiError{status: http.StatusRequestEntityTooLarge, errType: "PayloadTooLargeException",
		msg: fmt.Sprintf("Request Too Long: this operation takes a body of at most %d bytes", limit)}
}

// bodyError answers a failed read of a body bounded by limit: errorOf's
// answer for what it knows (too large, too slow), else 400, the client's
// body being at fault.
func bodyError(err error, limit int64) *apiError {
	if ae := knownError(err); ae != nil {
		return ae
	}
	return badRequest("could not read the request body: " + err.Error())
}

// inProcessActor marks a request made in process (Console.Call): its
// value is the actor. A context value cannot come over the network.
type inProcessActor struct{}

// callInProcess serves one request of the console through h, as actor.
func callInProcess(h http.Handler, ctx context.Context, actor, method, target string, body []byte) (int, http.Header, []byte) {
	// The caller's context may hold its own request's chi routing
	// (the console's); this request is routed afresh.
	ctx = context.WithValue(context.WithValue(ctx, chi.RouteCtxKey, (*chi.Context)(nil)), inProcessActor{}, actor)
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return http.StatusBadRequest, http.Header{}, []byte(`{"message":` + strconv.Quote(err.Error()) + `}`)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.status, rec.header, rec.body.Bytes()
}

// recorder is the http.ResponseWriter of callInProcess.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }
func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}
func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

// New returns the admin API handler.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := chi.NewRouter()
	if cfg.Registerer != nil {
		m, err := newAPIMetrics(cfg.Registerer, cfg.Audit)
		if err != nil {
			return nil, err
		}
		r.Use(m.middleware)
	}
	health := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !cfg.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"status":"starting"}`))
			return
		}
		w.Write([]byte(`{"status":"ok"}`))
	}
	r.Get("/healthz", health)
	r.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Health != nil && cfg.Ready() {
			if err := cfg.Health(); err != nil {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				json.NewEncoder(w).Encode(map[string]string{"status": "unavailable", "reason": err.Error()})
				return
			}
		}
		health(w, r)
	})
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// Everything else needs credentials, unknown paths included: an
	// unauthenticated caller learns nothing about which paths exist.
	auth := newAuthenticator(cfg.Credentials, cfg.Now)
	r.NotFound(auth.middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		(&apiError{status: 404, errType: "NotFoundException", msg: "Invalid request path"}).write(w)
	})).ServeHTTP)
	r.MethodNotAllowed(auth.middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		(&apiError{status: 405, errType: "MethodNotAllowedException", msg: "Method not allowed"}).write(w)
	})).ServeHTTP)
	limit := newThrottle(cfg.Throttle, cfg.Now)
	if cfg.Console != nil {
		ui, err := cfg.Console(Console{Token: cfg.Credentials.Token, Call: func(ctx context.Context, actor, method, target string, body []byte) (int, http.Header, []byte) {
			return callInProcess(r, ctx, actor, method, target, body)
		}})
		if err != nil {
			return nil, err
		}
		r.Mount("/ui", ui)
	}
	r.Group(func(r chi.Router) {
		r.Use(auth.middleware, limit.middleware)
		if cfg.Metrics != nil {
			r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(cfg.Metrics, promhttp.HandlerOpts{}))
		}
		if cfg.Profiling {
			r.Mount("/debug", middleware.Profiler())
		}
		if cfg.Catalog != nil {
			(&apiKeys{cat: cfg.Catalog, now: cfg.Now}).routes(r)
			(&usagePlans{cat: cfg.Catalog, usage: cfg.Usage, quotas: cfg.Quotas, now: cfg.Now}).routes(r)
			(&webhooks{cat: cfg.Catalog, deliveries: cfg.Deliveries, checkURL: cfg.CheckWebhookURL, now: cfg.Now}).routes(r)
			if cfg.Minutes != nil {
				n := &native{minutes: cfg.Minutes, cat: cfg.Catalog, now: cfg.Now}
				r.Get("/v1/usage", n.usage)
				r.Get("/v1/usage/top", n.top)
				r.Get("/v1/usage/lost", n.lost)
				r.Get("/v1/reports/billing", n.billing)
				r.Get("/openapi.json", serveOpenAPI)
			}
		} else if cfg.Deliveries != nil {
			// A node that sends notifications without serving the
			// catalog (the aggregator) lists its own deliveries.
			r.Get("/v1/webhooks/deliveries", (&webhooks{deliveries: cfg.Deliveries, now: cfg.Now}).listDeliveries)
		}
	})
	return r, nil
}
