package sqlitestore

import (
	"cmp"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"modernc.org/sqlite"
)

const day = int64(86400e9) // nanoseconds

// day20000 is 2024-10-04 00:00 UTC in Unix nanoseconds.
const day20000 = 20000 * day

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "usage.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, path
}

// ev returns an event with a fresh id at time ns.
func ev(ns int64, plan, key string, d schemas.Decision) schemas.UsageEvent {
	return schemas.UsageEvent{
		ID: schemas.NewEventID(ns), Time: ns,
		APIID: "api1", Stage: "prod", PlanID: plan, KeyID: key,
		Method: "GET", Resource: "/items/{id}", Status: 200, Decision: d,
	}
}

const (
	allowed   = schemas.DecisionAllowed
	throttled = schemas.DecisionThrottled
	quota     = schemas.DecisionQuotaExceeded
	forbidden = schemas.DecisionForbidden
)

func daily(t *testing.T, s *Store, f usage.Filter) []usage.DayCount {
	t.Helper()
	got, err := s.Daily(context.Background(), f)
	if err != nil {
		t.Fatalf("Daily(%+v): %v", f, err)
	}
	return got
}

func allEvents(t *testing.T, s *Store) []schemas.UsageEvent {
	t.Helper()
	got, err := s.Events(context.Background(), math.MinInt64, math.MaxInt64, math.MaxInt32)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	return got
}

var everyDay = usage.Filter{FromDay: math.MinInt64, ToDay: math.MaxInt64}

// many returns n allowed events for (plan, key) from time ns on, 1µs apart.
func many(n int, ns int64, plan, key string) []schemas.UsageEvent {
	out := make([]schemas.UsageEvent, n)
	for i := range out {
		out[i] = ev(ns+int64(i)*1000, plan, key, allowed)
	}
	return out
}

func minutes(t *testing.T, s *Store, from, to int64) []MinuteCount {
	t.Helper()
	got, err := s.Minutes(context.Background(), from, to)
	if err != nil {
		t.Fatalf("Minutes(%d, %d): %v", from, to, err)
	}
	return got
}

func allMinutes(t *testing.T, s *Store) []MinuteCount {
	t.Helper()
	return minutes(t, s, math.MinInt64, math.MaxInt64)
}

func batchRows(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow("SELECT count(*) FROM usage_event_batches").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// state is everything a reader can see of a store.
type state struct {
	daily   []usage.DayCount
	minutes []MinuteCount
	events  []schemas.UsageEvent
	batches int
}

func stateOf(t *testing.T, s *Store) state {
	t.Helper()
	return state{daily(t, s, everyDay), allMinutes(t, s), allEvents(t, s), batchRows(t, s)}
}

// diff reports how got differs from want, or "" if it does not.
func (got state) diff(want state) string {
	var b strings.Builder
	if !slices.Equal(got.daily, want.daily) {
		fmt.Fprintf(&b, "Daily:\n got %+v\nwant %+v\n", got.daily, want.daily)
	}
	if !slices.Equal(got.minutes, want.minutes) {
		fmt.Fprintf(&b, "Minutes:\n got %+v\nwant %+v\n", got.minutes, want.minutes)
	}
	if !slices.Equal(got.events, want.events) {
		fmt.Fprintf(&b, "Events: got %d events, want %d (or they differ)\n", len(got.events), len(want.events))
	}
	if got.batches != want.batches {
		fmt.Fprintf(&b, "batch rows: got %d, want %d\n", got.batches, want.batches)
	}
	return b.String()
}

// modelMinutes is the per-minute rollup of events, computed the obvious
// way, in the order Minutes returns it.
func modelMinutes(events ...[]schemas.UsageEvent) []MinuteCount {
	sums := map[MinuteCount]MinuteCount{}
	for _, e := range slices.Concat(events...) {
		k := MinuteCount{
			Minute: utc.FloorDiv(e.Time, 60e9), APIID: e.APIID, Stage: e.Stage, KeyID: e.KeyID, PlanID: e.PlanID,
			Method: e.Method, Resource: e.Resource, Status: e.Status, Decision: e.Decision,
		}
		m := sums[k]
		if m.Requests == 0 {
			m = k
		}
		m.Requests += e.Requests()
		m.BytesIn += e.BytesIn
		m.BytesOut += e.BytesOut
		m.LatencyMicrosSum += e.LatencyMicros
		sums[k] = m
	}
	var out []MinuteCount
	for _, m := range sums {
		out = append(out, m)
	}
	slices.SortFunc(out, compareMinutes)
	return out
}

// compareMinutes orders rows as usage_minute's primary key does.
func compareMinutes(a, b MinuteCount) int {
	return cmp.Or(
		cmp.Compare(a.Minute, b.Minute), cmp.Compare(a.KeyID, b.KeyID), cmp.Compare(a.PlanID, b.PlanID), cmp.Compare(a.APIID, b.APIID),
		cmp.Compare(a.Stage, b.Stage), cmp.Compare(a.Method, b.Method), cmp.Compare(a.Resource, b.Resource),
		cmp.Compare(a.Status, b.Status), cmp.Compare(a.Decision, b.Decision))
}

// modelDaily is the daily rollup of events, computed the obvious way.
func modelDaily(events ...[]schemas.UsageEvent) []usage.DayCount {
	type key struct {
		day       int64
		plan, key string
	}
	sums := map[key]usage.DayCount{}
	for _, e := range slices.Concat(events...) {
		if e.PlanID == "" && e.KeyID == "" {
			continue
		}
		k := key{e.Day(), e.PlanID, e.KeyID}
		d := sums[k]
		d.Day, d.PlanID, d.KeyID = k.day, k.plan, k.key
		if e.Admitted() {
			d.Admitted += e.Requests()
		} else {
			d.Rejected += e.Requests()
		}
		sums[k] = d
	}
	var out []usage.DayCount
	for _, d := range sums {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b usage.DayCount) int {
		return cmp.Or(cmp.Compare(a.Day, b.Day), cmp.Compare(a.PlanID, b.PlanID), cmp.Compare(a.KeyID, b.KeyID))
	})
	return out
}

// modelEvents returns at most limit of events with Time in [from, to),
// by time then id, as Events should.
func modelEvents(events []schemas.UsageEvent, from, to int64, limit int) []schemas.UsageEvent {
	var out []schemas.UsageEvent
	for _, e := range events {
		if e.Time >= from && e.Time < to {
			out = append(out, e)
		}
	}
	sortEvents(out)
	return out[:min(len(out), max(limit, 0))]
}
func TestInsertEventsDaily(t *testing.T) {
	b1 := []schemas.UsageEvent{
		ev(day20000-1, "pro", "k1", allowed), // last nanosecond of day 19999
		ev(day20000, "pro", "k1", allowed),   // first of day 20000
		ev(day20000+5, "pro", "k1", throttled),
		ev(day20000+6, "pro", "k1", quota),
		ev(day20000+7, "pro", "k2", allowed),
		ev(day20000+8, "free", "k1", allowed),
		ev(2*day20000, "pro", "k1", allowed),
	}
	want1 := []usage.DayCount{
		{Day: 19999, PlanID: "pro", KeyID: "k1", Admitted: 1},
		{Day: 20000, PlanID: "free", KeyID: "k1", Admitted: 1},
		{Day: 20000, PlanID: "pro", KeyID: "k1", Admitted: 1, Rejected: 2},
		{Day: 20000, PlanID: "pro", KeyID: "k2", Admitted: 1},
		{Day: 40000, PlanID: "pro", KeyID: "k1", Admitted: 1},
	}
	big := many(300, day20000, "pro", "k1")
	neither := []schemas.UsageEvent{
		ev(day20000, "", "", forbidden),
		ev(day20000, "", "k9", forbidden),
		ev(day20000, "basic", "", schemas.DecisionMissingToken),
		ev(day20000, "", "", schemas.DecisionUnknown),
	}

	tests := []struct {
		name        string
		batches     [][]schemas.UsageEvent
		counted     [][]schemas.UsageEvent // the events that count, for the per-minute model
		want        []usage.DayCount
		wantEvents  int
		wantBatches int
	}{
		{
			name:    "across day boundaries",
			batches: [][]schemas.UsageEvent{b1}, counted: [][]schemas.UsageEvent{b1},
			want: want1, wantEvents: len(b1), wantBatches: 1,
		},
		{
			name:    "one event per batch",
			batches: [][]schemas.UsageEvent{b1[:3], b1[3:4], b1[4:]}, counted: [][]schemas.UsageEvent{b1},
			want: want1, wantEvents: len(b1), wantBatches: 3,
		},
		{
			name:    "same batch twice",
			batches: [][]schemas.UsageEvent{b1, b1}, counted: [][]schemas.UsageEvent{b1},
			want: want1, wantEvents: len(b1), wantBatches: 1,
		},
		{
			name:    "large batch",
			batches: [][]schemas.UsageEvent{big}, counted: [][]schemas.UsageEvent{big},
			want:       []usage.DayCount{{Day: 20000, PlanID: "pro", KeyID: "k1", Admitted: 300}},
			wantEvents: 300, wantBatches: 1,
		},
		{
			name:    "large batch twice, another in between",
			batches: [][]schemas.UsageEvent{big, b1, big}, counted: [][]schemas.UsageEvent{big, b1},
			want: modelDaily(big, b1), wantEvents: 300 + len(b1), wantBatches: 2,
		},
		{
			// Dedup is per batch: a batch is known by its first event.
			name:    "batch starting with a stored batch's first event is taken for it",
			batches: [][]schemas.UsageEvent{big[:200], big[:100]}, counted: [][]schemas.UsageEvent{big[:200]},
			want:       []usage.DayCount{{Day: 20000, PlanID: "pro", KeyID: "k1", Admitted: 200}},
			wantEvents: 200, wantBatches: 1,
		},
		{
			// ... and events are not deduplicated: the drainer never
			// regroups them (see the schema).
			name:    "overlapping batch with another first event is a new batch",
			batches: [][]schemas.UsageEvent{big[:200], big[100:]}, counted: [][]schemas.UsageEvent{big[:200], big[100:]},
			want:       []usage.DayCount{{Day: 20000, PlanID: "pro", KeyID: "k1", Admitted: 400}},
			wantEvents: 400, wantBatches: 2,
		},
		{
			name:    "plan or key alone is rolled up daily, neither per minute only",
			batches: [][]schemas.UsageEvent{neither}, counted: [][]schemas.UsageEvent{neither},
			want: []usage.DayCount{
				{Day: 20000, PlanID: "", KeyID: "k9", Rejected: 1},
				{Day: 20000, PlanID: "basic", KeyID: "", Rejected: 1},
			},
			wantEvents: 4, wantBatches: 1,
		},
		{
			name:       "before 1970",
			batches:    [][]schemas.UsageEvent{{ev(-1, "pro", "k1", allowed), ev(-day, "pro", "k1", throttled), ev(-day-1, "pro", "k1", allowed)}},
			counted:    [][]schemas.UsageEvent{{ev(-1, "pro", "k1", allowed), ev(-day, "pro", "k1", throttled), ev(-day-1, "pro", "k1", allowed)}},
			want:       []usage.DayCount{{Day: -2, PlanID: "pro", KeyID: "k1", Admitted: 1}, {Day: -1, PlanID: "pro", KeyID: "k1", Admitted: 1, Rejected: 1}},
			wantEvents: 3, wantBatches: 1,
		},
		{name: "empty batch", batches: [][]schemas.UsageEvent{nil, {}}, want: nil, wantEvents: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			for i, b := range tt.batches {
				if err := s.InsertEvents(context.Background(), b); err != nil {
					t.Fatalf("InsertEvents(batch %d): %v", i, err)
				}
			}
			if got := daily(t, s, everyDay); !slices.Equal(got, tt.want) {
				t.Errorf("Daily:\n got %+v\nwant %+v", got, tt.want)
			}
			if got, want := allMinutes(t, s), modelMinutes(tt.counted...); !slices.Equal(got, want) {
				t.Errorf("Minutes:\n got %+v\nwant %+v", got, want)
			}
			if got := len(allEvents(t, s)); got != tt.wantEvents {
				t.Errorf("Events: got %d events, want %d", got, tt.wantEvents)
			}
			if got := batchRows(t, s); got != tt.wantBatches {
				t.Errorf("batch rows: got %d, want %d", got, tt.wantBatches)
			}
		})
	}
}

// TestRepeatedBatch checks that a batch offered again, as the drainer does
// after an error it cannot tell from a failed commit, changes nothing.
func TestRepeatedBatch(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	b1 := many(150, day20000+59e9, "pro", "k1") // across a minute boundary
	b1[7].Decision, b1[8].KeyID, b1[9].BytesOut = throttled, "", 1000
	b2 := many(10, day20000+60e9, "pro", "k2")
	for _, b := range [][]schemas.UsageEvent{b1, b2} {
		if err := s.InsertEvents(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	want := stateOf(t, s)
	if want.batches != 2 || len(want.minutes) < 4 {
		t.Fatalf("setup: %d batch rows, %d minute rows", want.batches, len(want.minutes))
	}
	for i := range 3 {
		if err := s.InsertEvents(ctx, b1); err != nil {
			t.Fatalf("repeat %d: %v", i, err)
		}
		if d := stateOf(t, s).diff(want); d != "" {
			t.Errorf("after repeat %d:\n%s", i, d)
		}
	}
}

func TestMinutes(t *testing.T) {
	const m0 = day20000 // a minute boundary too
	const M = m0 / 60e9 // its Unix minute
	type dims struct {
		key, plan, stage, method, resource string
		status                             int32
		d                                  schemas.Decision
	}
	base := dims{"k1", "pro", "prod", "GET", "/items", 200, allowed}
	e := func(ns int64, x dims, latency, in, out int64) schemas.UsageEvent {
		return schemas.UsageEvent{
			ID: schemas.NewEventID(ns), Time: ns, APIID: "api1", Stage: x.stage, KeyID: x.key, PlanID: x.plan,
			Method: x.method, Resource: x.resource, Status: x.status, Decision: x.d,
			LatencyMicros: latency, BytesIn: in, BytesOut: out,
		}
	}
	with := func(f func(*dims)) dims { x := base; f(&x); return x }
	b1 := []schemas.UsageEvent{
		e(m0-1, base, 100, 10, 1000), // the minute before
		e(m0, base, 200, 20, 2000),   // first nanosecond of M
		e(m0+1, with(func(x *dims) { x.status, x.d = 429, throttled }), 1, 0, 50),
		e(m0+2, with(func(x *dims) { x.status, x.d = 429, quota }), 1, 0, 50), // same status, other decision
		e(m0+3, dims{status: 403, d: forbidden}, 5, 0, 30),                    // no key, plan, stage, method or resource
		e(m0+4, with(func(x *dims) { x.key = "k2" }), 7, 1, 2),
		e(m0+5, with(func(x *dims) { x.method = "POST" }), 7, 1, 2),
		e(m0+6, with(func(x *dims) { x.stage = "beta" }), 7, 1, 2),
		e(m0+7, with(func(x *dims) { x.resource = "/items/{id}" }), 7, 1, 2),
		e(m0+8, with(func(x *dims) { x.plan = "free" }), 7, 1, 2),
		e(-1, base, 1, 1, 1),      // minute -1
		e(-60e9, base, 2, 2, 2),   // minute -1 too
		e(-60e9-1, base, 4, 4, 4), // minute -2
	}
	b2 := []schemas.UsageEvent{
		e(m0+60e9-1, base, 300, 30, 3000), // last nanosecond of M: adds to b1's row
		e(m0+60e9, base, 400, 40, 4000),   // minute M+1
	}
	row := func(minute int64, x dims, requests, latency, in, out int64) MinuteCount {
		api := "api1"
		return MinuteCount{
			Minute: minute, APIID: api, Stage: x.stage, KeyID: x.key, PlanID: x.plan, Method: x.method,
			Resource: x.resource, Status: x.status, Decision: x.d,
			Requests: requests, LatencyMicrosSum: latency, BytesIn: in, BytesOut: out,
		}
	}
	want := []MinuteCount{
		row(-2, base, 1, 4, 4, 4),
		row(-1, base, 2, 3, 3, 3),
		row(M-1, base, 1, 100, 10, 1000),
		row(M, dims{status: 403, d: forbidden}, 1, 5, 0, 30), // "" sorts first
		row(M, with(func(x *dims) { x.plan = "free" }), 1, 7, 1, 2),
		row(M, with(func(x *dims) { x.stage = "beta" }), 1, 7, 1, 2),
		row(M, base, 2, 500, 50, 5000),
		row(M, with(func(x *dims) { x.status, x.d = 429, throttled }), 1, 1, 0, 50),
		row(M, with(func(x *dims) { x.status, x.d = 429, quota }), 1, 1, 0, 50),
		row(M, with(func(x *dims) { x.resource = "/items/{id}" }), 1, 7, 1, 2),
		row(M, with(func(x *dims) { x.method = "POST" }), 1, 7, 1, 2),
		row(M, with(func(x *dims) { x.key = "k2" }), 1, 7, 1, 2),
		row(M+1, base, 1, 400, 40, 4000),
	}

	s, _ := openTemp(t)
	for _, b := range [][]schemas.UsageEvent{b1, b2} {
		if err := s.InsertEvents(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if got := allMinutes(t, s); !slices.Equal(got, want) {
		t.Errorf("Minutes:\n got %+v\nwant %+v", got, want)
	}
	if got, model := allMinutes(t, s), modelMinutes(b1, b2); !slices.Equal(got, model) {
		t.Errorf("Minutes differ from the model:\n got %+v\nwant %+v", got, model)
	}

	ranges := []struct {
		name     string
		from, to int64
		want     []MinuteCount
	}{
		{"one minute", M, M + 1, want[3:12]},
		{"range is [from, to)", M - 1, M + 1, want[2:12]},
		{"before 1970", -2, 0, want[:2]},
		{"empty", M, M, nil},
		{"from after to", M + 1, M, nil},
		{"nothing there", 0, M - 1, nil},
	}
	for _, tt := range ranges {
		t.Run(tt.name, func(t *testing.T) {
			if got := minutes(t, s, tt.from, tt.to); !slices.Equal(got, tt.want) {
				t.Errorf("Minutes(%d, %d):\n got %+v\nwant %+v", tt.from, tt.to, got, tt.want)
			}
		})
	}
}

// TestRollupsModel inserts random batches with many dimension combinations,
// so that rollup upserts run in statements of every size and add to rows of
// earlier batches, and compares both rollups with the obvious computation.
func TestRollupsModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	s, _ := openTemp(t)
	var all [][]schemas.UsageEvent
	for _, size := range []int{1, 2, 31, 32, 33, 63, 64, 65, 100, 500, 1000} {
		b := make([]schemas.UsageEvent, size)
		for i := range b {
			ns := day20000 - 3*60e9 + rng.Int64N(6*60e9) // six minutes around a day boundary
			d := schemas.Decision(rng.IntN(7))
			b[i] = schemas.UsageEvent{
				ID: schemas.NewEventID(ns), Time: ns,
				APIID: pick("a1", "a2"), Stage: pick("prod", "beta"), KeyID: pick("", "k1", "k2", "k3"), PlanID: pick("", "free", "pro"),
				Method: pick("GET", "POST"), Resource: pick("", "/items", "/items/{id}"), Status: []int32{200, 404, 429}[rng.IntN(3)], Decision: d,
				LatencyMicros: rng.Int64N(1e6), BytesIn: rng.Int64N(1e4), BytesOut: rng.Int64N(1e7),
			}
			if size > 60 && rng.IntN(4) == 0 { // an aggregated event: its count, not 1, counts
				b[i].Count = []uint32{1, 2, 1000, 1<<32 - 1}[rng.IntN(4)]
			}
		}
		if err := s.InsertEvents(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		all = append(all, b)
		if got, want := allMinutes(t, s), modelMinutes(all...); !slices.Equal(got, want) {
			t.Fatalf("after a batch of %d: Minutes: got %d rows, want %d (or they differ)", size, len(got), len(want))
		}
	}
	if got, want := daily(t, s, everyDay), modelDaily(all...); !slices.Equal(got, want) {
		t.Errorf("Daily:\n got %+v\nwant %+v", got, want)
	}
}

func TestDailyFilter(t *testing.T) {
	s, _ := openTemp(t)
	var batch []schemas.UsageEvent
	for d := int64(0); d < 3; d++ {
		for _, plan := range []string{"free", "pro"} {
			for _, key := range []string{"k1", "k2"} {
				batch = append(batch, ev(day20000+d*day+1, plan, key, allowed), ev(day20000+d*day+2, plan, key, throttled))
			}
		}
	}
	if err := s.InsertEvents(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	row := func(d int64, plan, key string) usage.DayCount {
		return usage.DayCount{Day: 20000 + d, PlanID: plan, KeyID: key, Admitted: 1, Rejected: 1}
	}

	tests := []struct {
		name string
		f    usage.Filter
		want []usage.DayCount
	}{
		{"one day", usage.Filter{FromDay: 20001, ToDay: 20001}, []usage.DayCount{
			row(1, "free", "k1"), row(1, "free", "k2"), row(1, "pro", "k1"), row(1, "pro", "k2"),
		}},
		{"plan", usage.Filter{FromDay: 20000, ToDay: 20002, PlanID: "pro"}, []usage.DayCount{
			row(0, "pro", "k1"), row(0, "pro", "k2"), row(1, "pro", "k1"), row(1, "pro", "k2"), row(2, "pro", "k1"), row(2, "pro", "k2"),
		}},
		{"key", usage.Filter{FromDay: 20001, ToDay: 20002, KeyID: "k2"}, []usage.DayCount{
			row(1, "free", "k2"), row(1, "pro", "k2"), row(2, "free", "k2"), row(2, "pro", "k2"),
		}},
		{"plan and key", usage.Filter{FromDay: 0, ToDay: 30000, PlanID: "free", KeyID: "k1"}, []usage.DayCount{
			row(0, "free", "k1"), row(1, "free", "k1"), row(2, "free", "k1"),
		}},
		{"range ends inclusive", usage.Filter{FromDay: 20000, ToDay: 20002, PlanID: "pro", KeyID: "k1"}, []usage.DayCount{
			row(0, "pro", "k1"), row(1, "pro", "k1"), row(2, "pro", "k1"),
		}},
		{"unknown plan", usage.Filter{FromDay: 20000, ToDay: 20002, PlanID: "enterprise"}, nil},
		{"days before", usage.Filter{FromDay: 19000, ToDay: 19999}, nil},
		{"days after", usage.Filter{FromDay: 20003, ToDay: 21000}, nil},
		{"from after to", usage.Filter{FromDay: 20002, ToDay: 20000}, nil},
		{"plan is matched exactly", usage.Filter{FromDay: 20000, ToDay: 20002, PlanID: "pr%"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := daily(t, s, tt.f); !slices.Equal(got, tt.want) {
				t.Errorf("Daily(%+v):\n got %+v\nwant %+v", tt.f, got, tt.want)
			}
		})
	}
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	batch := []schemas.UsageEvent{ev(day20000, "pro", "k1", allowed), ev(day20000+1, "pro", "k1", throttled)}
	if err := s.InsertEvents(ctx, batch); err != nil {
		t.Fatal(err)
	}
	want := stateOf(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for i := range 2 {
		s2, err := Open(path)
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		if d := stateOf(t, s2).diff(want); d != "" {
			t.Errorf("reopen %d:\n%s", i, d)
		}
		if got := allEvents(t, s2); !slices.Equal(got, batch) {
			t.Errorf("reopen %d: Events:\n got %+v\nwant %+v", i, got, batch)
		}
		var version int
		if err := s2.db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
			t.Fatal(err)
		}
		if version != len(migrations) {
			t.Errorf("reopen %d: user_version = %d, want %d", i, version, len(migrations))
		}
		if n, err := migrate(ctx, s2.db); err != nil || n != 0 {
			t.Errorf("reopen %d: migrate applied %d migrations (err %v), want 0", i, n, err)
		}
		var mode string
		if err := s2.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("reopen %d: journal_mode = %q (err %v), want wal", i, mode, err)
		}
		if err := s2.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMigrateOnce(t *testing.T) {
	s, _ := openTemp(t)
	rows, err := s.db.Query("SELECT type || ' ' || name FROM sqlite_schema ORDER BY type, name")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var obj string
		if err := rows.Scan(&obj); err != nil {
			t.Fatal(err)
		}
		got = append(got, obj)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"index sqlite_autoindex_usage_event_batches_1", // first_id
		"index usage_event_batches_span",
		"index usage_event_batches_time",
		"table quota_adjustments",
		"table rollup_marks",
		"table source_offsets",
		"table usage_api_day",
		"table usage_api_hour",
		"table usage_daily",
		"table usage_day",
		"table usage_event_batches",
		"table usage_hour",
		"table usage_key_day",
		"table usage_key_hour",
		"table usage_key_month",
		"table usage_minute",
	}
	if !slices.Equal(got, want) {
		t.Errorf("schema objects:\n got %q\nwant %q", got, want)
	}
	var sync, busy int
	if err := s.db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow("PRAGMA busy_timeout").Scan(&busy); err != nil {
		t.Fatal(err)
	}
	if sync != 1 || busy != busyTimeoutMillis {
		t.Errorf("synchronous = %d, busy_timeout = %d; want 1 (NORMAL), %d", sync, busy, busyTimeoutMillis)
	}
}

func TestOpenNewerSchema(t *testing.T) {
	s, path := openTemp(t)
	if _, err := s.db.Exec(fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err == nil {
		s2.Close()
		t.Fatal("Open of a newer schema: got no error")
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open of a newer schema: got %v, want an error about a newer schema", err)
	}
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "missing", "usage.db"))
	if err == nil {
		t.Fatal("Open in a missing folder: got no error")
	}
}

func TestOpenPathCharacters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a b?c#d%25e&f.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not created under its exact name: %v", err)
	}
}

// cancelMidBatch, when set, is called by the SQL function test_cancel(),
// which a trigger runs part way through a batch.
var cancelMidBatch atomic.Pointer[context.CancelFunc]

func init() {
	sqlite.MustRegisterScalarFunction("test_cancel", 0, func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error) {
		if f := cancelMidBatch.Load(); f != nil {
			(*f)()
		}
		return nil, nil
	})
}

func TestFailedBatchLeavesNothing(t *testing.T) {
	baseline := many(10, day20000, "pro", "k1")
	// manyRows returns n events of distinct minute rows (distinct
	// resources), with api id api.
	manyRows := func(n int, api string) []schemas.UsageEvent {
		b := many(n, day20000+day, "pro", "k2")
		for i := range b {
			b[i].APIID, b[i].Resource = api, fmt.Sprint("/r", i)
		}
		return b
	}
	tests := []struct {
		name    string
		trigger string // SQL run before the failing batch
		batch   []schemas.UsageEvent
		cancel  string // "before" the call or "during" it (by test_cancel)
		newConn bool   // the writer's connection is replaced
	}{
		{name: "cancelled context", batch: many(200, day20000+day, "pro", "k2"), cancel: "before"},
		{
			// The batch row is written; the rollups must not be lost with
			// it, or the retry would find the batch and skip them.
			name:    "context cancelled after the batch row",
			trigger: `CREATE TRIGGER boom AFTER INSERT ON usage_event_batches BEGIN SELECT test_cancel(); END`,
			batch:   many(200, day20000+day, "pro", "k2"),
			cancel:  "during",
		},
		{
			name:    "error in the batch row",
			trigger: `CREATE TRIGGER boom BEFORE INSERT ON usage_event_batches WHEN NEW.n = 200 BEGIN SELECT RAISE(ABORT, 'boom'); END`,
			batch:   many(200, day20000+day, "pro", "k2"),
		},
		{
			name:    "error in a multi-row minute upsert",
			trigger: `CREATE TRIGGER boom BEFORE INSERT ON usage_minute WHEN NEW.api_id = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END`,
			batch:   manyRows(upsertChunk+5, "boom"),
		},
		{
			name:    "error in one of several minute upserts",
			trigger: `CREATE TRIGGER boom BEFORE INSERT ON usage_minute WHEN NEW.api_id = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END`,
			batch:   slices.Concat(manyRows(2*upsertChunk+3, "api1"), manyRows(1, "boom")),
		},
		{
			name:    "error in an update of a stored minute row",
			trigger: `CREATE TRIGGER boom BEFORE UPDATE ON usage_minute WHEN NEW.requests > 10 BEGIN SELECT RAISE(ABORT, 'boom'); END`,
			batch:   many(50, day20000, "pro", "k1"), // baseline's minute row
		},
		{
			// The transaction is gone before InsertEvents rolls it back:
			// its ROLLBACK fails, and it replaces the connection.
			name:    "error that ends the transaction itself",
			trigger: `CREATE TRIGGER boom BEFORE INSERT ON usage_daily WHEN NEW.plan_id = 'boom' BEGIN SELECT RAISE(ROLLBACK, 'boom'); END`,
			batch:   slices.Concat(many(100, day20000+day, "pro", "k2"), many(1, day20000+day, "boom", "k2")),
			newConn: true,
		},
		{
			// The batch, a day after baseline's, rolls baseline's hour up
			// to usage_api_hour, through usage_hour and usage_key_hour.
			name:    "error in the per-API hour rollup",
			trigger: `CREATE TRIGGER boom BEFORE INSERT ON usage_api_hour BEGIN SELECT RAISE(ABORT, 'boom'); END`,
			batch:   many(100, day20000+day, "pro", "k2"),
		},
		{
			name:    "error in the daily rollup",
			trigger: `CREATE TRIGGER boom BEFORE INSERT ON usage_daily WHEN NEW.plan_id = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END`,
			batch:   slices.Concat(many(100, day20000+day, "pro", "k2"), many(1, day20000+day, "boom", "k2")),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			if err := s.InsertEvents(context.Background(), baseline); err != nil {
				t.Fatal(err)
			}
			before := stateOf(t, s)
			if tt.trigger != "" {
				if _, err := s.db.Exec(tt.trigger); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			switch tt.cancel {
			case "before":
				cancel()
			case "during":
				cancelMidBatch.Store(&cancel)
				defer cancelMidBatch.Store(nil)
			}

			w := s.w
			err := s.InsertEvents(ctx, tt.batch)
			if err == nil {
				t.Fatal("InsertEvents: got no error")
			}
			if replaced := s.w != w; replaced != tt.newConn {
				t.Errorf("writer connection replaced: %v, want %v", replaced, tt.newConn)
			}
			if !strings.HasPrefix(err.Error(), "insert events: ") {
				t.Errorf("InsertEvents: got error %q, want it to start with %q", err, "insert events: ")
			}
			if tt.cancel != "" && !errors.Is(err, context.Canceled) {
				t.Errorf("InsertEvents: got %v, want context.Canceled", err)
			}
			if d := stateOf(t, s).diff(before); d != "" {
				t.Errorf("after the failed batch:\n%s", d)
			}

			// The store is still usable, and the batch goes in, once, when
			// the cause is gone: as into a store that never failed.
			cancelMidBatch.Store(nil)
			if _, err := s.db.Exec("DROP TRIGGER IF EXISTS boom"); err != nil {
				t.Fatal(err)
			}
			if err := s.InsertEvents(context.Background(), tt.batch); err != nil {
				t.Fatalf("InsertEvents after the failure: %v", err)
			}
			ref, _ := openTemp(t)
			for _, b := range [][]schemas.UsageEvent{baseline, tt.batch} {
				if err := ref.InsertEvents(context.Background(), b); err != nil {
					t.Fatal(err)
				}
			}
			if d := stateOf(t, s).diff(stateOf(t, ref)); d != "" {
				t.Errorf("after the retry:\n%s", d)
			}
		})
	}
}

func TestEventsRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	full := schemas.UsageEvent{
		ID:            schemas.EventID{0x01, 0x93, 0, 0xff, 0x10, 0x20, 0x70, 0x01, 0x80, 0, 0, 0, 0, 0, 0, 0xfe},
		Time:          day20000 + 123_456_789,
		APIID:         "a1b2c3d4e5",
		Stage:         "prod",
		KeyID:         "key-éñ-✓",
		PlanID:        "plan with spaces and 'quotes'",
		Method:        "PATCH",
		Resource:      "/orders/{id}/lines",
		Status:        429,
		Decision:      quota,
		LatencyMicros: math.MaxInt64,
		BytesIn:       math.MinInt64,
		BytesOut:      1 << 40,
	}
	zero := schemas.UsageEvent{ID: schemas.NewEventID(day20000), Time: day20000 + 2e9} // every string empty
	sameTimeA := ev(day20000+3e9, "pro", "k1", allowed)
	sameTimeB := ev(day20000+3e9, "pro", "k1", schemas.DecisionBadRequest)
	if string(sameTimeB.ID[:]) < string(sameTimeA.ID[:]) {
		sameTimeA, sameTimeB = sameTimeB, sameTimeA
	}
	atFrom := ev(day20000, "pro", "k1", schemas.Decision(200)) // a decision this build does not know
	atTo := ev(day20000+10e9, "pro", "k1", allowed)
	before := ev(day20000-1, "pro", "k1", allowed)
	// Inserted out of order: the result is ordered by time, then id.
	if err := s.InsertEvents(context.Background(), []schemas.UsageEvent{atTo, sameTimeB, zero, full, before, sameTimeA, atFrom}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		from, to int64
		limit    int
		want     []schemas.UsageEvent
	}{
		{"range is [from, to)", day20000, day20000 + 10e9, 100, []schemas.UsageEvent{atFrom, full, zero, sameTimeA, sameTimeB}},
		{"limit", day20000, day20000 + 10e9, 2, []schemas.UsageEvent{atFrom, full}},
		{"all", math.MinInt64, math.MaxInt64, 100, []schemas.UsageEvent{before, atFrom, full, zero, sameTimeA, sameTimeB, atTo}},
		{"zero limit", math.MinInt64, math.MaxInt64, 0, nil},
		{"empty range", day20000, day20000, 100, nil},
		{"nothing there", 0, day, 100, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Events(context.Background(), tt.from, tt.to, tt.limit)
			if err != nil {
				t.Fatalf("Events: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Events: got %d events, want %d:\n got %+v\nwant %+v", len(got), len(tt.want), got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("Events[%d]:\n got %+v\nwant %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// TestQueryPlans checks the schema comments' promises: both reads are
// index range scans with no sort step.

// TestEventsAcrossBatches reads ranges that cut through overlapping
// batches, a batch spanning hours and ties on time, with every limit, and
// compares with the obvious computation.
func TestEventsAcrossBatches(t *testing.T) {
	const t0 = day20000
	var batches [][]schemas.UsageEvent
	a := many(100, t0, "pro", "k1")        // t0 .. t0+99µs
	b := many(100, t0+500, "pro", "k2")    // interleaved with a, half a µs later
	c := many(50, t0+50_000, "free", "k3") // overlaps a and b's second half
	ties := many(20, t0, "pro", "k4")      // the times of a's first 20 events, other ids
	for i := range ties {
		ties[i].Time = a[i].Time
	}
	// Events reach a batch in the order requests end: a long request's
	// event comes with later ones, so the batch spans hours.
	wide := slices.Concat(many(5, t0+200_000, "pro", "k1"), many(1, t0-3600e9, "pro", "k5"), many(5, t0+3600e9, "pro", "k1"))
	late := many(30, t0+10e9, "pro", "k1")
	slices.Reverse(late) // out of order within the batch
	batches = append(batches, a, b, c, ties, wide, late)

	s, _ := openTemp(t)
	var all []schemas.UsageEvent
	for _, bt := range batches {
		if err := s.InsertEvents(context.Background(), bt); err != nil {
			t.Fatal(err)
		}
		all = append(all, bt...)
	}

	points := []int64{
		math.MinInt64, t0 - 3600e9 - 1, t0 - 3600e9, t0 - 3600e9 + 1, t0 - 1, t0, t0 + 1, t0 + 500, t0 + 19_000, t0 + 19_001,
		t0 + 49_999, t0 + 50_000, t0 + 75_250, t0 + 99_500, t0 + 99_501, t0 + 100_000, t0 + 200_000, t0 + 1e9,
		t0 + 10e9, t0 + 10e9 + 15_000, t0 + 3600e9, t0 + 3600e9 + 1, math.MaxInt64,
	}
	for _, from := range points {
		for _, to := range points {
			for _, limit := range []int{1, 2, 7, 100, 1000} {
				got, err := s.Events(context.Background(), from, to, limit)
				if err != nil {
					t.Fatalf("Events(%d, %d, %d): %v", from-t0, to-t0, limit, err)
				}
				if want := modelEvents(all, from, to, limit); !slices.Equal(got, want) {
					t.Errorf("Events(t0%+d, t0%+d, %d): got %d events, want %d (or they differ)", from-t0, to-t0, limit, len(got), len(want))
				}
			}
		}
	}
}

func TestEventsCorruptBatch(t *testing.T) {
	s, _ := openTemp(t)
	if err := s.InsertEvents(context.Background(), many(3, day20000, "pro", "k1")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, update string }{
		{"bad encoding", "UPDATE usage_event_batches SET events = x'01'"},
		{"count differs", "UPDATE usage_event_batches SET n = 4"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.db.Exec(tt.update); err != nil {
				t.Fatal(err)
			}
			_, err := s.Events(context.Background(), math.MinInt64, math.MaxInt64, 10)
			if err == nil || !strings.HasPrefix(err.Error(), "query events: ") {
				t.Errorf("Events: got error %v, want one starting with %q", err, "query events: ")
			}
		})
	}
}

// TestQueryPlans checks the schema comments' promises: every read is an
// index range scan with no sort step, and the widest span is one index
// lookup.
func TestQueryPlans(t *testing.T) {
	s, _ := openTemp(t)
	// The key list (GetUsage's page) is a list subquery checked per row
	// of the day range, through a Bloom filter.
	const dailyPlan = "CO-ROUTINE (subquery-4); COMPOUND QUERY; LEFT-MOST SUBQUERY; SEARCH usage_daily USING PRIMARY KEY (day>? AND day<?); " +
		"LIST SUBQUERY 1; SCAN json_each VIRTUAL TABLE INDEX 1:; CREATE BLOOM FILTER; UNION ALL; SEARCH quota_adjustments USING PRIMARY KEY (day>? AND day<?); " +
		"LIST SUBQUERY 3; SCAN json_each VIRTUAL TABLE INDEX 1:; CREATE BLOOM FILTER; SCAN (subquery-4); USE TEMP B-TREE FOR GROUP BY"
	tests := []struct {
		name, query string
		args        []any
		wantUse     string
	}{
		// Both tables by their key's day range; the few rows of a day range
		// are then merged per (day, plan, key).
		{"daily", dailySQL, []any{1, 2, "", "", "[]"}, dailyPlan},
		{"daily with plan and key", dailySQL, []any{1, 2, "p", "k", "[]"}, dailyPlan},
		{"daily of a page of keys", dailySQL, []any{1, 2, "p", "", `["k1","k2"]`}, dailyPlan},
		// Of one plan: a seek per day of the plan, or of each key.
		{"daily of a plan's key", dailyOfPlanSQL(ofKey), []any{1, 2, "p", "k"}, "CO-ROUTINE (subquery-5); COMPOUND QUERY; LEFT-MOST SUBQUERY; " +
			"SEARCH usage_daily USING PRIMARY KEY (day=? AND plan_id=? AND key_id=?); LIST SUBQUERY 3; MATERIALIZE days; SETUP; SCAN CONSTANT ROW; RECURSIVE STEP; SCAN days; SCAN days; UNION ALL; " +
			"SEARCH quota_adjustments USING PRIMARY KEY (day>? AND day<?); SCAN (subquery-5); USE TEMP B-TREE FOR GROUP BY"},
		{"daily of a plan's page of keys", dailyOfPlanSQL(ofKeys), []any{1, 2, "p", `["k1","k2"]`}, "CO-ROUTINE (subquery-7); COMPOUND QUERY; LEFT-MOST SUBQUERY; " +
			"SEARCH usage_daily USING PRIMARY KEY (day=? AND plan_id=? AND key_id=?); LIST SUBQUERY 3; MATERIALIZE days; SETUP; SCAN CONSTANT ROW; RECURSIVE STEP; SCAN days; SCAN days; LIST SUBQUERY 4; SCAN json_each VIRTUAL TABLE INDEX 1:; " +
			"UNION ALL; SEARCH quota_adjustments USING PRIMARY KEY (day>? AND day<?); LIST SUBQUERY 6; SCAN json_each VIRTUAL TABLE INDEX 1:; CREATE BLOOM FILTER; " +
			"SCAN (subquery-7); USE TEMP B-TREE FOR GROUP BY"},
		{"daily of a plan", dailyOfPlanSQL(""), []any{1, 2, "p"}, "CO-ROUTINE (subquery-5); COMPOUND QUERY; LEFT-MOST SUBQUERY; " +
			"SEARCH usage_daily USING PRIMARY KEY (day=? AND plan_id=?); LIST SUBQUERY 3; MATERIALIZE days; SETUP; SCAN CONSTANT ROW; RECURSIVE STEP; SCAN days; SCAN days; UNION ALL; " +
			"SEARCH quota_adjustments USING PRIMARY KEY (day>? AND day<?); SCAN (subquery-5); USE TEMP B-TREE FOR GROUP BY"},
		{"minutes", minutesSQL, []any{1, 2}, "SEARCH usage_minute USING PRIMARY KEY (minute>? AND minute<?)"},
		{"events", eventsSQL, []any{1, 2, int64(math.MinInt64)}, "SEARCH usage_event_batches USING INDEX usage_event_batches_time (min_time>? AND min_time<?); " +
			"SCALAR SUBQUERY 2; CO-ROUTINE (subquery-1); SEARCH usage_event_batches USING COVERING INDEX usage_event_batches_span; SCAN (subquery-1)"},
		{"widest span", "SELECT max(max_time - min_time) FROM usage_event_batches", nil, "SEARCH usage_event_batches USING COVERING INDEX usage_event_batches_span"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := s.db.Query("EXPLAIN QUERY PLAN "+tt.query, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, notused int
				var detail string
				if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			got := strings.Join(plan, "; ")
			if got != tt.wantUse {
				t.Errorf("query plan:\n got %q\nwant %q", got, tt.wantUse)
			}
		})
	}
}

func TestUpsertSQL(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{
			"minutes", upsertMinutesSQL(2),
			"INSERT INTO usage_minute (minute, key_id, plan_id, api_id, stage, method, resource, status, decision, " +
				"requests, bytes_in, bytes_out, latency_us_sum) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?),(?,?,?,?,?,?,?,?,?,?,?,?,?) " +
				"ON CONFLICT (minute, key_id, plan_id, api_id, stage, method, resource, status, decision) DO UPDATE SET " +
				"requests = requests + excluded.requests, bytes_in = bytes_in + excluded.bytes_in, " +
				"bytes_out = bytes_out + excluded.bytes_out, latency_us_sum = latency_us_sum + excluded.latency_us_sum",
		},
		{
			"daily", upsertDailySQL(1),
			"INSERT INTO usage_daily (day, plan_id, key_id, admitted, rejected, throttled, quota_exceeded) VALUES (?,?,?,?,?,?,?) " +
				"ON CONFLICT (day, plan_id, key_id) DO UPDATE SET admitted = admitted + excluded.admitted, rejected = rejected + excluded.rejected, " +
				"throttled = throttled + excluded.throttled, quota_exceeded = quota_exceeded + excluded.quota_exceeded",
		},
		{
			"month", upsertKeyMonthsSQL(1),
			"INSERT INTO usage_key_month (month, plan_id, key_id, admitted, throttled, quota_exceeded) VALUES (?,?,?,?,?,?) " +
				"ON CONFLICT (month, plan_id, key_id) DO UPDATE SET admitted = admitted + excluded.admitted, " +
				"throttled = throttled + excluded.throttled, quota_exceeded = quota_exceeded + excluded.quota_exceeded",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("\n got %q\nwant %q", tt.got, tt.want)
			}
		})
	}
	if n := strings.Count(upsertMinutesSQL(1), "?"); n != minuteColumns {
		t.Errorf("upsertMinutesSQL(1) has %d parameters, want %d", n, minuteColumns)
	}
	if n := strings.Count(upsertDailySQL(1), "?"); n != dayColumns {
		t.Errorf("upsertDailySQL(1) has %d parameters, want %d", n, dayColumns)
	}
}

// TestConcurrent writes and reads from several goroutines; run with -race.
func TestConcurrent(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	const writers, batches, size = 4, 10, 150
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches*3)
	for w := range writers {
		wg.Go(func() {
			for i := range batches {
				ns := day20000 + int64(w*batches+i)*1e9
				if err := s.InsertEvents(ctx, many(size, ns, "pro", fmt.Sprint("k", w))); err != nil {
					errs <- err
				}
				if _, err := s.Daily(ctx, everyDay); err != nil {
					errs <- err
				}
				if _, err := s.Events(ctx, ns, ns+1e9, 10); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := daily(t, s, everyDay)
	if len(got) != writers {
		t.Fatalf("Daily: got %d rows, want %d: %+v", len(got), writers, got)
	}
	for _, d := range got {
		if d.Admitted != batches*size {
			t.Errorf("Daily %s: admitted = %d, want %d", d.KeyID, d.Admitted, batches*size)
		}
	}
	var requests int64
	for _, m := range allMinutes(t, s) {
		requests += m.Requests
	}
	if requests != writers*batches*size {
		t.Errorf("Minutes: %d requests, want %d", requests, writers*batches*size)
	}
	if n := len(allEvents(t, s)); n != writers*batches*size {
		t.Errorf("Events: got %d, want %d", n, writers*batches*size)
	}
}

func TestAdjustQuota(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "usage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.AdjustQuota(ctx, "p", "k", 10, 5); err != nil {
		t.Fatal(err)
	}
	if err := s.AdjustQuota(ctx, "p", "k", 10, -2); err != nil {
		t.Fatal(err)
	}
	s.AdjustQuota(ctx, "p", "other", 10, 7)
	got, err := s.Daily(ctx, usage.Filter{FromDay: 10, ToDay: 10, PlanID: "p", KeyID: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []usage.DayCount{{Day: 10, PlanID: "p", KeyID: "k", Adjustment: 3}}; !slices.Equal(got, want) {
		t.Errorf("Daily = %+v, want %+v", got, want)
	}
}
