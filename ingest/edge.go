package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/logs"
	"github.com/tollgate/tollgate/internal/metrics"
)

// Edge carries a gateway's usage events to where they are kept. The
// gateway offers each event to a bounded Queue (never blocking a
// request); a Drainer batches them, every FlushInterval or sooner when
// the queue fills, and hands each batch to one of two writers:
//
//   - embedded (EdgeConfig.Store): the usage store itself, retrying a
//     batch that failed (tollgate serve);
//   - fleet (EdgeConfig.Kafka): a Sink, which produces the batch to the
//     events topic or, while Kafka fails or is slow, appends it to the
//     Spill log in SpillDir and replays the log in order once Kafka
//     answers; what the log's cap drops is reported on the lost-usage
//     topic (tollgate enforcer, serve --kafka).
//
// Open it, hand Queue to the gateway, Start it, and Close it once the
// gateway's servers have stopped: Close writes every event the queue
// holds, then, on a fleet, spends up to DrainTimeout handing the spill
// log to Kafka; what is left stays on disk for the next start.
type Edge struct {
	cfg      EdgeConfig
	log      *slog.Logger // cfg.Logger, for the edge's own lines
	queue    *Queue
	drainer  *Drainer
	sink     *Sink // nil when embedded
	spill    *Spill
	producer *EventProducer
	lost     *LostProducer

	drainStop, sinkStop context.CancelFunc
	drained, sinkDone   chan error
}

// EdgeConfig configures an Edge. Exactly one of Store and Kafka is set.
type EdgeConfig struct {
	// Store receives the batches directly (embedded).
	Store BatchWriter
	// Kafka names the cluster whose events topic receives the batches
	// (fleet).
	Kafka *Kafka
	// QueueSize bounds the events waiting between requests and the
	// writer; beyond it events are dropped and counted. Default 65536.
	QueueSize int
	// FlushInterval is the longest an event waits in the queue. Default
	// 200ms.
	FlushInterval time.Duration
	// SpillDir holds the spill log (fleet). Required with Kafka.
	SpillDir string
	// SpillMaxBytes caps the spill log. Default 1 GiB.
	SpillMaxBytes int64
	// Node names this enforcer in lost-usage records.
	Node string
	// DrainTimeout bounds how long Close hands the spill log to Kafka.
	// Default 30s.
	DrainTimeout time.Duration
	// Logger receives the pipeline's failures. Nil discards them.
	Logger *slog.Logger
	// Metrics is where the edge registers its metrics (queue, writes,
	// and on a fleet produce, spill and replay: metrics.go). Nil: not
	// registered.
	Metrics prometheus.Registerer
}

// EdgeStats are an Edge's counters since it opened.
type EdgeStats struct {
	Queued  int    // events waiting in the queue
	Dropped uint64 // events dropped because the queue was full
	// Written events reached the writer (the store, or the Sink, which
	// produced, spilled or dropped each); WriteFailures counts failed
	// batch writes, each retried.
	Written, WriteFailures uint64
	Sink                   SinkStats // fleet only
}

// OpenEdge opens the queue and, on a fleet, the spill log and the
// producers. Nothing runs until Start.
func OpenEdge(cfg EdgeConfig) (*Edge, error) {
	if (cfg.Store == nil) == (cfg.Kafka == nil) {
		return nil, errors.New("edge: exactly one of Store and Kafka is required")
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 1 << 16
	}
	if cfg.SpillMaxBytes == 0 {
		cfg.SpillMaxBytes = 1 << 30
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	queue, err := NewQueue(cfg.QueueSize)
	if err != nil {
		return nil, fmt.Errorf("event queue: %w", err)
	}
	e := &Edge{cfg: cfg, queue: queue, log: logs.For(cfg.Logger, "edge")}
	writer := cfg.Store
	if cfg.Kafka != nil {
		if cfg.SpillDir == "" {
			return nil, errors.New("edge: SpillDir is required with Kafka")
		}
		if e.spill, err = OpenSpill(SpillConfig{Dir: filepath.Clean(cfg.SpillDir), MaxBytes: cfg.SpillMaxBytes,
			SegmentBytes: min(64<<20, cfg.SpillMaxBytes), Node: cfg.Node}); err != nil {
			return nil, fmt.Errorf("open spill log: %w", err)
		}
		if e.producer, err = NewEventProducer(*cfg.Kafka); err != nil {
			e.spill.Close()
			return nil, err
		}
		e.lost = NewLostProducer(*cfg.Kafka)
		// ProduceTimeout: short enough that the queue does not overflow
		// while the first batch of an outage waits, long enough for a
		// healthy broker's acks.
		if e.sink, err = NewSink(SinkConfig{Producer: e.producer, Spill: e.spill, Lost: e.lost,
			ProduceTimeout: time.Second, Logger: cfg.Logger, Node: cfg.Node, QueueDropped: queue.Dropped,
			// Kafka slow rather than down: spill before the queue overflows.
			Pressure: func() bool { return queue.Len() > queue.Cap()*3/4 }}); err != nil {
			e.close()
			return nil, err
		}
		writer = e.sink
		if n := e.spill.Len(); n > 0 {
			e.log.Info("spill log holds events from before; replaying them to Kafka", "events", n)
		}
	}
	if e.drainer, err = NewDrainer(DrainerConfig{Queue: queue, Writer: writer, Interval: cfg.FlushInterval, Logger: cfg.Logger}); err != nil {
		e.close()
		return nil, err
	}
	if err := metrics.Register(cfg.Metrics, "edge", e.collector()); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// Queue is what the gateway offers its events to.
func (e *Edge) Queue() *Queue { return e.queue }

// Start runs the drainer (and, on a fleet, the sink's replay) until
// Close. ctx's values are kept, not its end: Close stops them.
func (e *Edge) Start(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	var dctx context.Context
	dctx, e.drainStop = context.WithCancel(ctx)
	e.drained = make(chan error, 1)
	go func() { e.drained <- e.drainer.Run(dctx) }()
	if e.sink != nil {
		var sctx context.Context
		sctx, e.sinkStop = context.WithCancel(ctx)
		e.sinkDone = make(chan error, 1)
		go func() { e.sinkDone <- e.sink.Run(sctx) }()
	}
}

// Close writes what the queue holds and closes the pipeline; on a
// fleet it first hands the spill log to Kafka for up to DrainTimeout.
// Call it once the gateway offers no more events.
func (e *Edge) Close() error {
	if e.drainStop == nil { // never started
		return e.close()
	}
	e.drainStop()
	err := <-e.drained
	if e.sink != nil {
		e.sinkStop()
		<-e.sinkDone
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.DrainTimeout)
		defer cancel()
		if derr := e.sink.Drain(ctx); derr != nil {
			e.log.Warn("spill log not fully handed to Kafka; the rest is replayed at the next start", "err", derr)
		}
	}
	st := e.Stats()
	e.log.Info("usage events handed off", "written", st.Written, "produced", st.Sink.Produced+st.Sink.Replayed,
		"spilledLeft", st.Sink.Pending, "droppedAtSpillCap", st.Sink.Dropped, "droppedAtQueue", st.Dropped, "left", st.Queued)
	return errors.Join(err, e.close())
}

func (e *Edge) close() error {
	var errs []error
	if e.producer != nil {
		errs = append(errs, e.producer.Close())
	}
	if e.lost != nil {
		errs = append(errs, e.lost.Close())
	}
	if e.spill != nil {
		errs = append(errs, e.spill.Close())
	}
	return errors.Join(errs...)
}

// Health reports whether batches are being written (see Drainer.Health).
func (e *Edge) Health() error { return e.drainer.Health() }

// Stats returns the counters.
func (e *Edge) Stats() EdgeStats {
	st := EdgeStats{Queued: e.queue.Len(), Dropped: e.queue.Dropped(), Written: e.drainer.Written(), WriteFailures: e.drainer.Failures()}
	if e.sink != nil {
		st.Sink = e.sink.Stats()
	}
	return st
}
