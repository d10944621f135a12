package chstore

import (
	"context"
	"math"
	mrand "math/rand/v2"
	"testing"

	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage/reporttest"
)

// Every report ClickHouse computes is what usage.Aggregate computes from
// the minute rows, and what sqlitestore computes in its own SQL for the
// same events: batches that overlap (so rows of one minute come from
// several batches), a month's end inside the range, every granularity,
// groupings and filters.
func TestReportMatchesAggregate(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	r := mrand.New(mrand.NewPCG(3, 4))
	var all []schemas.UsageEvent
	// Two partitions over the same hours, across 2024-10-31's midnight.
	start := 20027*dayNS - 3*3600e9
	for p := range 2 {
		events := genEvents(r, 3000, start, 3e9, "")
		all = append(all, events...)
		insertAll(t, s, p, topic(r, events), 400)
	}
	o := oracle(t, all)
	minutes, err := o.Minutes(context.Background(), math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	from, to := start/60e9, start/60e9+6*60
	cases := reporttest.Cases(from, to, map[string]string{"key": "key-3"}, map[string]string{"plan": "pro", "stage": "prod"},
		map[string]string{"api": "", "key": ""})
	reporttest.Check(t, s, minutes, cases)
	reporttest.Check(t, o, minutes, cases)
}
