package reportapi

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
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
