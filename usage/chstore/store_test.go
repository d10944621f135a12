package chstore

import (
	"context"
	"errors"
	"math"
	mrand "math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tollgate/tollgate/internal/chtest"
	"github.com/tollgate/tollgate/reportapi"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// The report API reads either store.
var (
	_ reportapi.UsageStore  = (*Store)(nil)
	_ reportapi.MinuteStore = (*Store)(nil)
)

// testDatabase creates a database of its own for the test, dropped at
// cleanup, and returns the DSN that names it (internal/chtest: skipped
// without a server unless TOLLGATE_REQUIRE_CLICKHOUSE=1).
func testDatabase(t testing.TB) string { return chtest.Database(t) }

// openTest returns a migrated store on a database of its own.
func openTest(t testing.TB) *Store {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, testDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// oracle is sqlitestore holding the same events: what chstore must answer.
func oracle(t testing.TB, events []schemas.UsageEvent) *sqlitestore.Store {
	t.Helper()
	o, err := sqlitestore.Open(filepath.Join(t.TempDir(), "oracle.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	for chunk := range slices.Chunk(events, 4096) {
		if err := o.InsertEvents(context.Background(), chunk); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

var everyDay = usage.Filter{FromDay: math.MinInt64, ToDay: math.MaxInt64}

// sameAsOracle fails the test unless s and o answer Daily, Minutes and
// Events alike over every day.
func sameAsOracle(t testing.TB, s *Store, o *sqlitestore.Store) {
	t.Helper()
	if err := diffOracle(s, o); err != nil {
		t.Error(err)
	}
}

func diffOracle(s *Store, o *sqlitestore.Store) error {
	ctx := context.Background()
	got, err := s.Daily(ctx, everyDay)
	if err != nil {
		return err
	}
	want, err := o.Daily(ctx, everyDay)
	if err != nil {
		return err
	}
	if !slices.Equal(got, want) {
		return errors.New("Daily differs from sqlitestore's:\n got " + summary(got) + "\nwant " + summary(want))
	}
	gotM, err := s.Minutes(ctx, math.MinInt64, math.MaxInt64)
	if err != nil {
		return err
	}
	wantM, err := o.Minutes(ctx, math.MinInt64, math.MaxInt64)
	if err != nil {
		return err
	}
	if !slices.Equal(gotM, wantM) {
		return errors.New("Minutes differ from sqlitestore's: got " + itoa(len(gotM)) + " rows, " + itoa(requests(gotM)) +
			" requests; want " + itoa(len(wantM)) + " rows, " + itoa(requests(wantM)) + " requests")
	}
	// usage_hour and usage_day, which reports over whole hours and days
	// read, hold the same sums: every dimension, the whole range.
	for _, c := range []struct {
		g, table string
		dims     []string
	}{{"hour", "usage_hour", usage.Dimensions}, {"day", "usage_day", usage.Dimensions}, {"day", "usage_key_day", []string{"key", "plan", "api", "stage", "decision"}}} {
		g := c.g
		r := usage.Report{FromMinute: 0, ToMinute: (maxDay + 1) * 1440, Granularity: g, GroupBy: c.dims}
		if table := reportTable(r); table != c.table {
			return errors.New("a report by " + g + " reads " + table + ", not " + c.table)
		}
		got, err := reportRows(ctx, s, r)
		if err != nil {
			return err
		}
		want, err := reportRows(ctx, o, r)
		if err != nil {
			return err
		}
		if !slices.EqualFunc(got, want, sameReportRow) {
			return errors.New(c.table + " differs from sqlitestore's: got " + itoa(len(got)) + " rows; want " + itoa(len(want)))
		}
	}
	gotE, err := s.Events(ctx, math.MinInt64, math.MaxInt64, math.MaxInt32)
	if err != nil {
		return err
	}
	for i := range gotE {
		gotE[i].Node = "" // sqlitestore does not keep it
	}
	wantE, err := o.Events(ctx, math.MinInt64, math.MaxInt64, math.MaxInt32)
	if err != nil {
		return err
	}
	if !slices.Equal(gotE, wantE) {
		return errors.New("Events differ from sqlitestore's: got " + itoa(len(gotE)) + ", want " + itoa(len(wantE)))
	}
	return nil
}

// reportRows collects st's rows of r.
func reportRows(ctx context.Context, st interface {
	Report(context.Context, usage.Report, func(*usage.ReportRow) error) error
}, r usage.Report) ([]usage.ReportRow, error) {
	var out []usage.ReportRow
	err := st.Report(ctx, r, func(row *usage.ReportRow) error {
		c := *row
		c.Dims = slices.Clone(row.Dims)
		out = append(out, c)
		return nil
	})
	return out, err
}

func sameReportRow(a, b usage.ReportRow) bool {
	return a.Bucket == b.Bucket && slices.Equal(a.Dims, b.Dims) && a.Requests == b.Requests && a.BytesIn == b.BytesIn &&
		a.BytesOut == b.BytesOut && a.LatencyMicrosSum == b.LatencyMicrosSum
}

func summary(d []usage.DayCount) string {
	if len(d) > 8 {
		var a, r int64
		for _, c := range d {
			a += c.Admitted
			r += c.Rejected
		}
		return itoa(len(d)) + " rows, " + itoa(int(a)) + " admitted, " + itoa(int(r)) + " rejected"
	}
	var b strings.Builder
	for _, c := range d {
		b.WriteString(itoa(int(c.Day)) + "/" + c.PlanID + "/" + c.KeyID + ":" + itoa(int(c.Admitted)) + "," + itoa(int(c.Rejected)) + "," + itoa(int(c.Adjustment)) + " ")
	}
	return b.String()
}

func requests(m []usage.MinuteCount) int {
	n := 0
	for _, r := range m {
		n += int(r.Requests)
	}
	return n
}

func itoa(n int) string { return strconv.Itoa(n) }

const dayNS = int64(86400e9)

// day20000 is 2024-10-04 00:00 UTC in Unix nanoseconds.
const day20000 = 20000 * dayNS

// genEvents returns n events from time start on, step ns apart on
// average, with a small catalog's dimensions and mixed outcomes, and a
// little disorder in time (as enforcers' clocks and batching give).
// Keys are prefixed with prefix, so partitions can have keys of their own.
func genEvents(r *mrand.Rand, n int, start, step int64, prefix string) []schemas.UsageEvent {
	plans := [...]string{"free", "free", "pro", "pro", "enterprise"}
	resources := [...]string{"/items", "/items/{id}", "/orders/{id}/lines"}
	out := make([]schemas.UsageEvent, n)
	t := start
	for i := range out {
		t += step
		ts := t + r.Int64N(step*4+1) - step*2 // events slightly out of order
		k := r.IntN(len(plans) * 2)
		e := schemas.UsageEvent{
			ID:            schemas.NewEventID(ts),
			Time:          ts,
			APIID:         "api1",
			Stage:         "prod",
			KeyID:         prefix + "key-" + itoa(k),
			PlanID:        plans[k%len(plans)],
			Method:        [...]string{"GET", "POST"}[r.IntN(2)],
			Resource:      resources[r.IntN(len(resources))],
			Status:        200,
			Decision:      schemas.DecisionAllowed,
			LatencyMicros: r.Int64N(5000),
			BytesIn:       r.Int64N(100),
			BytesOut:      r.Int64N(10000),
			Node:          [...]string{"", "edge-1", "edge-2"}[r.IntN(3)],
		}
		switch x := r.IntN(100); {
		case x < 10:
			e.Status, e.Decision = 429, schemas.DecisionThrottled
		case x < 12:
			e.Status, e.Decision = 429, schemas.DecisionQuotaExceeded
		case x < 15:
			e.KeyID, e.PlanID, e.Status, e.Decision = "", "", 403, schemas.DecisionForbidden
		case x < 17:
			e.APIID, e.Stage, e.KeyID, e.PlanID, e.Resource, e.Status, e.Decision = "", "", "", "", "", 403, schemas.DecisionMissingToken
		case x < 20:
			e.Status = 500
		}
		if e.KeyID == "" && r.IntN(2) == 0 {
			// The enforcer's per-minute count of rejected requests: one
			// event, many requests (1 would read back as 0, the same).
			e.Count = uint32(2 + r.IntN(5000))
		}
		out[i] = e
	}
	return out
}

// record is one record of a partition of the events topic: an event, or
// none (a duplicate or poison record the consumer drops).
type record struct {
	offset int64
	event  *schemas.UsageEvent
}

// topic lays events out as records of a partition from offset 0, with
// about one record in ten holding no event.
func topic(r *mrand.Rand, events []schemas.UsageEvent) []record {
	var out []record
	for i := range events {
		for r.IntN(10) == 0 {
			out = append(out, record{offset: int64(len(out))})
		}
		out = append(out, record{offset: int64(len(out)), event: &events[i]})
	}
	return out
}

// batchOf returns the batch of records recs for partition p.
func batchOf(p int, recs []record) *Batch {
	b := &Batch{Partition: p, Last: recs[len(recs)-1].offset}
	for _, rec := range recs {
		if rec.event != nil {
			b.Offsets = append(b.Offsets, rec.offset)
			b.Events = append(b.Events, *rec.event)
		}
	}
	return b
}

func watermark(t testing.TB, s *Store, p int) Watermark {
	t.Helper()
	wms, err := s.Watermarks(context.Background(), []int{p})
	if err != nil {
		t.Fatal(err)
	}
	return wms[p]
}

// errInjected is the error failBeforeInsert's INSERT fails with.
var errInjected = errors.New("injected failure before an INSERT")

// failBeforeInsert makes s's k-th INSERT from now on (0: the next) fail
// before it is sent, as a stop of the writer there would leave the
// tables; k < 0 clears it.
func (s *Store) failBeforeInsert(k int) {
	if k < 0 {
		s.beforeInsert = nil
		return
	}
	var n atomic.Int64 // the tables' INSERTs run at once
	s.beforeInsert = func() error {
		if n.Add(1) == int64(k+1) {
			return errInjected
		}
		return nil
	}
}
