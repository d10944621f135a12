package usage

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/utc"
)

var quotaNow = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

type fixedCatalog struct{ s *catalog.State }

func (c fixedCatalog) State() *catalog.State { return c.s }

// quotaStore holds rows for Daily and records adjustments.
type quotaStore struct {
	rows    []DayCount
	filters []Filter
	adjust  []int64 // deltas, in order
	days    []int64
	fail    error
}

func (s *quotaStore) Daily(_ context.Context, f Filter) ([]DayCount, error) {
	s.filters = append(s.filters, f)
	return s.rows, nil
}

func (s *quotaStore) AdjustQuota(_ context.Context, _, _ string, day, delta int64) error {
	if s.fail != nil {
		return s.fail
	}
	s.adjust = append(s.adjust, delta)
	s.days = append(s.days, day)
	return nil
}

// liveCounter is a gateway's counter of one key.
type liveCounter struct {
	used  int64
	calls []int64
}

func (l *liveCounter) SetUsed(_, _ string, used int64) (int64, error) {
	l.calls = append(l.calls, used)
	delta := used - l.used
	l.used = used
	return delta, nil
}

func newQuotaUpdate(t *testing.T, store *quotaStore, live LiveCounter, auditPath string) *QuotaUpdate {
	t.Helper()
	s := catalog.StateOf(&catalog.Catalog{
		UsagePlans: []catalog.UsagePlan{{ID: "p1", Name: "Monthly", Quota: &catalog.Quota{Limit: 100, Period: catalog.Month}, APIStages: []catalog.APIStage{}}},
		APIKeys:    []catalog.APIKey{{ID: "k1", Name: "a", ValueHash: catalog.HashKey("aaaaaaaaaaaaaaaaaaaaaa"), UsagePlans: []string{"p1"}}},
	})
	if auditPath == "" {
		auditPath = filepath.Join(t.TempDir(), "audit.log")
	}
	q := &QuotaUpdate{Catalog: fixedCatalog{s}, Store: store, Audit: catalog.AuditLogAt(auditPath), Now: func() time.Time { return quotaNow }}
	if live != nil {
		q.Live = live
	}
	return q
}

func auditedRemaining(t *testing.T, q *QuotaUpdate) []string {
	t.Helper()
	entries, err := q.Audit.Read()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.ID+" "+string(e.Old)+" -> "+string(e.New))
	}
	return out
}

func TestQuotaUpdateLiveCounter(t *testing.T) {
	store := &quotaStore{}
	live := &liveCounter{used: 30}
	q := newQuotaUpdate(t, store, live, "")
	if err := q.SetRemaining(context.Background(), "p1", "k1", 50); err != nil {
		t.Fatal(err)
	}
	today := utc.Day(quotaNow.UnixNano())
	if live.used != 50 || len(store.adjust) != 1 || store.adjust[0] != 20 || store.days[0] != today {
		t.Errorf("live %d, adjustments %v on %v; want used 50 and +20 today", live.used, store.adjust, store.days)
	}
	if len(store.filters) != 0 {
		t.Errorf("the store was read (%v); the live counter is the count", store.filters)
	}
	if got := auditedRemaining(t, q); len(got) != 1 || got[0] != `p1/k1 {"remaining":70} -> {"remaining":50}` {
		t.Errorf("audit %q", got)
	}
}

func TestQuotaUpdateStoreCount(t *testing.T) {
	// The month so far: 30 admitted and 5 adjusted on two days.
	store := &quotaStore{rows: []DayCount{{Admitted: 20}, {Admitted: 10, Adjustment: 5}}}
	q := newQuotaUpdate(t, store, nil, "")
	if err := q.SetRemaining(context.Background(), "p1", "k1", 90); err != nil {
		t.Fatal(err)
	}
	month := utc.Day(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	if len(store.filters) != 1 || store.filters[0].FromDay != month || store.filters[0].ToDay != utc.Day(quotaNow.UnixNano()) ||
		store.filters[0].PlanID != "p1" || store.filters[0].KeyID != "k1" {
		t.Errorf("Daily read %+v, want the month so far of p1/k1", store.filters)
	}
	if len(store.adjust) != 1 || store.adjust[0] != 10-35 {
		t.Errorf("adjustments %v, want -25 (used 35 -> 10)", store.adjust)
	}
	if got := auditedRemaining(t, q); len(got) != 1 || got[0] != `p1/k1 {"remaining":65} -> {"remaining":90}` {
		t.Errorf("audit %q", got)
	}
}

// A refusal anywhere puts back what was changed before it.
func TestQuotaUpdateAllOrNothing(t *testing.T) {
	t.Run("store refuses", func(t *testing.T) {
		store := &quotaStore{fail: errors.New("disk full")}
		live := &liveCounter{used: 30}
		q := newQuotaUpdate(t, store, live, "")
		if err := q.SetRemaining(context.Background(), "p1", "k1", 50); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("SetRemaining = %v, want the store's error", err)
		}
		if live.used != 30 {
			t.Errorf("live counter %d after the store refused, want 30 again", live.used)
		}
		if got := auditedRemaining(t, q); len(got) != 0 {
			t.Errorf("audited %q", got)
		}
	})
	t.Run("audit log refuses", func(t *testing.T) {
		store := &quotaStore{}
		live := &liveCounter{used: 30}
		q := newQuotaUpdate(t, store, live, filepath.Join(t.TempDir(), "missing", "audit.log"))
		if err := q.SetRemaining(context.Background(), "p1", "k1", 50); err == nil {
			t.Fatal("SetRemaining succeeded with an audit log that cannot be written")
		}
		if live.used != 30 || len(store.adjust) != 2 || store.adjust[0]+store.adjust[1] != 0 {
			t.Errorf("live %d, adjustments %v; want 30 and the adjustment taken back", live.used, store.adjust)
		}
	})
	t.Run("rule refuses", func(t *testing.T) {
		store := &quotaStore{}
		live := &liveCounter{used: 30}
		q := newQuotaUpdate(t, store, live, "")
		for _, tt := range []struct {
			plan, key string
			remaining int64
			want      error
		}{{"p1", "k1", 101, catalog.ErrRemainingOutOfRange}, {"p1", "nope", 1, catalog.ErrNoSuchKeyPlan}} {
			if err := q.SetRemaining(context.Background(), tt.plan, tt.key, tt.remaining); !errors.Is(err, tt.want) {
				t.Errorf("SetRemaining(%s, %s, %d) = %v, want %v", tt.plan, tt.key, tt.remaining, err, tt.want)
			}
		}
		if len(live.calls) != 0 || len(store.adjust) != 0 {
			t.Errorf("a refused update changed the counter (%v) or the store (%v)", live.calls, store.adjust)
		}
	})
}
