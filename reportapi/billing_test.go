package reportapi

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// billing's fast path (totals by month, days only for the keys that may
// have overage) equals its simple one (every key's days), whatever the
// quotas, periods, offsets and usage: random months of random keys, some
// over their quotas, some with requests just before the month.
func TestBillingFastPathEqualsDays(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	withOverage := 0
	for trial := range 60 {
		periods := []catalog.Period{catalog.Day, catalog.Week, catalog.Month}
		var plans []catalog.UsagePlan
		nplans := 4
		if trial%3 == 0 {
			nplans = maxOveragePlans + 4 // past it: one report of every plan's days
		}
		for i := range nplans {
			p := catalog.UsagePlan{ID: fmt.Sprintf("p%d", i), Name: fmt.Sprintf("plan %d", i),
				CreatedDate: time.Date(2026, 10, 1+r.IntN(60), 0, 0, 0, 0, time.UTC).Unix()}
			if i > 0 {
				limit := int64(5 + r.IntN(60))
				p.Quota = &catalog.Quota{Limit: limit, Period: periods[r.IntN(3)], Offset: int64(r.IntN(int(limit)))}
			}
			plans = append(plans, p)
		}
		var keys []catalog.APIKey
		for i := range 12 {
			keys = append(keys, catalog.APIKey{ID: fmt.Sprintf("k%02d", i), Name: fmt.Sprintf("key %d", i), ValueHash: catalog.HashKey(fmt.Sprintf("value-of-key-%02d-xxxxxxxx", i))})
		}
		cat := catalog.StateOf(&catalog.Catalog{UsagePlans: plans, APIKeys: keys})
		month := time.Date(2026, time.Month(10+r.IntN(3)), 1, 0, 0, 0, 0, time.UTC)
		var rows fakeMinutes
		decisions := []schemas.Decision{schemas.DecisionAllowed, schemas.DecisionAllowed, schemas.DecisionAllowed, schemas.DecisionThrottled, schemas.DecisionQuotaExceeded}
		for range 100 * nplans {
			at := month.Add(time.Duration(r.IntN(45*24*60)-10*24*60) * time.Minute)
			rows = append(rows, usage.MinuteCount{Minute: at.Unix() / 60, KeyID: keys[r.IntN(len(keys))].ID, PlanID: plans[r.IntN(len(plans))].ID,
				Decision: decisions[r.IntN(len(decisions))], Requests: int64(1 + r.IntN(12))})
		}
		readFrom, end := month.AddDate(0, 0, -7), month.AddDate(0, 1, 0)
		simple := newBill(cat, month)
		if err := rows.Report(context.Background(), usage.Report{FromMinute: readFrom.Unix() / 60, ToMinute: end.Unix() / 60, Granularity: "day", GroupBy: topGroups}, simple.add); err != nil {
			t.Fatal(err)
		}
		want := simple.rows(end)
		for _, w := range want {
			if w.Overage > 0 {
				withOverage++
			}
		}
		for _, overageKeys := range []int{0, 3, maxOverageKeys} {
			b := newBill(cat, month)
			counting := &countingMinutes{fakeMinutes: rows}
			if err := b.read(context.Background(), counting, readFrom, end, overageKeys); err != nil {
				t.Fatal(err)
			}
			if got := b.rows(end); !reflect.DeepEqual(got, want) {
				t.Fatalf("trial %d, month %s, overageKeys %d:\n got %v\nwant %v", trial, month.Format("2006-01"), overageKeys, show(got), show(want))
			}
			if counting.dayRows > 0 && overageKeys == maxOverageKeys && nplans <= maxOveragePlans {
				t.Fatalf("trial %d: read every plan's days in one report with %d plans", trial, len(plans))
			}
		}
	}
	if withOverage < 20 {
		t.Fatalf("only %d rows with overage in the trials: they test little", withOverage)
	}
}

type countingMinutes struct {
	fakeMinutes
	reports, dayRows int
}

func (c *countingMinutes) Report(ctx context.Context, r usage.Report, fn func(*usage.ReportRow) error) error {
	c.reports++
	return c.fakeMinutes.Report(ctx, r, func(row *usage.ReportRow) error {
		if r.Granularity == "day" && len(r.Filters) == 0 {
			c.dayRows++
		}
		return fn(row)
	})
}

func show(rows []*billingRow) []billingRow {
	out := make([]billingRow, len(rows))
	for i, r := range rows {
		out[i] = *r
	}
	return out
}

// With a store that keeps month and day tables (sqlitestore), billing
// reads those; it answers what the days of the rollups answer: random
// usage of random keys and quotas over three months, out of order.
func TestBillingFromTablesEqualsDays(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 4 {
		store, err := sqlitestore.Open(filepath.Join(t.TempDir(), "usage.db"))
		if err != nil {
			t.Fatal(err)
		}
		periods := []catalog.Period{catalog.Day, catalog.Week, catalog.Month}
		var plans []catalog.UsagePlan
		for i := range 6 {
			p := catalog.UsagePlan{ID: fmt.Sprintf("p%d", i), Name: fmt.Sprintf("plan %d", i),
				CreatedDate: time.Date(2026, 9, 1+r.IntN(80), 0, 0, 0, 0, time.UTC).Unix()}
			if i > 0 {
				limit := int64(20 + r.IntN(200))
				p.Quota = &catalog.Quota{Limit: limit, Period: periods[i%3], Offset: int64(r.IntN(int(limit)))}
			}
			plans = append(plans, p)
		}
		var keys []catalog.APIKey
		for i := range 15 {
			keys = append(keys, catalog.APIKey{ID: fmt.Sprintf("k%02d", i), Name: fmt.Sprintf("key %d", i), ValueHash: catalog.HashKey(fmt.Sprintf("value-of-key-%02d-xxxxxxxx", i))})
		}
		cat := catalog.StateOf(&catalog.Catalog{UsagePlans: plans, APIKeys: keys})
		decisions := []schemas.Decision{schemas.DecisionAllowed, schemas.DecisionAllowed, schemas.DecisionAllowed, schemas.DecisionThrottled, schemas.DecisionQuotaExceeded, schemas.DecisionForbidden}
		start := time.Date(2026, 9, 20, 0, 0, 0, 0, time.UTC)
		var events []schemas.UsageEvent
		for range 6000 {
			ns := start.Add(time.Duration(r.Int64N(int64(75 * 24 * time.Hour)))).UnixNano()
			e := schemas.UsageEvent{ID: schemas.NewEventID(ns), Time: ns, APIID: "a", Stage: "prod", KeyID: keys[r.IntN(len(keys))].ID,
				PlanID: plans[r.IntN(len(plans))].ID, Method: "GET", Resource: "/r", Status: 200, Decision: decisions[r.IntN(len(decisions))], Count: uint32(1 + r.IntN(20))}
			if r.IntN(20) == 0 {
				e.KeyID = ""
			}
			events = append(events, e)
		}
		for b := range slices.Chunk(events, 500) {
			if err := store.InsertEvents(context.Background(), b); err != nil {
				t.Fatal(err)
			}
		}
		for _, month := range []time.Time{time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)} {
			readFrom, end := month.AddDate(0, 0, -7), month.AddDate(0, 1, 0)
			simple := newBill(cat, month)
			if err := store.Report(context.Background(), usage.Report{FromMinute: readFrom.Unix() / 60, ToMinute: end.Unix() / 60, Granularity: "day", GroupBy: topGroups}, simple.add); err != nil {
				t.Fatal(err)
			}
			want := simple.rows(end)
			overage := 0
			for _, w := range want {
				if w.Overage > 0 {
					overage++
				}
			}
			if overage == 0 {
				t.Fatalf("trial %d, %s: no overage: the trial tests little", trial, month.Format("2006-01"))
			}
			tables := newBill(cat, month)
			if err := tables.readTables(context.Background(), store, readFrom, end); err != nil {
				t.Fatal(err)
			}
			if got := tables.rows(end); !reflect.DeepEqual(got, want) {
				t.Fatalf("trial %d, %s:\n got %v\nwant %v", trial, month.Format("2006-01"), show(got), show(want))
			}
		}
		store.Close()
	}
}

// A week that starts in October and ends in November is billed to
// November with what it held in October: a key that used 4 in November
// and 8 the days before has 2 over a weekly limit of 10, though its
// November alone is under it.
func TestBillingWeekAcrossMonthsFromTables(t *testing.T) {
	store, err := sqlitestore.Open(filepath.Join(t.TempDir(), "usage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cat := catalog.StateOf(&catalog.Catalog{
		UsagePlans: []catalog.UsagePlan{{ID: "p1", Name: "Weekly", Quota: &catalog.Quota{Limit: 10, Period: catalog.Week}}},
		APIKeys:    []catalog.APIKey{{ID: "k1", Name: "acme", ValueHash: catalog.HashKey("acmeacmeacmeacmeacme01")}},
	})
	var events []schemas.UsageEvent
	for _, e := range []struct {
		at string
		n  uint32
	}{{"2026-10-27T10:00:00Z", 5}, {"2026-10-30T10:00:00Z", 3}, {"2026-11-01T10:00:00Z", 4}} {
		at, _ := time.Parse(time.RFC3339, e.at)
		events = append(events, schemas.UsageEvent{ID: schemas.NewEventID(at.UnixNano()), Time: at.UnixNano(), APIID: "a", Stage: "prod", KeyID: "k1", PlanID: "p1",
			Method: "GET", Resource: "/r", Status: 200, Decision: schemas.DecisionAllowed, Count: e.n})
	}
	if err := store.InsertEvents(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	month := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	b := newBill(cat, month)
	if err := b.readTables(context.Background(), store, month.AddDate(0, 0, -7), month.AddDate(0, 1, 0)); err != nil {
		t.Fatal(err)
	}
	rows := b.rows(month.AddDate(0, 1, 0))
	if len(rows) != 1 || rows[0].Admitted != 4 || rows[0].Overage != 2 {
		t.Fatalf("November: %v, want 4 admitted and 2 over", show(rows))
	}
}

// add is billing the simple way, the reference the fast paths are held
// to: it sums one row by day, key, plan and decision, into its totals if
// it is in the month, and into its quota period's admitted requests.
func (b *bill) add(r *usage.ReportRow) error {
	if r.Bucket >= b.month.Unix()/60 {
		b.addTotals(r)
	}
	return b.addPeriods(r)
}
