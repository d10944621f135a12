package enforcer

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	imetrics "github.com/tollgate/tollgate/internal/metrics"
	"github.com/tollgate/tollgate/schemas"
)

// The gateway's metrics are counted on the request path without a lock
// and without an allocation: fixed arrays of atomic words, which the
// collector (Collect) reads and turns into constant metrics at scrape
// time. A request costs three atomic adds (about 10 ns each on the
// machines we measure on, so each one counts): one word indexed by its
// stage slot, decision and status class, from which the collector sums
// both the requests by decision and class and those by stage and
// decision; its latency bucket; and the latency sum. The arrays are
// split into shards, one chosen per request from the low bits of its
// start time, so that cores counting at once seldom share a cache line.

// Stage slots. A stage gets a slot, kept for the life of the process
// (its counters go on across catalog changes), the first time a table
// holding it is compiled. Stages past MaxMetricStages share one slot,
// labelled api="other", stage="other": the catalog, not traffic, names
// stages, but a catalog may hold many.
const MaxMetricStages = 64

const (
	otherStage    = MaxMetricStages     // the slot of stages past the cap
	noStage       = MaxMetricStages + 1 // requests that matched no stage
	numStageSlots = MaxMetricStages + 2
	numDecisions  = int(schemas.DecisionBadRequest) + 1
	numClasses    = 6 // other, 1xx, 2xx, 3xx, 4xx, 5xx
	metricShards  = 8
)

var classNames = [numClasses]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// latencyBounds are the upper bounds of the latency histograms' buckets,
// in nanoseconds; the last bucket is +Inf.
var latencyBounds = [...]int64{
	500e3, 1e6, 2.5e6, 5e6, 10e6, 25e6, 50e6, 100e6, 250e6, 500e6,
	1e9, 2.5e9, 5e9, 10e9, 30e9, 60e9,
}

const numLatencyBuckets = len(latencyBounds) + 1

// Upstream failures, as proxyError (or a cut response) classifies them.
type upstreamFailure uint8

const (
	upstreamOK          upstreamFailure = iota
	upstreamError                       // 502: unreachable, garbage, headers too large
	upstreamTimeout                     // 504: no answer in time, or the exchange deadline passed
	upstreamBodyTimeout                 // 408: the client's body did not arrive in time
	upstreamTooLarge                    // 413: a chunked body over the limit
	upstreamClientGone                  // 499: the client went away
	numUpstreamFailures
)

var failureNames = [numUpstreamFailures]string{"", "error", "timeout", "body_timeout", "body_too_large", "client_closed"}

// histogram is a latency histogram of fixed buckets: a count per bucket
// (not cumulative) and the sum of the observations in nanoseconds.
type histogram struct {
	buckets  [numLatencyBuckets]atomic.Uint64
	sumNanos atomic.Int64
}

func (h *histogram) observe(nanos int64) {
	i := 0
	for i < len(latencyBounds) && nanos > latencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sumNanos.Add(nanos)
}

// metricShard is one shard of the counters.
type metricShard struct {
	requests [numStageSlots][numDecisions][numClasses]atomic.Uint64
	latency  histogram // every request, from its first byte to its response's last
	upstream histogram // admitted requests, from proxying to the response's last byte
	failures [numUpstreamFailures]atomic.Uint64
	_        [64]byte // keeps the next shard's first counters off this one's last line
}

// metrics are a gateway's counters and the names of its stage slots.
type metrics struct {
	shards [metricShards]metricShard

	mu     sync.Mutex // guards what follows; never taken on the request path
	slots  map[[2]string]uint8
	labels [][2]string // api, stage of each slot, in slot order
}

func newMetrics() *metrics { return &metrics{slots: map[[2]string]uint8{}} }

func (m *metrics) shard(start int64) *metricShard {
	return &m.shards[(uint64(start)>>6)%metricShards]
}

// stageSlot returns the slot of a stage, giving it one if it has none.
func (m *metrics) stageSlot(apiID, stage string) uint8 {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{apiID, stage}
	if s, ok := m.slots[k]; ok {
		return s
	}
	if len(m.labels) >= MaxMetricStages {
		return otherStage
	}
	s := uint8(len(m.labels))
	m.slots[k] = s
	m.labels = append(m.labels, k)
	return s
}

// record counts one request: its decision, its status, its stage (when
// one matched) and its latency.
func (m *metrics) record(d *decision, start, end int64, status int32) {
	sh := m.shard(start)
	c := 0
	if status >= 100 && status < 600 {
		c = int(status / 100)
	}
	o := int(d.outcome)
	if o >= numDecisions {
		o = int(schemas.DecisionUnknown)
	}
	s := noStage
	if d.stage != nil {
		s = int(d.stage.slot)
	}
	sh.requests[s][o][c].Add(1)
	sh.latency.observe(end - start)
}

// recordUpstream counts one admitted request's exchange with its
// upstream.
func (m *metrics) recordUpstream(start, from, end int64, f upstreamFailure) {
	sh := m.shard(start)
	sh.upstream.observe(end - from)
	if f != upstreamOK {
		sh.failures[f].Add(1)
	}
}

// failureOf classifies the status of an exchange that failed.
func failureOf(status int) upstreamFailure {
	switch status {
	case http.StatusBadGateway:
		return upstreamError
	case http.StatusGatewayTimeout:
		return upstreamTimeout
	case http.StatusRequestTimeout:
		return upstreamBodyTimeout
	case http.StatusRequestEntityTooLarge:
		return upstreamTooLarge
	case 499:
		return upstreamClientGone
	}
	return upstreamOK
}

var (
	descRequests = prometheus.NewDesc("tollgate_gateway_requests_total",
		"Requests the gateway answered, by decision and status class.", []string{"decision", "class"}, nil)
	descStageRequests = prometheus.NewDesc("tollgate_gateway_stage_requests_total",
		"Requests that matched a stage, by stage and decision (stages past the first 64 are api=\"other\", stage=\"other\").",
		[]string{"api", "stage", "decision"}, nil)
	descLatency = prometheus.NewDesc("tollgate_gateway_request_duration_seconds",
		"Time from a request's start to its response's end, every decision.", nil, nil)
	descUpstream = prometheus.NewDesc("tollgate_gateway_upstream_duration_seconds",
		"Time from proxying an admitted request to its response's end.", nil, nil)
	descFailures = prometheus.NewDesc("tollgate_gateway_upstream_failures_total",
		"Admitted requests whose exchange with the upstream failed, by reason (error, timeout, body_timeout, body_too_large, client_closed).",
		[]string{"reason"}, nil)
)

// collector exposes a gateway's metrics (Config.Metrics), read at
// scrape time.
func (m *metrics) collector() *imetrics.Collector {
	return &imetrics.Collector{Descs: []*prometheus.Desc{descRequests, descStageRequests, descLatency, descUpstream, descFailures},
		Read: m.collect}
}

// collect sums the shards into constant metrics.
func (m *metrics) collect(ch chan<- prometheus.Metric) {
	var requests [numDecisions][numClasses]uint64
	var stages [noStage][numDecisions]uint64
	var failures [numUpstreamFailures]uint64
	var lat, up [numLatencyBuckets]uint64
	var latSum, upSum int64
	for i := range m.shards {
		sh := &m.shards[i]
		for s := range sh.requests {
			for d := range sh.requests[s] {
				for k := range sh.requests[s][d] {
					n := sh.requests[s][d][k].Load()
					requests[d][k] += n
					if s < noStage {
						stages[s][d] += n
					}
				}
			}
		}
		for f := range failures {
			failures[f] += sh.failures[f].Load()
		}
		for b := range lat {
			lat[b] += sh.latency.buckets[b].Load()
			up[b] += sh.upstream.buckets[b].Load()
		}
		latSum += sh.latency.sumNanos.Load()
		upSum += sh.upstream.sumNanos.Load()
	}
	for d := range requests {
		for k, n := range requests[d] {
			if n > 0 {
				ch <- imetrics.Counter(descRequests, n, schemas.Decision(d).String(), classNames[k])
			}
		}
	}
	m.mu.Lock()
	labels := m.labels
	m.mu.Unlock()
	for s := range stages {
		api, stage := "other", "other"
		if s < len(labels) {
			api, stage = labels[s][0], labels[s][1]
		} else if s != otherStage {
			continue
		}
		for d, n := range stages[s] {
			if n > 0 {
				ch <- imetrics.Counter(descStageRequests, n, api, stage, schemas.Decision(d).String())
			}
		}
	}
	ch <- constHistogram(descLatency, &lat, latSum)
	ch <- constHistogram(descUpstream, &up, upSum)
	for f := upstreamError; f < numUpstreamFailures; f++ {
		ch <- imetrics.Counter(descFailures, failures[f], failureNames[f])
	}
}

// constHistogram turns bucket counts into a Prometheus histogram
// (cumulative buckets, in seconds).
func constHistogram(desc *prometheus.Desc, counts *[numLatencyBuckets]uint64, sumNanos int64) prometheus.Metric {
	buckets := make(map[float64]uint64, len(latencyBounds))
	var n uint64
	for i, b := range latencyBounds {
		n += counts[i]
		buckets[float64(b)/1e9] = n
	}
	n += counts[len(latencyBounds)]
	return prometheus.MustNewConstHistogram(desc, n, float64(sumNanos)/1e9, buckets)
}
