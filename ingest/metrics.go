package ingest

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/metrics"
)

// The metrics of the edge, the config log and the signal reader, read
// from their counters at scrape time. Names are those /metrics showed
// before client_golang, where the meaning is the same.
var (
	descQueued        = metrics.Desc("tollgate_usage_events_queued", "Usage events waiting in the queue.")
	descDropped       = metrics.Desc("tollgate_usage_events_dropped_total", "Usage events dropped because the queue was full.")
	descWritten       = metrics.Desc("tollgate_usage_events_written_total", "Usage events the drainer handed on: to the store (embedded), or to the sink, to be produced or spilled (fleet).")
	descWriteFailures = metrics.Desc("tollgate_usage_write_failures_total", "Failed batch writes of the drainer (each retried).")
	descProduced      = metrics.Desc("tollgate_usage_events_produced_total", "Usage events produced to Kafka directly.")
	descSpilled       = metrics.Desc("tollgate_usage_events_spilled_total", "Usage events written to the spill log while Kafka failed or was slow.")
	descSpilledBytes  = metrics.Desc("tollgate_usage_spilled_bytes_total", "Bytes written to the spill log.")
	descReplayed      = metrics.Desc("tollgate_usage_events_replayed_total", "Usage events replayed from the spill log to Kafka.")
	descPending       = metrics.Desc("tollgate_usage_events_spill_pending", "Usage events waiting in the spill log.")
	descPendingBytes  = metrics.Desc("tollgate_usage_spill_pending_bytes", "Bytes of the records waiting in the spill log.")
	descSpillDropped  = metrics.Desc("tollgate_usage_events_spill_dropped_total", "Usage events dropped at the spill log's cap (reported as lost usage).")
	descProduceFail   = metrics.Desc("tollgate_kafka_produce_failures_total", "Failed produce attempts of usage events (each batch then spilled).")

	descConfigOffset   = metrics.Desc("tollgate_config_offset", "Next offset of the config topic this node applies: the version of its catalog.")
	descConfigLag      = metrics.Desc("tollgate_config_lag_records", "Records of the config topic not yet applied (the topic's end at the last fetch less the offset).")
	descConfigFailures = metrics.Desc("tollgate_config_failures_total", "Failed reads of the config topic and catalogs the gateway refused.")

	descSignalsReceived = metrics.Desc("tollgate_signals_received_total", "Quota signals read from the signals topic.")
	descSignalsApplied  = metrics.Desc("tollgate_signals_applied_total", "Quota signals the gateway applied (a key and plan it knows, with a quota).")
	descSignalAge       = metrics.Desc("tollgate_signals_newest_age_seconds", "Age of the newest signal read (now less its AsOf, the time of the newest event it counts); absent before the first.")
	descSignalFailures  = metrics.Desc("tollgate_signals_failures_total", "Rejected signal records and failed requests to Kafka.")
	descRatesReceived   = metrics.Desc("tollgate_rate_signals_received_total", "Divisions of keys' throttles read from the signals topic.")
	descRatesApplied    = metrics.Desc("tollgate_rate_signals_applied_total", "Divisions of keys' throttles the gateway applied (a key and plan it knows, not stale).")
	descSilence         = metrics.Desc("tollgate_signals_aggregator_silence_seconds", "Time since the newest fleet signal from an aggregator (one a second each while any runs); absent before the first.")
	descSkew            = metrics.Desc("tollgate_clock_skew_seconds", "This node's clock less the aggregator's, as of the newest fleet signal (delivery adds milliseconds); absent before the first.")
	descFleet           = metrics.Desc("tollgate_rate_fleet_enforcers", "Enforcers in the fleet as the aggregators last said: where no division holds, a key's throttle is divided evenly among them; absent before the first.")
)

// edgeCollector exposes an Edge's counters; the fleet's only on a fleet.
func (e *Edge) collector() prometheus.Collector {
	c := &metrics.Collector{Descs: []*prometheus.Desc{descQueued, descDropped, descWritten, descWriteFailures}}
	if e.sink != nil {
		c.Descs = append(c.Descs, descProduced, descSpilled, descSpilledBytes, descReplayed, descPending, descPendingBytes, descSpillDropped, descProduceFail)
		c.Also = []prometheus.Collector{e.sink.produceTime}
	}
	c.Read = func(ch chan<- prometheus.Metric) {
		st := e.Stats()
		ch <- metrics.Gauge(descQueued, st.Queued)
		ch <- metrics.Counter(descDropped, st.Dropped)
		ch <- metrics.Counter(descWritten, st.Written)
		ch <- metrics.Counter(descWriteFailures, st.WriteFailures)
		if e.sink == nil {
			return
		}
		s := st.Sink
		ch <- metrics.Counter(descProduced, s.Produced)
		ch <- metrics.Counter(descSpilled, s.Spilled)
		ch <- metrics.Counter(descSpilledBytes, s.SpilledBytes)
		ch <- metrics.Counter(descReplayed, s.Replayed)
		ch <- metrics.Gauge(descPending, s.Pending)
		ch <- metrics.Gauge(descPendingBytes, s.PendingBytes)
		ch <- metrics.Counter(descSpillDropped, s.Dropped)
		ch <- metrics.Counter(descProduceFail, s.Failures)
	}
	return c
}

func (l *ConfigLog) collector() prometheus.Collector {
	return &metrics.Collector{Descs: []*prometheus.Desc{descConfigOffset, descConfigLag, descConfigFailures},
		Read: func(ch chan<- prometheus.Metric) {
			ch <- metrics.Gauge(descConfigOffset, l.Offset())
			ch <- metrics.Gauge(descConfigLag, l.Lag())
			ch <- metrics.Counter(descConfigFailures, l.Failures())
		}}
}

func (r *SignalReader) collector() prometheus.Collector {
	return &metrics.Collector{Descs: []*prometheus.Desc{descSignalsReceived, descSignalsApplied, descSignalAge, descSignalFailures,
		descRatesReceived, descRatesApplied, descFleet, descSilence, descSkew},
		Read: func(ch chan<- prometheus.Metric) {
			ch <- metrics.Counter(descSignalsReceived, r.received.Load())
			ch <- metrics.Counter(descSignalsApplied, r.applied.Load())
			if n := r.newest.Load(); n > 0 {
				ch <- metrics.Gauge(descSignalAge, r.cfg.Now().Sub(time.Unix(0, n)).Seconds())
			}
			ch <- metrics.Counter(descSignalFailures, r.Failures())
			ch <- metrics.Counter(descRatesReceived, r.rates.Load())
			ch <- metrics.Counter(descRatesApplied, r.ratesApplied.Load())
			if n := r.fleet.Load(); n > 0 {
				ch <- metrics.Gauge(descFleet, int64(n))
			}
			if d, ok := r.Silence(); ok {
				ch <- metrics.Gauge(descSilence, d.Seconds())
				ch <- metrics.Gauge(descSkew, time.Duration(r.skew.Load()).Seconds())
			}
		}}
}
