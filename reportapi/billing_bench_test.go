package reportapi

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// BenchmarkBilling times a month's billing of 1,000 keys × 31 days in
// the embedded store three ways in one run: every key's days in one
// report (days, the simple path), bill.read (totals by month, days where
// overage can be, through Report: what ClickHouse's billing does) and
// bill.readTables (the store's month and day tables: SQLite's). The keys are on a DAY plan, used each day at a few
// percent of its limit, as billing finds them most often.
//
//	go test -run '^$' -bench Billing -benchtime 5x ./reportapi
func BenchmarkBilling(b *testing.B) {
	const keys, days = 1000, 31
	store, err := sqlitestore.Open(filepath.Join(b.TempDir(), "usage.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	month := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	cat := &catalog.Catalog{UsagePlans: []catalog.UsagePlan{{ID: "basic", Name: "Basic", Quota: &catalog.Quota{Limit: 5000, Period: catalog.Day}}}}
	for k := range keys {
		cat.APIKeys = append(cat.APIKeys, catalog.APIKey{ID: fmt.Sprintf("k%06d", k), Name: fmt.Sprintf("key %d", k), ValueHash: catalog.HashKey(fmt.Sprintf("value-of-key-%06d-xxxxxxxx", k))})
	}
	state := catalog.StateOf(cat)
	var batch []schemas.UsageEvent
	for d := range days {
		for h := 0; h < 24; h += 4 { // a batch an hour of data, as a gateway writes them
			for k := range keys {
				ns := month.AddDate(0, 0, d).Add(time.Duration(h)*time.Hour + time.Duration(k%60)*time.Minute).UnixNano()
				batch = append(batch, schemas.UsageEvent{ID: schemas.NewEventID(ns), Time: ns, APIID: "a", Stage: "prod", KeyID: fmt.Sprintf("k%06d", k),
					PlanID: "basic", Method: "GET", Resource: "/r", Status: 200, Decision: schemas.DecisionAllowed, Count: uint32(1 + k%50)})
				if h == 8 {
					batch = append(batch, schemas.UsageEvent{ID: schemas.NewEventID(ns + 1), Time: ns + 1, APIID: "a", Stage: "prod", KeyID: fmt.Sprintf("k%06d", k),
						PlanID: "basic", Method: "GET", Resource: "/r", Status: 429, Decision: schemas.DecisionThrottled, Count: 2})
				}
			}
			if err := store.InsertEvents(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	readFrom, end := month.AddDate(0, 0, -7), month.AddDate(0, 1, 0)
	simple := func() []*billingRow {
		bl := newBill(state, month)
		r := usage.Report{FromMinute: readFrom.Unix() / 60, ToMinute: end.Unix() / 60, Granularity: "day", GroupBy: topGroups}
		if err := store.Report(context.Background(), r, bl.add); err != nil {
			b.Fatal(err)
		}
		return bl.rows(end)
	}
	fast := func() []*billingRow {
		bl := newBill(state, month)
		if err := bl.read(context.Background(), store, readFrom, end, maxOverageKeys); err != nil {
			b.Fatal(err)
		}
		return bl.rows(end)
	}
	tables := func() []*billingRow {
		bl := newBill(state, month)
		if err := bl.readTables(context.Background(), store, readFrom, end); err != nil {
			b.Fatal(err)
		}
		return bl.rows(end)
	}
	s, f, tb := simple(), fast(), tables()
	if len(s) != keys || fmt.Sprint(show(s)) != fmt.Sprint(show(f)) || fmt.Sprint(show(s)) != fmt.Sprint(show(tb)) {
		b.Fatalf("the paths differ (%d, %d and %d rows)", len(s), len(f), len(tb))
	}
	b.Run("days", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			simple()
		}
	})
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			fast()
		}
	})
	b.Run("tables", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tables()
		}
	})
}
