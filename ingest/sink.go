package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/internal/backoff"
	"github.com/tollgate/tollgate/internal/logs"
	"github.com/tollgate/tollgate/schemas"
)

// Producer writes events somewhere durable and reports which it did not
// write. EventProducer writes to Kafka.
type Producer interface {
	Produce(ctx context.Context, events []schemas.UsageEvent) (failed []schemas.UsageEvent, err error)
}

var _ Producer = (*EventProducer)(nil)

// LostReporter publishes the counts of events the spill log had to drop.
type LostReporter interface {
	ReportLost(ctx context.Context, lost []schemas.LostUsage) error
}

// SinkConfig configures a Sink.
type SinkConfig struct {
	// Producer receives the events. Required.
	Producer Producer
	// Spill holds batches the producer could not take. Required.
	Spill *Spill
	// Lost publishes what the spill dropped at its cap. Nil: the counts
	// stay in the spill folder (and in the metrics).
	Lost LostReporter
	// ProduceTimeout is the longest a batch waits on the producer before
	// it goes to the spill log. Default 2s.
	ProduceTimeout time.Duration
	// RetryMin and RetryMax bound the wait between attempts to replay
	// the spill log while the producer fails (doubling). Defaults 100ms
	// and 5s.
	RetryMin, RetryMax time.Duration
	// Logger receives state changes (producer down, back), with
	// component=sink. Nil discards.
	Logger *slog.Logger
	// Pressure reports that the queue in front of the sink is filling
	// (the drainer cannot keep up because Kafka is slow, not down):
	// batches then go to the spill log at once instead of waiting on
	// the producer, so that the queue does not overflow. Nil: never.
	Pressure func() bool
	// QueueDropped returns how many events the queue has dropped since
	// start; the sink reports them as lost usage (LostQueueFull) with
	// Node. Nil: not reported.
	QueueDropped func() uint64
	// Node names this enforcer in lost-usage records.
	Node string
}

// Validate reports every problem with the configuration.
func (c *SinkConfig) Validate() error {
	var errs []error
	if c.Producer == nil {
		errs = append(errs, errors.New("sink: Producer is required"))
	}
	if c.Spill == nil {
		errs = append(errs, errors.New("sink: Spill is required"))
	}
	if c.ProduceTimeout < 0 || c.RetryMin < 0 || c.RetryMax < 0 {
		errs = append(errs, errors.New("sink: durations must not be negative"))
	}
	return errors.Join(errs...)
}

// Sink is the drainer's writer on an enforcer: batches go to the producer
// (Kafka) while it takes them; when it fails or is slow, they go to the
// spill log on disk, and every later batch follows them there until Run
// has replayed the log, oldest first — so events reach Kafka in the order
// they were drained. WriteEvents therefore waits on Kafka at most
// ProduceTimeout once per outage, and never blocks a request: the queue in
// front of it is bounded.
type Sink struct {
	cfg  SinkConfig
	mu   sync.Mutex // serialises WriteEvents
	kick chan struct{}

	produced atomic.Uint64 // events written straight to the producer
	spilled  atomic.Uint64 // events written to the spill log
	replayed atomic.Uint64 // events replayed from the spill log
	failures atomic.Uint64 // failed produce attempts
	// produceTime: how long each Produce took, failed ones included.
	produceTime prometheus.Histogram
	// queueReported: queue drops reported as lost usage so far.
	queueReported uint64
}

var _ BatchWriter = (*Sink)(nil)

// NewSink returns a Sink; start Run to replay the spill log.
func NewSink(cfg SinkConfig) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ProduceTimeout == 0 {
		cfg.ProduceTimeout = 2 * time.Second
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 5 * time.Second
	}
	cfg.Logger = logs.For(cfg.Logger, "sink")
	return &Sink{cfg: cfg, kick: make(chan struct{}, 1), produceTime: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tollgate_kafka_produce_duration_seconds", Help: "Time a batch of usage events took to produce (or fail to), replays included.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})}, nil
}

// WriteEvents produces events, or spills them. It fails only if the spill
// log cannot be written either (then the drainer offers the batch again).
func (s *Sink) WriteEvents(ctx context.Context, events []schemas.UsageEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Spill.Len() == 0 && (s.cfg.Pressure == nil || !s.cfg.Pressure()) {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.ProduceTimeout)
		began := time.Now()
		failed, err := s.cfg.Producer.Produce(pctx, events)
		s.produceTime.Observe(time.Since(began).Seconds())
		cancel()
		s.produced.Add(uint64(len(events) - len(failed)))
		if err == nil {
			return nil
		}
		s.failures.Add(1)
		s.cfg.Logger.Warn("producing usage events failed; spilling to disk until it recovers", "events", len(failed), "err", err)
		events = failed
	}
	kept, err := s.cfg.Spill.Append(events)
	if err != nil {
		return fmt.Errorf("spill events: %w", err)
	}
	s.spilled.Add(uint64(kept))
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

// Run replays the spill log to the producer until ctx ends, and reports
// lost usage once the log is empty.
func (s *Sink) Run(ctx context.Context) error {
	wait := s.cfg.RetryMin
	failing := false
	for {
		done, err := s.replayOne(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			s.failures.Add(1)
			if !failing || wait >= s.cfg.RetryMax {
				// Once when it starts failing, then at each longest wait.
				s.cfg.Logger.Warn("replaying spilled events failed; retrying", "err", err, backoff.RetryIn, wait, "pending", s.cfg.Spill.Len())
			}
			failing = true
			if !backoff.Sleep(ctx, wait) {
				return nil
			}
			wait = backoff.Next(wait, s.cfg.RetryMin, s.cfg.RetryMax)
			continue
		case !done:
			wait = s.cfg.RetryMin
			continue
		}
		if failing {
			s.cfg.Logger.Info("spilled usage events replayed; Kafka is back")
			failing = false
		}
		wait = s.cfg.RetryMin
		if err := s.reportLost(ctx); err != nil {
			s.cfg.Logger.Warn("reporting lost usage failed; retrying", "err", err)
			if !backoff.Sleep(ctx, s.cfg.RetryMax) {
				return nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		}
	}
}

// Drain replays the spill log until it is empty or ctx ends (what is
// left stays on disk for the next start); call it after Run returned.
func (s *Sink) Drain(ctx context.Context) error {
	for {
		done, err := s.replayOne(ctx)
		if done {
			// The drops too, retried as the replay is: the first write
			// after an outage may meet a connection the outage broke.
			for {
				err := s.reportLost(ctx)
				if err == nil {
					return nil
				}
				if ctx.Err() != nil || !backoff.Sleep(ctx, s.cfg.RetryMin) {
					return fmt.Errorf("report lost usage: kept on disk for the next start: %w", err)
				}
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("drain spill log: %d events left on disk for the next start: %w", s.cfg.Spill.Len(), err)
			}
			if !backoff.Sleep(ctx, s.cfg.RetryMin) {
				return fmt.Errorf("drain spill log: %d events left on disk for the next start", s.cfg.Spill.Len())
			}
		}
	}
}

// replayOne produces the oldest spilled batch; done reports an empty log.
func (s *Sink) replayOne(ctx context.Context) (done bool, err error) {
	batch, err := s.cfg.Spill.Peek()
	if err != nil {
		return false, fmt.Errorf("read spill log: %w", err)
	}
	if batch == nil {
		return true, nil
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.ProduceTimeout)
	defer cancel()
	// A partly written batch is replayed whole: the copies already
	// written are dropped downstream by event id.
	began := time.Now()
	_, err = s.cfg.Producer.Produce(pctx, batch)
	s.produceTime.Observe(time.Since(began).Seconds())
	if err != nil {
		return false, err
	}
	if err := s.cfg.Spill.Ack(); err != nil {
		return false, fmt.Errorf("advance spill log: %w", err)
	}
	s.replayed.Add(uint64(len(batch)))
	return false, nil
}

func (s *Sink) reportLost(ctx context.Context) error {
	if s.cfg.Lost == nil {
		return nil
	}
	lost := s.cfg.Spill.Lost()
	for i := range lost {
		if lost[i].Reason == "" {
			lost[i].Reason = schemas.LostSpillFull
		}
	}
	var queued uint64
	if s.cfg.QueueDropped != nil {
		if queued = s.cfg.QueueDropped() - s.queueReported; queued > 0 {
			lost = append(lost, schemas.LostUsage{Node: s.cfg.Node, Count: int64(queued), Reason: schemas.LostQueueFull})
		}
	}
	if len(lost) == 0 {
		return nil
	}
	if err := s.cfg.Lost.ReportLost(ctx, lost); err != nil {
		return err
	}
	s.queueReported += queued
	if queued > 0 {
		lost = lost[:len(lost)-1]
	}
	return s.cfg.Spill.Reported(lost)
}

// SinkStats counts what a Sink did with events.
type SinkStats struct {
	Produced, Spilled, Replayed, Failures uint64
	// SpilledBytes were written to the spill log (since start);
	// PendingBytes are the pending events' records on disk.
	SpilledBytes uint64
	PendingBytes int64
	// Pending events wait in the spill log; Dropped were dropped at its
	// cap (since start).
	Pending int64
	Dropped uint64
}

// Stats returns the counters.
func (s *Sink) Stats() SinkStats {
	return SinkStats{Produced: s.produced.Load(), Spilled: s.spilled.Load(), Replayed: s.replayed.Load(),
		Failures: s.failures.Load(), Pending: s.cfg.Spill.Len(), Dropped: s.cfg.Spill.Dropped(),
		SpilledBytes: s.cfg.Spill.Appended(), PendingBytes: s.cfg.Spill.Bytes()}
}

// LostProducer writes lost-usage records to the lost-usage topic, keyed
// by API key id, as JSON (schemas.EncodeLostUsage).
type LostProducer struct{ w *kafka.Writer }

var _ LostReporter = (*LostProducer)(nil)

// NewLostProducer returns a LostProducer for k's cluster.
func NewLostProducer(k Kafka) *LostProducer {
	k = k.withDefaults()
	return &LostProducer{w: &kafka.Writer{Addr: kafka.TCP(k.Brokers...), Topic: k.Topics().LostUsage,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, WriteTimeout: k.Timeout, ReadTimeout: k.Timeout}}
}

// ReportLost writes one record per entry.
func (p *LostProducer) ReportLost(ctx context.Context, lost []schemas.LostUsage) error {
	msgs := make([]kafka.Message, len(lost))
	for i := range lost {
		b, err := schemas.EncodeLostUsage(&lost[i])
		if err != nil {
			return err
		}
		msgs[i] = kafka.Message{Key: []byte(lost[i].KeyID), Value: b}
	}
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("report lost usage: %w", err)
	}
	return nil
}

// Close closes the producer.
func (p *LostProducer) Close() error { return p.w.Close() }
