package aggregator

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/schemas"
)

// Freshness and signal latency, with the aggregator's defaults (flush
// every 500 ms, signals every second and at once at 80% and 100%):
//
//   - freshness: an event produced now is in the minute rollup (what
//     /v1/usage reads) within 2 s, p99;
//   - signal latency: the event that takes a key past 80% of its quota
//     reaches an enforcer's signal reader within 1 s, p99.
func TestFreshnessAndSignalLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of traffic")
	}
	r := newRig(t)
	ctx := context.Background()
	const keys = 40
	plans := []catalog.UsagePlan{{ID: "plan", Name: "plan", Quota: &catalog.Quota{Limit: 100, Period: catalog.Day}}}
	cat := catalog.StateOf(&catalog.Catalog{UsagePlans: plans})
	sw, err := ingest.NewSignalWriter(r.k)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()

	// Signals as an enforcer sees them: when each key's Used first
	// reached 80.
	var mu sync.Mutex
	seen := map[string]time.Time{}
	sr, err := ingest.OpenSignalReader(ingest.SignalReaderConfig{Kafka: r.k, MaxWait: 50 * time.Millisecond, Apply: func(s *schemas.QuotaSignal) bool {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := seen[s.KeyID]; !ok && s.Used >= 80 {
			seen[s.KeyID] = time.Now()
		}
		return true
	}})
	if err != nil {
		t.Fatal(err)
	}
	srCtx, stopSR := context.WithCancel(ctx)
	srDone := make(chan struct{})
	go func() { sr.Run(srCtx); close(srDone) }()
	defer func() { stopSR(); <-srDone }()

	a := r.start(Config{FlushEvents: 1 << 16, Signals: sw, FlushInterval: 500 * time.Millisecond, // the default, not the rig's
		Catalog: func() *catalog.State { return cat }})
	defer a.stop(t)
	p, err := ingest.NewEventProducer(r.k)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// Each round: one event for each key, stamped now; after 80 rounds
	// every key crosses 80%. The store's total is polled, apart from the
	// sending, to time when each round became visible: the time of a
	// round is then the pipeline's and one query's, not also the sending
	// loop's (a poll between sends once made a slow query count against
	// every round behind it).
	const rounds = 90
	var smu sync.Mutex
	sentAt := make([]time.Time, 0, rounds)
	var fresh []time.Duration
	var pollErr error
	var crossedAt time.Time
	total := func() (int64, error) {
		rows, err := r.direct.Minutes(ctx, time.Now().Add(-time.Hour).Unix()/60, time.Now().Add(time.Hour).Unix()/60)
		var n int64
		for _, m := range rows {
			n += m.Requests
		}
		return n, err
	}
	stopPoll, pollDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(pollDone)
		for {
			n, err := total()
			smu.Lock()
			if err != nil {
				pollErr = err
				smu.Unlock()
				return
			}
			for len(fresh) < len(sentAt) && n >= int64((len(fresh)+1)*keys) {
				fresh = append(fresh, time.Since(sentAt[len(fresh)]))
			}
			done := len(fresh) == rounds
			smu.Unlock()
			if done {
				return
			}
			select {
			case <-stopPoll:
				return
			case <-time.After(5 * time.Millisecond): // the next look at the store
			}
		}
	}()
	for round := range rounds {
		now := time.Now()
		batch := make([]schemas.UsageEvent, keys)
		for k := range batch {
			batch[k] = schemas.UsageEvent{ID: schemas.NewEventID(now.UnixNano()), Time: now.UnixNano(), KeyID: fmt.Sprintf("key%02d", k),
				PlanID: "plan", APIID: "api", Stage: "prod", Method: "GET", Resource: "/items", Status: 200, Decision: schemas.DecisionAllowed, Node: "n1"}
		}
		smu.Lock()
		sentAt = append(sentAt, now) // before the events exist: never after they are seen
		smu.Unlock()
		if _, err := p.Produce(ctx, batch); err != nil {
			close(stopPoll)
			t.Fatal(err)
		}
		if round == 79 {
			crossedAt = now
		}
		time.Sleep(30 * time.Millisecond) // the traffic's pace: a round every ~30 ms
	}
	select {
	case <-pollDone:
	case <-time.After(20 * time.Second):
		close(stopPoll)
		<-pollDone
	}
	smu.Lock()
	visible, err := len(fresh), pollErr
	smu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if visible < rounds {
		t.Fatalf("only %d of %d rounds visible after 20s", visible, rounds)
	}
	var signal []time.Duration
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == keys {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d keys signalled at 80%% after 10s", n, keys)
		}
	}
	for _, at := range seen {
		signal = append(signal, at.Sub(crossedAt))
	}
	p99 := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[min(len(d)-1, len(d)*99/100)]
	}
	fp, sp := p99(fresh), p99(signal)
	t.Logf("freshness over %d rounds: p50 %v, p99 %v; signal latency at 80%% over %d keys: p50 %v, p99 %v",
		len(fresh), fresh[len(fresh)/2], fp, len(signal), signal[len(signal)/2], sp)
	if fp > 2*time.Second {
		t.Errorf("p99 freshness %v, want <= 2s", fp)
	}
	if sp > time.Second {
		t.Errorf("p99 signal latency %v, want <= 1s", sp)
	}
}
