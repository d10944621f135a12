package sqlitestore

import (
	"cmp"
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

// keyMonthsOf is usage_key_month computed from the minute rows: the
// reference the table is held to.
func keyMonthsOf(minutes []usage.MinuteCount) map[usage.KeyMonth]bool {
	sums := map[[3]any]*usage.KeyMonth{}
	for _, m := range minutes {
		if m.KeyID == "" && m.PlanID == "" {
			continue
		}
		k := [3]any{usage.BucketOf(m.Minute, "month"), m.PlanID, m.KeyID}
		s := sums[k]
		if s == nil {
			s = &usage.KeyMonth{Month: k[0].(int64), KeyCounts: usage.KeyCounts{PlanID: m.PlanID, KeyID: m.KeyID}}
			sums[k] = s
		}
		switch m.Decision {
		case schemas.DecisionAllowed:
			s.Admitted += m.Requests
		case schemas.DecisionThrottled:
			s.Throttled += m.Requests
		case schemas.DecisionQuotaExceeded:
			s.QuotaExceeded += m.Requests
		}
	}
	out := map[usage.KeyMonth]bool{}
	for _, s := range sums {
		out[*s] = true
	}
	return out
}

func storedKeyMonths(t *testing.T, s *Store, months ...int64) map[usage.KeyMonth]bool {
	t.Helper()
	out := map[usage.KeyMonth]bool{}
	for _, m := range months {
		var last usage.KeyMonth
		err := s.KeyMonths(context.Background(), m, func(km *usage.KeyMonth) error {
			if c := cmp.Or(cmp.Compare(km.PlanID, last.PlanID), cmp.Compare(km.KeyID, last.KeyID)); c <= 0 && last.Month != 0 {
				t.Fatalf("KeyMonths out of order: %+v after %+v", km, last)
			}
			out[*km], last = true, *km
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// usage_key_month holds what usage_minute holds, summed by month, plan and
// key, whatever the order events arrive in (late ones too), and across a
// month's end; a repeated batch counts once.
func TestKeyMonthsEqualMinutes(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	start := time.Date(2026, 10, 29, 0, 0, 0, 0, time.UTC)
	events := reportEvents(rand.New(rand.NewPCG(3, 4)), 5000, start, 5)
	// Out of order: batches of shuffled events, the last ones late.
	rand.New(rand.NewPCG(5, 6)).Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	for b := range slices.Chunk(events, 250) {
		if err := s.InsertEvents(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.InsertEvents(ctx, events[:250]); err != nil { // a repeat
		t.Fatal(err)
	}
	minutes, err := s.Minutes(ctx, math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	want := keyMonthsOf(minutes)
	oct, nov := usage.BucketOf(start.Unix()/60, "month"), usage.BucketOf(start.AddDate(0, 0, 4).Unix()/60, "month")
	got := storedKeyMonths(t, s, oct, nov)
	if len(want) < 10 || len(got) != len(want) {
		t.Fatalf("%d rows stored, %d computed", len(got), len(want))
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("computed %+v, not stored", k)
		}
	}
}

// dropDailySplit undoes migration 9 (usage_daily's throttled and
// quota_exceeded), for a database made to look older.
var dropDailySplit = []string{"ALTER TABLE usage_daily DROP COLUMN throttled", "ALTER TABLE usage_daily DROP COLUMN quota_exceeded"}

// A database of version 7 fills usage_key_month from its minutes when it
// opens.
func TestKeyMonthsMigration(t *testing.T) {
	path := t.TempDir() + "/usage.db"
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC)
	if err := s.InsertEvents(context.Background(), reportEvents(rand.New(rand.NewPCG(7, 8)), 3000, start, 4)); err != nil {
		t.Fatal(err)
	}
	s = reopenAfter(t, s, path, append([]string{"DROP TABLE usage_key_month"}, append(dropDailySplit, "PRAGMA user_version = 7")...)...)
	minutes, err := s.Minutes(context.Background(), math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	want := keyMonthsOf(minutes)
	got := storedKeyMonths(t, s, usage.BucketOf(start.Unix()/60, "month"), usage.BucketOf(start.AddDate(0, 0, 3).Unix()/60, "month"))
	if len(got) != len(want) {
		t.Fatalf("%d rows after the migration, %d computed", len(got), len(want))
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("computed %+v, not in the migrated table", k)
		}
	}
}

// DailyAdmitted is usage_daily's admitted rows over the threshold, of the
// keys asked for.
func TestDailyAdmitted(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	start := time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC)
	if err := s.InsertEvents(ctx, reportEvents(rand.New(rand.NewPCG(9, 9)), 3000, start, 4)); err != nil {
		t.Fatal(err)
	}
	from, to := start.Unix()/86400, start.Unix()/86400+3
	daily, err := s.Daily(ctx, usage.Filter{FromDay: from, ToDay: to})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		over int64
		keys []string
	}{{0, nil}, {5, nil}, {0, []string{"k1"}}, {3, []string{"k1", "k2"}}} {
		var want, got []usage.DayCount
		for _, d := range daily {
			if d.Admitted > c.over && (c.keys == nil || slices.Contains(c.keys, d.KeyID)) {
				want = append(want, usage.DayCount{Day: d.Day, PlanID: d.PlanID, KeyID: d.KeyID, Admitted: d.Admitted})
			}
		}
		err := s.DailyAdmitted(ctx, from, to, c.keys, c.over, func(day int64, plan, key string, n int64) error {
			got = append(got, usage.DayCount{Day: day, PlanID: plan, KeyID: key, Admitted: n})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Fatalf("over %d, keys %v:\n got %v\nwant %v", c.over, c.keys, got, want)
		}
	}
}

// A database of version 8 splits usage_daily's refusals from its minutes
// when it opens, and TopKeys ranks from them as from a new one.
func TestDailySplitMigration(t *testing.T) {
	path := t.TempDir() + "/usage.db"
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC)
	if err := s.InsertEvents(context.Background(), reportEvents(rand.New(rand.NewPCG(13, 14)), 3000, start, 3)); err != nil {
		t.Fatal(err)
	}
	day := start.AddDate(0, 0, 1).Unix() / 86400
	top := func() []usage.KeyCounts {
		var out []usage.KeyCounts
		if err := s.TopKeys(context.Background(), day, day+1, "", 100, func(kc *usage.KeyCounts) error { out = append(out, *kc); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := top()
	s = reopenAfter(t, s, path, append(dropDailySplit, "PRAGMA user_version = 8")...)
	after := top()
	if len(before) < 5 || !slices.Equal(before, after) {
		t.Fatalf("ranking of a day before the migration:\n%v\nafter:\n%v", before, after)
	}
	var throttled int64
	for _, kc := range after {
		throttled += kc.Throttled + kc.QuotaExceeded
	}
	if throttled == 0 {
		t.Fatal("no refusals migrated")
	}
}

// Daily of a plan (a seek per day: a key, a page of keys, every key) is
// Daily of every plan, filtered: for random usage with adjustments.
func TestDailyOfAPlanEqualsFiltered(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	start := time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC)
	if err := s.InsertEvents(ctx, reportEvents(rand.New(rand.NewPCG(15, 16)), 4000, start, 4)); err != nil {
		t.Fatal(err)
	}
	day := start.Unix() / 86400
	for _, adj := range []struct {
		plan, key string
		day, n    int64
	}{{"pro", "k1", day + 1, -5}, {"free", "k2", day + 2, 7}, {"pro", "k9", day + 3, 3}} {
		if err := s.AdjustQuota(ctx, adj.plan, adj.key, adj.day, adj.n); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Daily(ctx, usage.Filter{FromDay: day - 1, ToDay: day + 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []usage.Filter{
		{FromDay: day, ToDay: day + 3, PlanID: "pro"},
		{FromDay: day + 1, ToDay: day + 2, PlanID: "pro", KeyID: "k1"},
		{FromDay: day, ToDay: day + 3, PlanID: "free", KeyIDs: []string{"k2", "k3", "nope"}},
		{FromDay: day + 2, ToDay: day + 1, PlanID: "pro"}, // empty range
		{FromDay: day, ToDay: day + 4, PlanID: "pro", KeyID: "k9"},
	} {
		var want []usage.DayCount
		for _, d := range all {
			if d.Day >= f.FromDay && d.Day <= f.ToDay && d.PlanID == f.PlanID && (f.KeyID == "" || d.KeyID == f.KeyID) &&
				(len(f.KeyIDs) == 0 || slices.Contains(f.KeyIDs, d.KeyID)) {
				want = append(want, d)
			}
		}
		got, err := s.Daily(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%+v:\n got %v\nwant %v", f, got, want)
		}
	}
}

// A bill's reads (ReadBilling) see one state of the store: a batch stored
// between them shows in none of them.
func TestReadBillingIsOneSnapshot(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	ev := func(n uint32, off int64) []schemas.UsageEvent {
		ns := at.UnixNano() + off
		return []schemas.UsageEvent{{ID: schemas.NewEventID(ns), Time: ns, APIID: "a", Stage: "prod", KeyID: "k1", PlanID: "p1",
			Method: "GET", Resource: "/r", Status: 200, Decision: schemas.DecisionAllowed, Count: n}}
	}
	if err := s.InsertEvents(ctx, ev(5, 0)); err != nil {
		t.Fatal(err)
	}
	month := usage.BucketOf(at.Unix()/60, "month")
	day := at.Unix() / 86400
	var monthAdmitted, dayAdmitted int64
	err := s.ReadBilling(ctx, func(r usage.BillingTables) error {
		if err := r.KeyMonths(ctx, month, func(km *usage.KeyMonth) error { monthAdmitted += km.Admitted; return nil }); err != nil {
			return err
		}
		if err := s.InsertEvents(ctx, ev(50, 1)); err != nil { // between the bill's reads
			return err
		}
		return r.DailyAdmitted(ctx, day, day, nil, 0, func(_ int64, _, _ string, n int64) error { dayAdmitted += n; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	if monthAdmitted != 5 || dayAdmitted != 5 {
		t.Fatalf("in one snapshot: month %d, day %d; want 5 and 5", monthAdmitted, dayAdmitted)
	}
	var after int64
	s.KeyMonths(ctx, month, func(km *usage.KeyMonth) error { after += km.Admitted; return nil })
	if after != 55 {
		t.Fatalf("after: %d, want 55", after)
	}
}
