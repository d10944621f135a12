package sqlitestore

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

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
	big := many(300, day20000, "pro", "k1") // spans several multi-row chunks and a tail
	withDups := slices.Concat(big[:200], big[10:11], big[150:300], big[299:300], big[0:5])

	tests := []struct {
		name       string
		batches    [][]schemas.UsageEvent
		want       []usage.DayCount
		wantEvents int
	}{
		{name: "across day boundaries", batches: [][]schemas.UsageEvent{b1}, want: want1, wantEvents: len(b1)},
		{name: "one event per batch", batches: [][]schemas.UsageEvent{b1[:3], b1[3:4], b1[4:]}, want: want1, wantEvents: len(b1)},
		{name: "same batch twice", batches: [][]schemas.UsageEvent{b1, b1}, want: want1, wantEvents: len(b1)},
		{name: "duplicate ids inside one batch", batches: [][]schemas.UsageEvent{slices.Concat(b1, b1[2:4], b1[:1])}, want: want1, wantEvents: len(b1)},
		{
			name:       "large batch",
			batches:    [][]schemas.UsageEvent{big},
			want:       []usage.DayCount{{Day: 20000, PlanID: "pro", KeyID: "k1", Admitted: 300}},
			wantEvents: 300,
		},
		{
			name:       "large batch twice",
			batches:    [][]schemas.UsageEvent{big, big},
			want:       []usage.DayCount{{Day: 20000, PlanID: "pro", KeyID: "k1", Admitted: 300}},
			wantEvents: 300,
		},
		{
			name:       "duplicates inside multi-row chunks of one batch",
			batches:    [][]schemas.UsageEvent{withDups},
			want:       []usage.DayCount{{Day: 20000, PlanID: "pro", KeyID: "k1", Admitted: 300}},
			wantEvents: 300,
		},
		{
			name:       "batch overlapping a stored one",
			batches:    [][]schemas.UsageEvent{big[:200], big[100:]},
			want:       []usage.DayCount{{Day: 20000, PlanID: "pro", KeyID: "k1", Admitted: 300}},
			wantEvents: 300,
		},
		{
			name: "plan or key alone is rolled up, neither is raw only",
			batches: [][]schemas.UsageEvent{{
				ev(day20000, "", "", forbidden),
				ev(day20000, "", "k9", forbidden),
				ev(day20000, "basic", "", schemas.DecisionMissingToken),
				ev(day20000, "", "", schemas.DecisionUnknown),
			}},
			want: []usage.DayCount{
				{Day: 20000, PlanID: "", KeyID: "k9", Rejected: 1},
				{Day: 20000, PlanID: "basic", KeyID: "", Rejected: 1},
			},
			wantEvents: 4,
		},
		{
			name:       "before 1970",
			batches:    [][]schemas.UsageEvent{{ev(-1, "pro", "k1", allowed), ev(-day, "pro", "k1", throttled), ev(-day-1, "pro", "k1", allowed)}},
			want:       []usage.DayCount{{Day: -2, PlanID: "pro", KeyID: "k1", Admitted: 1}, {Day: -1, PlanID: "pro", KeyID: "k1", Admitted: 1, Rejected: 1}},
			wantEvents: 3,
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
			if got := len(allEvents(t, s)); got != tt.wantEvents {
				t.Errorf("Events: got %d events, want %d", got, tt.wantEvents)
			}
		})
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
	want := daily(t, s, everyDay)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for i := range 2 {
		s2, err := Open(path)
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		if got := daily(t, s2, everyDay); !slices.Equal(got, want) {
			t.Errorf("reopen %d: Daily:\n got %+v\nwant %+v", i, got, want)
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
	var tables int
	if err := s.db.QueryRow("SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 3 { // two tables, one index
		t.Errorf("schema objects = %d, want 3", tables)
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
	tests := []struct {
		name    string
		trigger string // SQL run before the failing batch
		batch   []schemas.UsageEvent
		cancel  string // "before" the call or "during" it (by test_cancel)
	}{
		{name: "cancelled context", batch: many(200, day20000+day, "pro", "k2"), cancel: "before"},
		{
			name:    "context cancelled mid-batch",
			trigger: `CREATE TRIGGER boom AFTER INSERT ON usage_events WHEN NEW.api_id = 'cancel' BEGIN SELECT test_cancel(); END`,
			batch:   boom(many(200, day20000+day, "pro", "k2"), 100, func(e *schemas.UsageEvent) { e.APIID = "cancel" }),
			cancel:  "during",
		},
		{
			name:    "error in a multi-row chunk",
			trigger: `CREATE TRIGGER boom BEFORE INSERT ON usage_events WHEN NEW.api_id = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END`,
			batch:   boom(many(200, day20000+day, "pro", "k2"), 100, func(e *schemas.UsageEvent) { e.APIID = "boom" }),
		},
		{
			name:    "error in the row-by-row tail",
			trigger: `CREATE TRIGGER boom BEFORE INSERT ON usage_events WHEN NEW.api_id = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END`,
			batch:   boom(many(200, day20000+day, "pro", "k2"), 199, func(e *schemas.UsageEvent) { e.APIID = "boom" }),
		},
		{
			name:    "error after falling back to row by row",
			trigger: `CREATE TRIGGER boom BEFORE INSERT ON usage_events WHEN NEW.api_id = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END`,
			batch:   slices.Concat(baseline, boom(many(200, day20000+day, "pro", "k2"), 150, func(e *schemas.UsageEvent) { e.APIID = "boom" })),
		},
		{
			name:    "error in the rollup",
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
			wantDaily, wantEvents := daily(t, s, everyDay), allEvents(t, s)
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

			err := s.InsertEvents(ctx, tt.batch)
			if err == nil {
				t.Fatal("InsertEvents: got no error")
			}
			if !strings.HasPrefix(err.Error(), "insert events: ") {
				t.Errorf("InsertEvents: got error %q, want it to start with %q", err, "insert events: ")
			}
			if tt.cancel != "" && !errors.Is(err, context.Canceled) {
				t.Errorf("InsertEvents: got %v, want context.Canceled", err)
			}
			if got := daily(t, s, everyDay); !slices.Equal(got, wantDaily) {
				t.Errorf("Daily after failed batch:\n got %+v\nwant %+v", got, wantDaily)
			}
			if got := allEvents(t, s); !slices.Equal(got, wantEvents) {
				t.Errorf("Events after failed batch: got %d events, want the %d stored before", len(got), len(wantEvents))
			}

			// The store is still usable, and the batch goes in once the cause is gone.
			cancelMidBatch.Store(nil)
			if _, err := s.db.Exec("DROP TRIGGER IF EXISTS boom"); err != nil {
				t.Fatal(err)
			}
			if err := s.InsertEvents(context.Background(), tt.batch); err != nil {
				t.Fatalf("InsertEvents after the failure: %v", err)
			}
			if got, want := len(allEvents(t, s)), len(baseline)+len(tt.batch)-countShared(baseline, tt.batch); got != want {
				t.Errorf("Events after retry: got %d, want %d", got, want)
			}
		})
	}
}

// boom returns events with events[i] changed by f.
func boom(events []schemas.UsageEvent, i int, f func(*schemas.UsageEvent)) []schemas.UsageEvent {
	f(&events[i])
	return events
}

// countShared counts the events of b whose id is in a.
func countShared(a, b []schemas.UsageEvent) int {
	ids := make(map[schemas.EventID]bool, len(a))
	for _, e := range a {
		ids[e.ID] = true
	}
	n := 0
	for _, e := range b {
		if ids[e.ID] {
			n++
		}
	}
	return n
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
func TestQueryPlans(t *testing.T) {
	s, _ := openTemp(t)
	tests := []struct {
		name, query string
		args        []any
		wantUse     string
	}{
		{"daily", dailySQL, []any{1, 2, "", "", "", ""}, "SEARCH usage_daily USING PRIMARY KEY (day>? AND day<?)"},
		{"daily with plan and key", dailySQL, []any{1, 2, "p", "p", "k", "k"}, "SEARCH usage_daily USING PRIMARY KEY (day>? AND day<?)"},
		{"events", eventsSQL, []any{1, 2, 10}, "SEARCH usage_events USING INDEX usage_events_time (time>? AND time<?)"},
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

func TestInsertEventsSQL(t *testing.T) {
	got := insertEventsSQL(2)
	want := "INSERT OR IGNORE INTO usage_events " +
		"(id, time, api_id, stage, key_id, plan_id, method, resource, status, decision, latency_us, bytes_in, bytes_out) " +
		"VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?),(?,?,?,?,?,?,?,?,?,?,?,?,?)"
	if got != want {
		t.Errorf("insertEventsSQL(2):\n got %q\nwant %q", got, want)
	}
	if n := strings.Count(insertEventsSQL(1), "?"); n != eventColumns {
		t.Errorf("insertEventsSQL(1) has %d parameters, want %d", n, eventColumns)
	}
}

// TestConcurrent writes and reads from several goroutines; run with -race.
func TestConcurrent(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	const writers, batches, size = 4, 10, 150
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches*2)
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
}
