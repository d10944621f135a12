package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/internal/backoff"
	"github.com/tollgate/tollgate/internal/logs"
	"github.com/tollgate/tollgate/schemas"
)

// BatchWriter accepts a batch of events. It either keeps all of them or
// returns an error; a batch may be offered again after an error, so
// writers must tolerate a repeat (events carry unique ids).
type BatchWriter interface {
	WriteEvents(ctx context.Context, events []schemas.UsageEvent) error
}

// DrainerConfig configures a Drainer.
type DrainerConfig struct {
	// Queue to drain. Required.
	Queue *Queue
	// Writer receives the batches. Required.
	Writer BatchWriter
	// MaxBatch caps the events per batch. Default 4096.
	MaxBatch int
	// Interval is the longest an event waits in the queue while the
	// queue is less than half full. Default 200ms.
	Interval time.Duration
	// MaxBackoff caps the wait between retries of a failed batch, which
	// starts at 50ms and doubles. Default 5s.
	MaxBackoff time.Duration
	// ShutdownTimeout bounds the final flush when Run's context ends.
	// Default 30s.
	ShutdownTimeout time.Duration
	// UnhealthyAfter is how many writes in a row must fail before Health
	// reports the writer as failing. Default 3 (with the default backoff,
	// about a third of a second of failures).
	UnhealthyAfter int
	// Logger receives write failures, with component=drainer. Nil
	// discards them.
	Logger *slog.Logger
}

// Validate reports every problem with the configuration.
func (c *DrainerConfig) Validate() error {
	var errs []error
	if c.Queue == nil {
		errs = append(errs, errors.New("drainer: Queue is required"))
	}
	if c.Writer == nil {
		errs = append(errs, errors.New("drainer: Writer is required"))
	}
	if c.MaxBatch < 0 || c.Interval < 0 || c.MaxBackoff < 0 || c.ShutdownTimeout < 0 || c.UnhealthyAfter < 0 {
		errs = append(errs, errors.New("drainer: sizes and durations must not be negative"))
	}
	return errors.Join(errs...)
}

// Drainer moves events from a Queue to a BatchWriter.
type Drainer struct {
	cfg     DrainerConfig
	buf     []schemas.UsageEvent
	written atomic.Uint64
	failed  atomic.Uint64
	// inARow counts the failed writes since the last accepted one;
	// lastErr is the newest of them.
	inARow  atomic.Int64
	lastErr atomic.Pointer[error]
}

// NewDrainer returns a Drainer; call Run to start it.
func NewDrainer(cfg DrainerConfig) (*Drainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 4096
	}
	if cfg.Interval == 0 {
		cfg.Interval = 200 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if cfg.UnhealthyAfter == 0 {
		cfg.UnhealthyAfter = 3
	}
	cfg.Logger = logs.For(cfg.Logger, "drainer")
	return &Drainer{cfg: cfg, buf: make([]schemas.UsageEvent, 0, cfg.MaxBatch)}, nil
}

// Run drains until ctx ends, then flushes what is left within
// ShutdownTimeout. Stop offering events before cancelling ctx, or the last
// ones may stay behind.
func (d *Drainer) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.ShutdownTimeout)
			defer cancel()
			return d.Flush(fctx)
		case <-t.C:
		case <-d.cfg.Queue.Wake():
		}
		if err := d.Flush(ctx); err != nil && ctx.Err() == nil {
			return err
		}
	}
}

// Flush writes every queued event, retrying failed batches with backoff
// until they are accepted or ctx ends. A batch not accepted by then stays
// in the drainer and goes first on the next Flush.
func (d *Drainer) Flush(ctx context.Context) error {
	for {
		if len(d.buf) == 0 {
			d.buf = d.cfg.Queue.Drain(d.buf, d.cfg.MaxBatch)
			if len(d.buf) == 0 {
				return nil
			}
		}
		if err := d.writeWithRetry(ctx); err != nil {
			return err
		}
		d.written.Add(uint64(len(d.buf)))
		clear(d.buf)
		d.buf = d.buf[:0]
	}
}

func (d *Drainer) writeWithRetry(ctx context.Context) error {
	wait := time.Duration(0)
	for {
		err := d.cfg.Writer.WriteEvents(ctx, d.buf)
		if err == nil {
			d.inARow.Store(0)
			return nil
		}
		d.failed.Add(1)
		d.lastErr.Store(&err)
		if d.inARow.Add(1) == int64(d.cfg.UnhealthyAfter) {
			d.cfg.Logger.Error("usage store refuses writes: not ready until a batch is accepted", "failuresInARow", d.cfg.UnhealthyAfter, "err", err)
		}
		if !backoff.Retry(ctx, d.cfg.Logger, &wait, 50*time.Millisecond, d.cfg.MaxBackoff, "write usage events failed; retrying", "events", len(d.buf), "err", err) {
			return fmt.Errorf("flush usage events: %d not written: %w", len(d.buf)+d.cfg.Queue.Len(), err)
		}
	}
}

// Written returns how many events were accepted by the writer.
func (d *Drainer) Written() uint64 { return d.written.Load() }

// Failures returns how many batch writes failed (each was retried).
func (d *Drainer) Failures() uint64 { return d.failed.Load() }

// Health returns nil while the writer accepts batches, and an error that
// says why once UnhealthyAfter writes in a row have failed (events then
// wait in the queue, and are dropped when it is full). It turns nil again
// at the next accepted batch. Readiness checks report it.
func (d *Drainer) Health() error {
	n := d.inARow.Load()
	if n < int64(d.cfg.UnhealthyAfter) {
		return nil
	}
	var last error
	if p := d.lastErr.Load(); p != nil {
		last = *p
	}
	return fmt.Errorf("usage store refuses writes: the last %d batch writes failed (%d events queued): %w", n, d.cfg.Queue.Len(), last)
}

// WriterFunc adapts a function to BatchWriter.
type WriterFunc func(ctx context.Context, events []schemas.UsageEvent) error

// WriteEvents calls f.
func (f WriterFunc) WriteEvents(ctx context.Context, events []schemas.UsageEvent) error {
	return f(ctx, events)
}
