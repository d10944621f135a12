package main

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/chtest"
	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage/chstore"
)

// The aggregator drops raw events older than --raw-retention, whole days,
// and keeps the newer ones.
func TestRawRetention(t *testing.T) {
	ctx := context.Background()
	st, err := chstore.Open(ctx, chtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	old, recent := now.Add(-40*24*time.Hour).UnixNano(), now.Add(-2*24*time.Hour).UnixNano()
	ev := func(at int64) schemas.UsageEvent {
		return schemas.UsageEvent{ID: schemas.NewEventID(at), Time: at, KeyID: "k", PlanID: "p", Status: 200, Decision: schemas.DecisionAllowed}
	}
	b := &chstore.Batch{Partition: 0, Last: 1, Offsets: []int64{0, 1}, Events: []schemas.UsageEvent{ev(old), ev(recent)}}
	if _, err := st.InsertBatch(ctx, b, chstore.NoWatermark); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		keepRawFor(rctx, st, 30*24*time.Hour, time.Hour, func() time.Time { return now }, slog.New(slog.DiscardHandler))
		close(done)
	}()
	poll.UntilOK(t, 10*time.Second, 20*time.Millisecond, "retention deletes the old raw event", func() error {
		events, err := st.Events(ctx, 0, now.UnixNano(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 1 || events[0].Time != recent {
			return fmt.Errorf("raw events after retention: %d, want only the recent one", len(events))
		}
		return nil
	})
	cancel()
	<-done
}
