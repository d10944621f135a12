package ingest

import (
	"errors"
	"sync/atomic"

	"github.com/tollgate/tollgate/schemas"
)

type cell struct {
	seq atomic.Uint64
	ev  schemas.UsageEvent
}

// pad keeps the producer and consumer cursors on separate cache lines.
type pad [56]byte

// Queue is a bounded multi-producer multi-consumer ring of usage events.
type Queue struct {
	_       pad
	enq     atomic.Uint64
	_       pad
	deq     atomic.Uint64
	_       pad
	dropped atomic.Uint64
	mask    uint64
	cells   []cell
	// wake receives a token when the ring passes half full, so the
	// drainer does not wait for its timer under load.
	wake chan struct{}
	half uint64
}

// ErrQueueCapacity is NewQueue's refusal of a capacity.
var ErrQueueCapacity = errors.New("queue capacity must be between 2 and 67108864")

// NewQueue returns a queue holding up to capacity events, rounded up to a
// power of two.
func NewQueue(capacity int) (*Queue, error) {
	if capacity < 2 || capacity > 1<<26 {
		return nil, ErrQueueCapacity
	}
	n := uint64(1)
	for n < uint64(capacity) {
		n <<= 1
	}
	q := &Queue{mask: n - 1, cells: make([]cell, n), wake: make(chan struct{}, 1), half: n / 2}
	for i := range q.cells {
		q.cells[i].seq.Store(uint64(i))
	}
	return q, nil
}

// Offer copies ev into the queue. It returns false, counting the event as
// dropped, when the queue is full. It never blocks and never allocates.
func (q *Queue) Offer(ev schemas.UsageEvent) bool {
	pos := q.enq.Load()
	for {
		c := &q.cells[pos&q.mask]
		seq := c.seq.Load()
		switch dif := int64(seq) - int64(pos); {
		case dif == 0:
			if q.enq.CompareAndSwap(pos, pos+1) {
				c.ev = ev
				c.seq.Store(pos + 1)
				if pos-q.deq.Load() == q.half {
					select {
					case q.wake <- struct{}{}:
					default:
					}
				}
				return true
			}
			pos = q.enq.Load()
		case dif < 0:
			q.dropped.Add(1)
			return false
		default:
			pos = q.enq.Load()
		}
	}
}

// poll takes one event out, if any.
func (q *Queue) poll(out *schemas.UsageEvent) bool {
	pos := q.deq.Load()
	for {
		c := &q.cells[pos&q.mask]
		seq := c.seq.Load()
		switch dif := int64(seq) - int64(pos+1); {
		case dif == 0:
			if q.deq.CompareAndSwap(pos, pos+1) {
				*out = c.ev
				c.ev = schemas.UsageEvent{} // release strings for the collector
				c.seq.Store(pos + q.mask + 1)
				return true
			}
			pos = q.deq.Load()
		case dif < 0:
			return false
		default:
			pos = q.deq.Load()
		}
	}
}

// Drain appends up to max queued events to buf and returns it.
func (q *Queue) Drain(buf []schemas.UsageEvent, max int) []schemas.UsageEvent {
	var ev schemas.UsageEvent
	for n := 0; n < max && q.poll(&ev); n++ {
		buf = append(buf, ev)
	}
	return buf
}

// Len returns the number of queued events (approximate under concurrency).
func (q *Queue) Len() int {
	d, e := q.deq.Load(), q.enq.Load()
	if e < d {
		return 0
	}
	return int(e - d)
}

// Dropped returns how many events were refused because the queue was full.
func (q *Queue) Dropped() uint64 { return q.dropped.Load() }

// Wake is signalled when the queue passes half full.
func (q *Queue) Wake() <-chan struct{} { return q.wake }

// Cap returns how many events the queue holds at most.
func (q *Queue) Cap() int { return len(q.cells) }
