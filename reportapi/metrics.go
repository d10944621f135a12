package reportapi

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/metrics"
)

// AuditCounter counts the writes of the audit log
// (catalog.AuditLog.Writes).
type AuditCounter interface {
	Writes() (written, failed uint64)
}

var descAudit = metrics.Desc("tollgate_audit_writes_total", "Appends to the audit log (one per catalog change or UpdateUsage), by result (ok, failed).", "result")

// apiMetrics are the admin API's own metrics: the latency of each
// request by operation, the route's pattern as chi matched it (never
// the path asked for), and the audit log's writes.
type apiMetrics struct {
	latency *prometheus.HistogramVec
}

func newAPIMetrics(reg prometheus.Registerer, audit AuditCounter) (*apiMetrics, error) {
	m := &apiMetrics{latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tollgate_admin_request_duration_seconds",
		Help:    "Time the admin API took to answer, by operation (method and route pattern; unmatched for a path no route matched) and status class.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"method", "route", "class"})}
	cs := []prometheus.Collector{m.latency}
	if audit != nil {
		cs = append(cs, &metrics.Collector{Descs: []*prometheus.Desc{descAudit}, Read: func(ch chan<- prometheus.Metric) {
			ok, failed := audit.Writes()
			ch <- metrics.Counter(descAudit, ok, "ok")
			ch <- metrics.Counter(descAudit, failed, "failed")
		}})
	}
	if err := metrics.Register(reg, "admin API", cs...); err != nil {
		return nil, err
	}
	return m, nil
}

// methods are the request methods a label may take; others are "other".
var methods = map[string]string{"GET": "GET", "HEAD": "HEAD", "POST": "POST", "PUT": "PUT", "PATCH": "PATCH", "DELETE": "DELETE", "OPTIONS": "OPTIONS"}

var classes = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// middleware times each request; the route is known once chi has routed
// it, after next returns.
func (m *apiMetrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil {
			if p := rc.RoutePattern(); p != "" {
				route = p
			}
		}
		method, ok := methods[r.Method]
		if !ok {
			method = "other"
		}
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		class := classes[0]
		if status >= 100 && status < 600 {
			class = classes[status/100]
		}
		m.latency.WithLabelValues(method, route, class).Observe(time.Since(start).Seconds())
	})
}
