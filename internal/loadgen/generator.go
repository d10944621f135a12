package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// readBufferSize bounds a status or header line and sizes each
// connection's read buffer.
const readBufferSize = 16 << 10

// reconnectPause is how long a connection waits after a failed dial
// before the next one, so that a refused port is not dialled in a spin.
const reconnectPause = 10 * time.Millisecond

// Generator runs load as its Config says. Run may be called again, but
// not concurrently.
type Generator struct {
	cfg      Config
	req      []byte
	head     bool
	interval time.Duration // between a connection's slots when paced; 0: closed loop
}

// New validates cfg, applies its defaults and prebuilds the request.
func New(cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("loadgen config: %w", err)
	}
	cfg = cfg.withDefaults()
	g := &Generator{cfg: cfg, req: cfg.buildRequest(), head: cfg.Method == http.MethodHead}
	if cfg.Rate > 0 {
		g.interval = max(time.Duration(float64(cfg.Conns)/cfg.Rate*float64(time.Second)), 1)
	}
	return g, nil
}

// Run dials Conns connections and keeps one request in flight on each for
// Warmup plus Duration, then returns what it measured. It returns early,
// with ctx's error, if ctx ends first.
func (g *Generator) Run(ctx context.Context) (*Result, error) {
	start := time.Now()
	measureFrom := start.Add(g.cfg.Warmup)
	end := measureFrom.Add(g.cfg.Duration)
	runCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()

	workers := make([]*worker, g.cfg.Conns)
	var wg sync.WaitGroup
	if g.cfg.OnMeasureStart != nil || g.cfg.OnMeasureEnd != nil {
		wg.Go(func() { g.hooks(ctx, measureFrom, end) })
	}
	for i := range workers {
		// Paced, connection i's first slot is i/Conns of an interval in.
		first := start.Add(g.interval * time.Duration(i) / time.Duration(g.cfg.Conns))
		w := &worker{g: g, measureFrom: measureFrom, end: end, next: first}
		workers[i] = w
		wg.Go(func() { w.run(runCtx) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load run: %w", err)
	}

	res := &Result{Duration: g.cfg.Duration, Status: map[int]uint64{}, Latency: &Histogram{}}
	for _, w := range workers {
		res.Responses += w.responses
		for code, n := range w.status {
			if n > 0 {
				res.Status[code] += n
			}
		}
		res.Latency.Merge(&w.hist)
		res.Errors.add(w.errs)
		res.Reconnects += w.reconnects
		res.Late += w.late
	}
	return res, nil
}

// hooks calls OnMeasureStart at measureFrom and OnMeasureEnd at end,
// unless ctx ends first.
func (g *Generator) hooks(ctx context.Context, measureFrom, end time.Time) {
	for _, h := range []struct {
		at time.Time
		f  func()
	}{{measureFrom, g.cfg.OnMeasureStart}, {end, g.cfg.OnMeasureEnd}} {
		pause(ctx, time.Until(h.at))
		if ctx.Err() != nil {
			return
		}
		if h.f != nil {
			h.f()
		}
	}
}

// worker drives one connection. Everything it counts is its own, merged
// after the run, so the request loop shares nothing.
type worker struct {
	g           *Generator
	measureFrom time.Time
	end         time.Time
	next        time.Time // paced: the slot of the next request

	br *bufio.Reader

	mu      sync.Mutex // guards conn and stopped against interrupt
	conn    net.Conn
	stopped bool

	status     [1000]uint64
	responses  uint64
	hist       Histogram
	errs       Errors
	reconnects uint64
	late       uint64
	dialled    bool
}

func (w *worker) run(ctx context.Context) {
	stop := context.AfterFunc(ctx, w.interrupt)
	defer stop()
	defer w.closeConn()

	cfg := &w.g.cfg
	w.br = bufio.NewReaderSize(nil, readBufferSize)
	for ctx.Err() == nil {
		if w.conn == nil && !w.dial(ctx) {
			pause(ctx, reconnectPause)
			continue
		}
		if w.g.interval > 0 && !w.waitSlot(ctx) {
			break
		}
		t0 := time.Now()
		deadline := t0.Add(cfg.Timeout)
		if deadline.After(w.end) {
			deadline = w.end
		}
		if err := w.conn.SetDeadline(deadline); err != nil {
			w.fail(ctx, &w.errs.Write, err)
			continue
		}
		if _, err := w.conn.Write(w.g.req); err != nil {
			w.fail(ctx, &w.errs.Write, err)
			continue
		}
		status, closeConn, err := readResponse(w.br, w.g.head)
		t1 := time.Now()
		if err != nil {
			var bad malformedError
			if errors.As(err, &bad) {
				w.fail(ctx, &w.errs.Parse, err)
			} else {
				w.fail(ctx, &w.errs.Read, err)
			}
			continue
		}
		if !t1.Before(w.measureFrom) {
			w.responses++
			w.status[min(status, len(w.status)-1)]++
			w.hist.Record(t1.Sub(t0))
		}
		if closeConn {
			w.closeConn()
		}
	}
}

// waitSlot waits for the next request's slot, or counts it late if it has
// passed, and moves the slot on by one interval. It reports false if ctx
// ended while it waited.
func (w *worker) waitSlot(ctx context.Context) bool {
	slot := w.next
	w.next = slot.Add(w.g.interval)
	now := time.Now()
	if now.Before(slot) {
		pause(ctx, slot.Sub(now))
		return ctx.Err() == nil
	}
	if !now.Before(w.measureFrom) {
		w.late++
	}
	return true
}

// dial opens the connection, reporting whether it succeeded.
func (w *worker) dial(ctx context.Context) bool {
	d := net.Dialer{Timeout: w.g.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", w.g.cfg.Addr)
	if err != nil {
		w.count(ctx, &w.errs.Connect, err)
		return false
	}
	w.mu.Lock()
	stopped := w.stopped
	if !stopped {
		w.conn = conn
	}
	w.mu.Unlock()
	if stopped {
		conn.Close()
		return false
	}
	if w.dialled {
		w.reconnects++
	}
	w.dialled = true
	w.br.Reset(conn)
	return true
}

// fail counts a failed request and drops its connection, which is in an
// unknown state.
func (w *worker) fail(ctx context.Context, counter *uint64, err error) {
	w.count(ctx, counter, err)
	w.closeConn()
}

// count adds one to counter (or to Timeout), unless the run is over: a
// request cut off by the end of the run, or by cancellation, is no error.
func (w *worker) count(ctx context.Context, counter *uint64, err error) {
	if ctx.Err() != nil || !time.Now().Before(w.end) {
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		counter = &w.errs.Timeout
	}
	*counter++
}

func (w *worker) closeConn() {
	w.mu.Lock()
	conn := w.conn
	w.conn = nil
	w.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// interrupt runs when the run's context ends; closing the connection ends
// any read or write blocked on it at once.
func (w *worker) interrupt() {
	w.mu.Lock()
	w.stopped = true
	conn := w.conn
	w.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// pause waits for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
