package sqlitestore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tollgate/tollgate/schemas"
)

// fillBatch gives batch fresh ids and times from *t on, with field values
// drawn from a small catalog the way an enforcer's are.
func fillBatch(batch []schemas.UsageEvent, t *int64) {
	plans := [...]string{"free", "pro", "enterprise"}
	keys := [...]string{"key-0001", "key-0002", "key-0003", "key-0004", "key-0005", "key-0006", "key-0007"}
	resources := [...]string{"/items", "/items/{id}", "/orders/{id}/lines"}
	for i := range batch {
		*t += 50_000 // 20k events/s
		d := schemas.DecisionAllowed
		if i%10 == 9 {
			d = schemas.DecisionThrottled
		}
		batch[i] = schemas.UsageEvent{
			ID:            schemas.NewEventID(*t),
			Time:          *t,
			APIID:         "a1b2c3d4e5",
			Stage:         "prod",
			KeyID:         keys[i%len(keys)],
			PlanID:        plans[i%len(plans)],
			Method:        "GET",
			Resource:      resources[i%len(resources)],
			Status:        200,
			Decision:      d,
			LatencyMicros: 1234 + int64(i),
			BytesIn:       0,
			BytesOut:      5120 + int64(i),
		}
	}
}

// BenchmarkInsertEvents measures the background write path: one batch per
// iteration, each with fresh ids, into a file that grows as it runs.
func BenchmarkInsertEvents(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "usage.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			batch := make([]schemas.UsageEvent, size)
			t := int64(1_750_000_000e9)
			b.ReportAllocs()
			for b.Loop() {
				// Timed, but ~1% of the cost: b.StopTimer per batch
				// costs more than it hides.
				fillBatch(batch, &t)
				if err := s.InsertEvents(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
