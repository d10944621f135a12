package chstore

import (
	"cmp"
	"context"
	"math"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

func TestAdjustQuota(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	o := oracle(t, nil)
	for _, a := range []struct {
		plan, key  string
		day, delta int64
	}{
		{"p", "k", 10, 5}, {"p", "k", 10, -2}, {"p", "other", 10, 7},
		{"p", "zero", 11, 4}, {"p", "zero", 11, -4}, // cancels out: the row stays
	} {
		if err := s.AdjustQuota(ctx, a.plan, a.key, a.day, a.delta); err != nil {
			t.Fatal(err)
		}
		if err := o.AdjustQuota(ctx, a.plan, a.key, a.day, a.delta); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Daily(ctx, usage.Filter{FromDay: 10, ToDay: 10, PlanID: "p", KeyID: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []usage.DayCount{{Day: 10, PlanID: "p", KeyID: "k", Adjustment: 3}}; !slices.Equal(got, want) {
		t.Errorf("Daily = %+v, want %+v", got, want)
	}
	if err := s.conn.Exec(ctx, "OPTIMIZE TABLE quota_adjustments FINAL"); err != nil {
		t.Fatal(err)
	}
	sameAsOracle(t, s, o)
	if err := s.AdjustQuota(ctx, "p", "k", -1, 1); err == nil {
		t.Error("AdjustQuota on day -1: no error")
	}
}

func TestQuotaUsage(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	r := mrand.New(mrand.NewPCG(13, 14))
	var events [3][]schemas.UsageEvent
	for p := range events {
		events[p] = genEvents(r, 1000, day20000, 1.728e11, "p"+itoa(p)+"-") // days 20000 and 20001
		insertAll(t, s, p, topic(r, events[p]), 250)
	}
	type adj struct {
		plan, key  string
		day, delta int64
	}
	adjs := []adj{
		{"free", "p0-key-0", 20001, 10},
		{"free", "p0-key-0", 20000, 99},  // before fromDay
		{"pro", "p1-key-2", 20001, 7},    // a key of partition 1
		{"free", "never-seen", 20001, 3}, // a key without requests: no partition known
	}
	for _, a := range adjs {
		if err := s.AdjustQuota(ctx, a.plan, a.key, a.day, a.delta); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.QuotaUsage(ctx, []int{0, 2}, 20001)
	if err != nil {
		t.Fatal(err)
	}

	// The model: admitted events of partitions 0 and 2 from day 20001,
	// per node, and the adjustment of partition 0's key.
	type key struct {
		day             int64
		plan, key, node string
	}
	sums := map[key]usage.NodeDayCount{}
	for _, p := range []int{0, 2} {
		for _, e := range events[p] {
			if e.Admitted() && e.Day() >= 20001 {
				k := key{e.Day(), e.PlanID, e.KeyID, e.Node}
				c := sums[k]
				c.Admitted++
				sums[k] = c
			}
		}
	}
	k := key{20001, "free", "p0-key-0", ""}
	c := sums[k]
	c.Adjustment += 10
	sums[k] = c
	var want []usage.NodeDayCount
	for k, c := range sums {
		c.Day, c.PlanID, c.KeyID, c.Node = k.day, k.plan, k.key, k.node
		want = append(want, c)
	}
	slices.SortFunc(want, func(a, b usage.NodeDayCount) int {
		return cmp.Or(cmp.Compare(a.Day, b.Day), cmp.Compare(a.PlanID, b.PlanID), cmp.Compare(a.KeyID, b.KeyID), cmp.Compare(a.Node, b.Node))
	})
	if len(want) < 10 || !slices.Equal(got, want) {
		t.Errorf("QuotaUsage(0, 2; 20001):\n got %+v\nwant %+v", got, want)
	}
	if got, err := s.QuotaUsage(ctx, nil, 0); err != nil || got != nil {
		t.Errorf("QuotaUsage of no partitions = %v, %v", got, err)
	}
	if _, err := s.QuotaUsage(ctx, []int{-1}, 0); err == nil {
		t.Error("QuotaUsage of partition -1: no error")
	}
}

func TestEventsRoundTrip(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	e := schemas.UsageEvent{
		ID: schemas.NewEventID(day20000 + 5), Time: day20000 + 5, APIID: "api", Stage: "prod", KeyID: "k\x00'\"", PlanID: "plan",
		Method: "DELETE", Resource: "/a/{b}", Status: 599, Decision: schemas.DecisionBadRequest,
		LatencyMicros: -3, BytesIn: math.MaxInt64, BytesOut: math.MinInt64, Node: "edge-2", KeyFingerprint: "5a4c9e01",
	}
	if _, err := s.InsertBatch(ctx, &Batch{Partition: 65535, Last: 1 << 40, Offsets: []int64{1 << 40}, Events: []schemas.UsageEvent{e}}, NoWatermark); err != nil {
		t.Fatal(err)
	}
	got, err := s.Events(ctx, day20000, day20000+6, 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := []schemas.UsageEvent{e}; !slices.Equal(got, want) {
		t.Errorf("Events:\n got %+v\nwant %+v", got, want)
	}
	if wm := watermark(t, s, 65535); !wm.Equal(doneAt(1<<40, 1<<40)) {
		t.Errorf("Watermarks(65535) = %+v", wm)
	}
	// BatchWatermark names the key in its query.
	b := &Batch{Partition: 65535, Last: 1<<40 + 1, Offsets: []int64{1<<40 + 1}, Events: []schemas.UsageEvent{e}}
	if wm, err := s.BatchWatermark(ctx, b, NoWatermark); err != nil || !wm.Equal(doneAt(1<<40, 1<<40)) {
		t.Errorf("BatchWatermark = %+v, %v", wm, err)
	}
}

func TestDropRawBefore(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	r := mrand.New(mrand.NewPCG(15, 16))
	events := genEvents(r, 300, day20000+1e9, 8.64e11, "") // 3 days: 20000, 20001, 20002
	insertAll(t, s, 0, topic(r, events), 100)
	o := oracle(t, events)
	wantDaily, _ := o.Daily(ctx, everyDay)

	dropped, err := s.DropRawBefore(ctx, 20001)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"20241004"}; !slices.Equal(dropped, want) {
		t.Errorf("DropRawBefore(20001) dropped %q, want %q", dropped, want)
	}
	got, err := s.Events(ctx, math.MinInt64, math.MaxInt64, math.MaxInt32)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := o.Events(ctx, 20001*dayNS, math.MaxInt64, math.MaxInt32)
	for i := range got {
		got[i].Node = "" // sqlitestore does not keep it
	}
	if !slices.Equal(got, want) {
		t.Errorf("Events after the drop: %d, want the %d of days 20001 on", len(got), len(want))
	}
	if gotDaily, _ := s.Daily(ctx, everyDay); !slices.Equal(gotDaily, wantDaily) {
		t.Error("Daily changed with the raw events' retention")
	}
	dropped, err = s.DropRawBefore(ctx, 20001)
	if err != nil || len(dropped) != 0 {
		t.Errorf("second DropRawBefore(20001) = %q, %v; want nothing dropped", dropped, err)
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	for _, dsn := range []string{"", "http://127.0.0.1:8123/default", "clickhouse://127.0.0.1:9000/bad-name"} {
		if _, err := Open(ctx, dsn); err == nil {
			t.Errorf("Open(%q): no error", dsn)
		}
	}
	// Nothing listens on port 1.
	ctx, cancel := context.WithTimeout(ctx, 5e9)
	defer cancel()
	if _, err := Open(ctx, "clickhouse://127.0.0.1:1/default?dial_timeout=1s"); err == nil {
		t.Error("Open of a closed port: no error")
	}
}
