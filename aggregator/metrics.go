package aggregator

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/metrics"
)

// partitionLag is what a running worker has read and stored of its
// partition, for its consumer lag.
type partitionLag struct {
	end    atomic.Int64 // the partition's high watermark at the last fetch
	stored atomic.Int64 // the offset after the last record stored (or accounted for)
}

// lags holds the lag of each partition with a running worker.
type lags struct {
	mu sync.Mutex
	m  map[int]*partitionLag
}

// track adds a partition; the worker calls done when it stops, so that
// a partition handed to another aggregator shows no stale lag here.
func (l *lags) track(partition int) (pl *partitionLag, done func()) {
	pl = new(partitionLag)
	l.mu.Lock()
	if l.m == nil {
		l.m = map[int]*partitionLag{}
	}
	l.m[partition] = pl
	l.mu.Unlock()
	return pl, func() {
		l.mu.Lock()
		if l.m[partition] == pl {
			delete(l.m, partition)
		}
		l.mu.Unlock()
	}
}

var (
	descStored     = metrics.Desc("tollgate_aggregator_events_stored_total", "Usage events in batches the store took (rows of the raw events; rollups add theirs).")
	descBatches    = metrics.Desc("tollgate_aggregator_batches_stored_total", "Batches the store took.")
	descDuplicates = metrics.Desc("tollgate_aggregator_duplicates_total", "Usage events dropped as copies of one already read (producer retries).")
	descDead       = metrics.Desc("tollgate_aggregator_dead_letters_total", "Records sent to the dead-letter topic: not usage events (or lost-usage records), or not plausible.")
	descDeadFail   = metrics.Desc("tollgate_aggregator_dead_letter_failures_total", "Poison records that could not be written to the dead-letter topic (skipped).")
	descExpired    = metrics.Desc("tollgate_aggregator_expired_total", "Records deleted by the topic's retention before they were read (lost usage).")
	descFailures   = metrics.Desc("tollgate_aggregator_failures_total", "Failed reads of Kafka and reads or writes of the store (each retried).")
	descInsertFail = metrics.Desc("tollgate_aggregator_insert_failures_total", "Failed batch writes to the store (each retried).")
	descLag        = metrics.Desc("tollgate_aggregator_consumer_lag_records", "Records of a partition this aggregator works on not yet stored: its end at the last fetch less the offset stored.", "partition")
	descKeys       = metrics.Desc("tollgate_aggregator_quota_keys", "Keys (per plan) under this aggregator's quota authority.")
	descSignals    = metrics.Desc("tollgate_aggregator_signals_sent_total", "Quota signals published to the signals topic.")
	descSignalFail = metrics.Desc("tollgate_aggregator_signal_failures_total", "Failed attempts to publish quota signals (retried).")
	descRateKeys   = metrics.Desc("tollgate_aggregator_rate_keys", "Keys (per plan) busy enough for this aggregator to divide their throttle among the enforcers.")
	descRateSent   = metrics.Desc("tollgate_aggregator_rate_signals_sent_total", "Divisions of keys' throttles published to the signals topic.")
	descRateFail   = metrics.Desc("tollgate_aggregator_rate_signal_failures_total", "Failed attempts to publish divisions of keys' throttles.")
	descLostReqs   = metrics.Desc("tollgate_aggregator_lost_requests_total", "Requests enforcers reported they dropped the usage events of (the lost-usage topic), in records this aggregator stored.")
	descLostRecs   = metrics.Desc("tollgate_aggregator_lost_records_total", "Records of the lost-usage topic this aggregator stored (dead-lettered ones excluded).")
)

func newInsertHistogram() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tollgate_aggregator_insert_duration_seconds", Help: "Time a batch write to the store took, failed ones included.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
}

func (a *Aggregator) collector() prometheus.Collector {
	c := &metrics.Collector{Descs: []*prometheus.Desc{descStored, descBatches, descDuplicates, descDead, descDeadFail, descExpired,
		descFailures, descInsertFail, descLag}, Also: []prometheus.Collector{a.insertTime}}
	if a.quota != nil {
		c.Descs = append(c.Descs, descKeys, descSignals, descSignalFail)
	}
	if a.rates != nil {
		c.Descs = append(c.Descs, descRateKeys, descRateSent, descRateFail)
	}
	if a.lost.store != nil {
		c.Descs = append(c.Descs, descLostReqs, descLostRecs)
	}
	c.Read = func(ch chan<- prometheus.Metric) {
		st := a.Stats()
		ch <- metrics.Counter(descStored, st.Stored)
		ch <- metrics.Counter(descBatches, a.batches.Load())
		ch <- metrics.Counter(descDuplicates, st.Duplicates)
		ch <- metrics.Counter(descDead, st.Poison)
		ch <- metrics.Counter(descDeadFail, st.DeadLetterFailures)
		ch <- metrics.Counter(descExpired, st.Expired)
		ch <- metrics.Counter(descFailures, st.Failures)
		ch <- metrics.Counter(descInsertFail, st.InsertFailures)
		a.lags.mu.Lock()
		for p, l := range a.lags.m {
			ch <- metrics.Gauge(descLag, max(l.end.Load()-l.stored.Load(), 0), strconv.Itoa(p))
		}
		a.lags.mu.Unlock()
		if a.quota != nil {
			a.quota.mu.Lock()
			n := len(a.quota.keys)
			a.quota.mu.Unlock()
			ch <- metrics.Gauge(descKeys, n)
			ch <- metrics.Counter(descSignals, st.Signals)
			ch <- metrics.Counter(descSignalFail, st.SignalFailures)
		}
		if a.rates != nil {
			a.rates.mu.Lock()
			n := len(a.rates.hot)
			a.rates.mu.Unlock()
			ch <- metrics.Gauge(descRateKeys, n)
			ch <- metrics.Counter(descRateSent, st.RateSignals)
			ch <- metrics.Counter(descRateFail, st.RateFailures)
		}
		if a.lost.store != nil {
			ch <- metrics.Counter(descLostReqs, st.LostRequests)
			ch <- metrics.Counter(descLostRecs, st.LostRecords)
		}
	}
	return c
}
