package chstore

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/chtest"
	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/schemas"
)

// KeepRawFor drops raw events older than the retention, whole days, and
// keeps the newer ones.
func TestKeepRawFor(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, chtest.Database(t))
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
	b := &Batch{Partition: 0, Last: 1, Offsets: []int64{0, 1}, Events: []schemas.UsageEvent{ev(old), ev(recent)}}
	if _, err := st.InsertBatch(ctx, b, NoWatermark); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		st.KeepRawFor(rctx, 30*24*time.Hour, time.Hour, func() time.Time { return now }, slog.New(slog.DiscardHandler))
		close(done)
	}()
	var events []schemas.UsageEvent
	poll.Until(t, 10*time.Second, 20*time.Millisecond, "only the recent raw event left after retention", func() bool {
		if events, err = st.Events(ctx, 0, now.UnixNano(), 10); err != nil {
			t.Fatal(err)
		}
		return len(events) == 1 && events[0].Time == recent
	})
	cancel()
	<-done
}
