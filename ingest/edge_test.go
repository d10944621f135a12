package ingest

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/schemas"
)

// storeWriter is an embedded store that keeps what it is handed.
type storeWriter struct {
	mu     sync.Mutex
	events []schemas.UsageEvent
}

func (s *storeWriter) WriteEvents(_ context.Context, events []schemas.UsageEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, events...)
	return nil
}

func TestEdgeConfigNamesWhatIsWrong(t *testing.T) {
	_, k := sinkCluster(t)
	for _, tc := range []struct {
		cfg  EdgeConfig
		want string
	}{
		{EdgeConfig{}, "exactly one of Store and Kafka"},
		{EdgeConfig{Store: &storeWriter{}, Kafka: &k}, "exactly one of Store and Kafka"},
		{EdgeConfig{Kafka: &k}, "SpillDir is required"},
		{EdgeConfig{Store: &storeWriter{}, QueueSize: -1}, "event queue"},
	} {
		e, err := OpenEdge(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenEdge(%+v) = %v, want an error saying %q", tc.cfg, err, tc.want)
		}
		if e != nil {
			e.Close()
		}
	}
}

// Close writes every event the queue holds, whichever writer takes them.
func TestEdgeCloseWritesEveryQueuedEvent(t *testing.T) {
	const n = 1000
	events := sinkEvents(0, n)
	for _, tc := range []struct {
		name  string
		open  func(t *testing.T) EdgeConfig
		check func(t *testing.T, cfg EdgeConfig, st EdgeStats)
	}{
		{"embedded", func(*testing.T) EdgeConfig { return EdgeConfig{Store: &storeWriter{}} },
			func(t *testing.T, cfg EdgeConfig, _ EdgeStats) {
				if got := len(cfg.Store.(*storeWriter).events); got != n {
					t.Errorf("store has %d events, want %d", got, n)
				}
			}},
		{"kafka", func(t *testing.T) EdgeConfig {
			_, k := sinkCluster(t)
			return EdgeConfig{Kafka: &k, SpillDir: t.TempDir(), Node: "edge-1"}
		}, func(t *testing.T, cfg EdgeConfig, st EdgeStats) {
			checkDelivered(t, events, readEvents(t, *cfg.Kafka))
			if st.Sink.Produced+st.Sink.Replayed != n || st.Sink.Pending != 0 {
				t.Errorf("sink stats %+v, want %d produced, none pending", st.Sink, n)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.open(t)
			e, err := OpenEdge(cfg)
			if err != nil {
				t.Fatal(err)
			}
			e.Start(context.Background())
			for _, ev := range events {
				e.Queue().Offer(ev)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			st := e.Stats()
			if st.Written != n || st.Queued != 0 || st.Dropped != 0 {
				t.Errorf("stats %+v, want %d written, none queued or dropped", st, n)
			}
			tc.check(t, cfg, st)
		})
	}
}

// Close of an edge that never started closes what it opened.
func TestEdgeCloseNeverStarted(t *testing.T) {
	_, k := sinkCluster(t)
	e, err := OpenEdge(EdgeConfig{Kafka: &k, SpillDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("Close of an edge never started: %v", err)
	}
}
