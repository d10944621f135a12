package aggregator

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

func TestPlausible(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	ok := schemas.UsageEvent{ID: schemas.NewEventID(now.UnixNano()), Time: now.UnixNano(), Status: 200, Decision: schemas.DecisionAllowed}
	tests := []struct {
		name   string
		change func(*schemas.UsageEvent)
		valid  bool
	}{
		{"one admitted request", func(*schemas.UsageEvent) {}, true},
		{"admitted, count 1", func(e *schemas.UsageEvent) { e.Count = 1 }, true},
		{"rejected requests counted per minute", func(e *schemas.UsageEvent) {
			e.Count, e.Decision, e.Status = 100000, schemas.DecisionForbidden, 403
		}, true},
		// Quotas count admitted events one by one: an enforcer never
		// aggregates them, and a record that does is refused.
		{"admitted requests counted as one event", func(e *schemas.UsageEvent) { e.Count = 2 }, false},
		{"negative size", func(e *schemas.UsageEvent) { e.BytesIn = -1 }, false},
		{"status 0", func(e *schemas.UsageEvent) { e.Status = 0 }, false},
		{"time far ahead", func(e *schemas.UsageEvent) { e.Time += 2 * 365 * 24 * int64(time.Hour) }, false},
		{"a day ahead: a fast clock", func(e *schemas.UsageEvent) { e.Time += 24 * int64(time.Hour) }, false},
		{"just past MaxAhead", func(e *schemas.UsageEvent) { e.Time += int64(MaxAhead) + 1 }, false},
		{"at MaxAhead", func(e *schemas.UsageEvent) { e.Time += int64(MaxAhead) }, true},
		{"a day ago: a spill log's replay", func(e *schemas.UsageEvent) { e.Time -= 24 * int64(time.Hour) }, true},
	}
	for _, tt := range tests {
		e := ok
		tt.change(&e)
		if err := plausible(&e, now); (err == nil) != tt.valid {
			t.Errorf("%s: plausible = %v, want valid %v", tt.name, err, tt.valid)
		}
	}
}
