package reportapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/chtest"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/chstore"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// countingStore answers every report with nothing and counts the reads:
// a request refused for its parameters must not read anything.
type countingStore struct{ reads atomic.Int64 }

func (s *countingStore) Daily(context.Context, usage.Filter) ([]usage.DayCount, error) {
	s.reads.Add(1)
	return nil, nil
}

func (s *countingStore) Report(context.Context, usage.Report, func(*usage.ReportRow) error) error {
	s.reads.Add(1)
	return nil
}

// boundsCatalog is a plan with a key, an API and a stage, for reports.
func boundsCatalog(t *testing.T) *catalog.Manager {
	t.Helper()
	m, err := catalog.NewManager(catalog.StateOf(&catalog.Catalog{
		APIs: []catalog.API{{ID: "a", Stages: []catalog.Stage{{Name: "prod", Upstream: "http://127.0.0.1:1"}},
			Resources: []catalog.Resource{{Path: "/items", Methods: map[string]catalog.Method{"GET": {APIKeyRequired: true}}}}}},
		UsagePlans: []catalog.UsagePlan{{ID: "p1", Name: "Free", Quota: &catalog.Quota{Limit: 6, Period: catalog.Month}, APIStages: []catalog.APIStage{}}},
		APIKeys: []catalog.APIKey{{ID: "k1", Name: "acme", ValueHash: catalog.HashKey("acmeacmeacmeacmeacme01"), UsagePlans: []string{"p1"}},
			{ID: "k2", Name: "widget", ValueHash: catalog.HashKey("widgetwidgetwidget0001"), UsagePlans: []string{"p1"}}},
	}), memSaver{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Every report has a longest range and takes only dates the stores can
// hold: past them, a 400 that names the parameter and the bound, before
// anything is read. (Unbounded, one GetUsage of 0001-01-01 to 9999-12-31
// over 500 keys built 23.7 GB of answer.)
func TestReportRangeBounds(t *testing.T) {
	store := &countingStore{}
	h, err := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Catalog: boundsCatalog(t), Usage: store, Minutes: store,
		Now: func() time.Time { return time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	const ok = 200
	tests := []struct {
		name   string
		path   string
		status int
		want   string // in the body
	}{
		{"GetUsage, the whole calendar", "/usageplans/p1/usage?startDate=0001-01-01&endDate=9999-12-31&limit=500", 400, `startDate: \"0001-01-01\" is outside 1970-01-01 ... 2105-12-31`},
		{"GetUsage, end past 2105", "/usageplans/p1/usage?startDate=2105-12-01&endDate=2106-01-01", 400, `endDate: \"2106-01-01\" is outside`},
		{"GetUsage, a year", "/usageplans/p1/usage?startDate=2026-01-01&endDate=2026-12-31", 400, "endDate: the range from 2026-01-01 to 2026-12-31 is 365 days; at most 90 days"},
		{"GetUsage, 91 days", "/usageplans/p1/usage?startDate=2026-09-01&endDate=2026-11-30", 400, "is 91 days; at most 90 days"},
		{"GetUsage, 90 days", "/usageplans/p1/usage?startDate=2026-09-01&endDate=2026-11-29&limit=500", ok, `"values":{"k1":[`},
		{"GetUsage, reversed", "/usageplans/p1/usage?startDate=2026-11-02&endDate=2026-11-01", 400, "endDate 2026-11-01 is before startDate 2026-11-02"},
		{"GetUsage, not a day", "/usageplans/p1/usage?startDate=2026-02-30&endDate=2026-03-01", 400, "startDate:"},
		{"GetUsage, huge limit", "/usageplans/p1/usage?startDate=2026-11-01&endDate=2026-11-02&limit=99999999999999999999", 400, "limit must be an integer from 1 to 500"},
		{"usage, the whole calendar", "/v1/usage?from=0001-01-01T00:00:00Z&to=9999-12-31T00:00:00Z&granularity=minute", 400, "from: 0001-01-01T00:00:00Z is outside 1970-01-01T00:00:00Z ... 2106-01-01T00:00:00Z"},
		{"usage, to past 2105", "/v1/usage?from=2026-01-01T00:00:00Z&to=2200-01-01T00:00:00Z", 400, "to: 2200-01-01T00:00:00Z is outside"},
		{"usage, minutes of 2 days", "/v1/usage?from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00Z&granularity=minute", 400, "to: the range from 2026-11-01T00:00:00Z to 2026-11-03T00:00:00Z is 2 days; granularity=minute reads at most 1 day at once"},
		{"usage, minutes of 1 day", "/v1/usage?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z&granularity=minute", ok, `"rows":[]`},
		{"usage, hours of 32 days", "/v1/usage?from=2026-10-01T00:00:00Z&to=2026-11-02T00:00:00Z&granularity=hour", 400, "granularity=hour reads at most 31 days"},
		{"usage, hours of 31 days", "/v1/usage?from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z&granularity=hour", ok, `"rows":[]`},
		{"usage, days of 93 days", "/v1/usage?from=2026-07-01T00:00:00Z&to=2026-10-02T00:00:00Z&granularity=day", 400, "granularity=day reads at most 92 days"},
		{"usage, days of a quarter", "/v1/usage?from=2026-07-01T00:00:00Z&to=2026-10-01T00:00:00Z&granularity=day", ok, `"rows":[]`},
		{"usage, months of a year", "/v1/usage?from=2025-11-01T00:00:00Z&granularity=month", 400, "is 392 days; granularity=month reads at most 92 days"},
		{"usage, 1h more than a day", "/v1/usage?from=2026-11-01T00:00:00Z&to=2026-11-02T01:00:00Z&granularity=minute", 400, "is 1 day 1h;"},
		{"top, a year", "/v1/usage/top?from=2025-11-01T00:00:00Z", 400, "to: the range from 2025-11-01T00:00:00Z to 2026-11-28T00:00:00Z is 392 days; /v1/usage/top reads at most 92 days"},
		{"top, the whole calendar", "/v1/usage/top?from=0001-01-01T00:00:00Z", 400, "from: 0001-01-01T00:00:00Z is outside"},
		{"top, a quarter", "/v1/usage/top?from=2026-08-28T00:00:00Z", ok, `"rows":[]`},
		{"top, huge limit", "/v1/usage/top?from=2026-11-01T00:00:00Z&limit=100000000", 400, `limit: \"100000000\" is not an integer from 1 to 1000`},
		{"billing, year 1", "/v1/reports/billing?month=0001-01", 400, "month: 0001-01 is outside 1970-01 ... 2105-12"},
		{"billing, year 9999", "/v1/reports/billing?month=9999-12", 400, "month: 9999-12 is outside"},
		{"billing, last month held", "/v1/reports/billing?month=2105-12", ok, `"rows":[]`},
		{"billing, first month held", "/v1/reports/billing?month=1970-01", ok, `"rows":[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := store.reads.Load()
			code, h, body := fetch(t, srv.URL+tt.path)
			if code != tt.status || !strings.Contains(body, tt.want) {
				t.Fatalf("%d %.300s\nwant %d containing %s", code, body, tt.status, tt.want)
			}
			if code == 400 {
				if got := h.Get("X-Amzn-Errortype"); got != "BadRequestException" {
					t.Errorf("x-amzn-ErrorType %q, want BadRequestException", got)
				}
				if n := store.reads.Load() - before; n != 0 {
					t.Errorf("a refused request read the store %d times", n)
				}
			}
		})
	}
}

// Filters name what the catalog holds, by id or name; anything else is a
// 404 that names it, not an empty report.
func TestUsageFiltersMustExist(t *testing.T) {
	minutes := fakeMinutes{
		{Minute: minute("2026-11-27T10:00:00Z"), KeyID: "k1", PlanID: "p1", APIID: "a", Stage: "prod", Decision: schemas.DecisionAllowed, Requests: 5},
		{Minute: minute("2026-11-27T10:00:00Z"), KeyID: "k2", PlanID: "p1", APIID: "a", Stage: "prod", Decision: schemas.DecisionAllowed, Requests: 7},
	}
	h, err := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Catalog: boundsCatalog(t), Minutes: minutes,
		Now: func() time.Time { return time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	const day = "/v1/usage?from=2026-11-27T00:00:00Z&to=2026-11-28T00:00:00Z&format=csv&"
	const top = "/v1/usage/top?from=2026-11-27T00:00:00Z&to=2026-11-28T00:00:00Z&"
	tests := []struct {
		name, path string
		status     int
		want       string
	}{
		{"key by id", day + "key=k1", 200, "2026-11-27T00:00:00Z,5,"},
		{"key by name", day + "key=widget", 200, "2026-11-27T00:00:00Z,7,"},
		{"unknown key", day + "key=nobody", 404, `key: no API key has the id or name \"nobody\"`},
		{"plan by name", day + "plan=Free", 200, "2026-11-27T00:00:00Z,12,"},
		{"unknown plan", day + "plan=Gold", 404, `plan: no usage plan has the id or name \"Gold\"`},
		{"api", day + "api=a", 200, "2026-11-27T00:00:00Z,12,"},
		{"unknown api", day + "api=zzz", 404, `api: no API has the id \"zzz\"`},
		{"stage", day + "api=a&stage=prod", 200, "2026-11-27T00:00:00Z,12,"},
		{"unknown stage", day + "stage=dev", 404, `stage: no API has a stage \"dev\"`},
		{"unknown stage of the api", day + "api=a&stage=dev", 404, `stage: API \"a\" has no stage \"dev\"`},
		{"top, plan by name", top + "plan=Free", 200, `"key":"k2"`},
		{"top, unknown plan", top + "plan=Gold", 404, `plan: no usage plan has the id or name \"Gold\"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := fetch(t, srv.URL+tt.path)
			if code != tt.status || !strings.Contains(body, tt.want) {
				t.Fatalf("%d %s\nwant %d containing %s", code, body, tt.status, tt.want)
			}
			if code == 404 && h.Get("X-Amzn-Errortype") != "NotFoundException" {
				t.Errorf("x-amzn-ErrorType %q, want NotFoundException", h.Get("X-Amzn-Errortype"))
			}
		})
	}
}

// generatedMinutes answers a report with n rows over its range across
// keys keys (a row per minute row, as a store that could not sum would:
// the most a report can be sent) without holding them, and measures the
// live heap as they stream: every 100,000 rows it collects garbage and
// records the heap in use above what it was at the start, and stops the
// scan past limit bytes (a report that kept the rows it reads would
// otherwise take gigabytes).
type generatedMinutes struct {
	n, keys int
	limit   uint64
	peak    uint64
}

var errHeldTooMuch = errors.New("the report holds what it reads")

func (g *generatedMinutes) Report(_ context.Context, r usage.Report, fn func(*usage.ReportRow) error) error {
	from, to := r.FromMinute, r.ToMinute
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	g.peak = 0
	keys := make([]string, g.keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("key%05d", i)
	}
	decisions := []schemas.Decision{schemas.DecisionAllowed, schemas.DecisionAllowed, schemas.DecisionThrottled, schemas.DecisionQuotaExceeded}
	var m usage.MinuteCount
	dims := make([]string, 0, len(usage.Dimensions))
	span := to - from
	for i := 0; i < g.n; i++ {
		m = usage.MinuteCount{Minute: from + int64(i)*span/int64(g.n), KeyID: keys[i%g.keys], PlanID: "p1", APIID: "a", Stage: "prod",
			Method: "GET", Resource: "/items", Status: 200, Decision: decisions[i%len(decisions)], Requests: 1, BytesOut: 100}
		row := usage.ReportRow{Bucket: usage.BucketOf(m.Minute, r.Granularity), Dims: dims[:0], Requests: m.Requests, BytesOut: m.BytesOut}
		for _, d := range r.GroupBy {
			row.Dims = append(row.Dims, usage.DimValue(&m, d))
		}
		if err := fn(&row); err != nil {
			return err
		}
		if i%100_000 == 99_999 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base {
				g.peak = max(g.peak, ms.HeapAlloc-base)
			}
			if g.peak > g.limit {
				return fmt.Errorf("%w: %d MB live after %d rows", errHeldTooMuch, g.peak>>20, i+1)
			}
		}
	}
	return nil
}

// The minute reports handle rows as they stream: over their longest
// range, with 600,000 rows from the store, what they hold stays within a
// few MB (the keys' sums), not the rows.
func TestMinuteReportsHoldBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 600,000 rows per report")
	}
	const limit = 16 << 20
	tests := []struct{ name, path string }{
		{"usage, a quarter by day and key", "/v1/usage?from=2026-08-28T00:00:00Z&to=2026-11-28T00:00:00Z&granularity=day&group_by=key,decision&format=csv"},
		{"usage, a quarter by month", "/v1/usage?from=2026-08-28T00:00:00Z&to=2026-11-28T00:00:00Z&granularity=month&group_by=key,plan,api,stage,method,resource,status,decision"},
		{"usage, a day by minute", "/v1/usage?from=2026-11-27T00:00:00Z&to=2026-11-28T00:00:00Z&granularity=minute&group_by=key&format=csv"},
		{"top, a quarter", "/v1/usage/top?from=2026-08-28T00:00:00Z&to=2026-11-28T00:00:00Z&limit=1000"},
		{"billing, a month", "/v1/reports/billing?month=2026-10"},
		{"billing, a month as csv", "/v1/reports/billing?month=2026-10&format=csv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &generatedMinutes{n: 600_000, keys: 2_000, limit: limit}
			h, err := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Catalog: boundsCatalog(t), Minutes: g,
				Now: func() time.Time { return time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC) }})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
			req.Header.Set("Authorization", "Bearer "+testCreds.Token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || g.peak > limit {
				t.Fatalf("%d, %d bytes; held %d MB at most while reading, want at most %d MB", resp.StatusCode, n, g.peak>>20, limit>>20)
			}
			t.Logf("held at most %.1f MB over %d rows; answered %d bytes", float64(g.peak)/(1<<20), g.n, n)
		})
	}
}

// recordingDaily passes Daily to a store and keeps how many rows each
// call returned.
type recordingDaily struct {
	UsageStore
	rows []int
}

func (r *recordingDaily) Daily(ctx context.Context, f usage.Filter) ([]usage.DayCount, error) {
	rows, err := r.UsageStore.Daily(ctx, f)
	r.rows = append(r.rows, len(rows))
	return rows, err
}

// getUsageFixture is a plan with keys keys, each with one admitted
// request on each of the days from first.
func getUsageFixture(keys, days int, first time.Time) (*catalog.Catalog, []schemas.UsageEvent) {
	cat := &catalog.Catalog{UsagePlans: []catalog.UsagePlan{{ID: "p1", Name: "Free", Quota: &catalog.Quota{Limit: 1000, Period: catalog.Day}, APIStages: []catalog.APIStage{}}}}
	events := make([]schemas.UsageEvent, 0, keys*days)
	for k := 0; k < keys; k++ {
		id := fmt.Sprintf("key%05d", k)
		cat.APIKeys = append(cat.APIKeys, catalog.APIKey{ID: id, Name: id, ValueHash: catalog.HashKey(fmt.Sprintf("value-%020d", k)), UsagePlans: []string{"p1"}})
	}
	// In time order, as a partition of the events topic: a day's events
	// are one INSERT into ClickHouse's day partitions.
	for d := 0; d < days; d++ {
		for k := 0; k < keys; k++ {
			id := cat.APIKeys[k].ID
			e := schemas.UsageEvent{Time: first.Add(time.Duration(d)*24*time.Hour + time.Duration(k)*time.Second).UnixNano(), APIID: "a", Stage: "prod",
				KeyID: id, PlanID: "p1", Method: "GET", Resource: "/items", Status: 200, Decision: schemas.DecisionAllowed}
			e.ID[0], e.ID[1], e.ID[2], e.ID[3] = byte(k>>8), byte(k), byte(d), 1
			events = append(events, e)
		}
	}
	return cat, events
}

// One GetUsage page over the longest range reads its own keys' rows only
// and answers in memory bounded by the page (500 keys × 90 days), however
// many keys the plan has: on the embedded store and on ClickHouse.
// (It used to read every key of the plan, and to build the whole answer
// before writing it.)
func TestGetUsagePageIsBounded(t *testing.T) {
	const keys, days, page = 2_000, 90, 500
	first := time.Date(2026, 8, 30, 0, 0, 0, 0, time.UTC)
	cat, events := getUsageFixture(keys, days, first)
	ctx := context.Background()
	stores := []struct {
		name string
		open func(t *testing.T) UsageStore
	}{
		{"sqlite", func(t *testing.T) UsageStore {
			s, err := sqlitestore.Open(t.TempDir() + "/usage.db")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if err := s.InsertEvents(ctx, events); err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"clickhouse", func(t *testing.T) UsageStore {
			s, err := chstore.Open(ctx, chtest.Database(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if _, err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			offs := make([]int64, len(events))
			for i := range offs {
				offs[i] = int64(i)
			}
			if _, err := s.InsertBatch(ctx, &chstore.Batch{Partition: 0, Last: int64(len(events) - 1), Offsets: offs, Events: events}, chstore.NoWatermark); err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			store := &recordingDaily{UsageStore: st.open(t)}
			m, err := catalog.NewManager(catalog.StateOf(cat), memSaver{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			h, err := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Catalog: m, Usage: store,
				Throttle: AdminThrottle{RateLimit: 1e9, BurstLimit: 1 << 30}})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			path := fmt.Sprintf("/usageplans/p1/usage?startDate=%s&endDate=%s&limit=%d", first.Format("2006-01-02"),
				first.AddDate(0, 0, days-1).Format("2006-01-02"), page)
			get := func() (int, string) {
				req, _ := http.NewRequest("GET", srv.URL+path, nil)
				req.Header.Set("Authorization", "Bearer "+testCreds.Token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			get() // warm up: connections, prepared statements
			store.rows = nil
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			code, body := get()
			runtime.ReadMemStats(&after)
			if code != 200 || !strings.Contains(body, `"key00000":[[1,999],[1,999]`) || !strings.Contains(body, `"position":"`) {
				t.Fatalf("%d %.300s", code, body)
			}
			if len(store.rows) != 1 || store.rows[0] != page*days {
				t.Errorf("Daily returned %v rows, want %d (the page's %d keys × %d days), not the plan's %d keys'", store.rows, page*days, page, days, keys)
			}
			// What the request allocated, client and server: about 0.5 KB
			// per key and day of the page (the store's rows, the values,
			// the answer), the page's 45,000 at most; reading the plan's
			// 180,000 would be four times more.
			const maxAlloc = page * days * 1 << 10
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("GetUsage of %d keys × %d days: %d bytes answered, %.1f MB allocated", page, days, len(body), float64(alloc)/(1<<20))
			if alloc > maxAlloc {
				t.Errorf("one page allocated %d MB, want at most %d MB", alloc>>20, maxAlloc>>20)
			}
		})
	}
}

// Whatever times and granularity a client sends, /v1/usage's parameters
// are refused with a 400 naming one, or are a range the stores hold, no
// longer than the granularity's bound, whose buckets compute without
// overflow.
func FuzzUsageQuery(f *testing.F) {
	f.Add("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "minute")
	f.Add("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "month")
	f.Add("1970-01-01T00:00:00Z", "1970-04-03T00:00:00Z", "day")
	f.Add("2105-12-31T00:00:00+14:00", "", "hour")
	now := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, from, to, granularity string) {
		u, perr := parseUsageQuery(map[string][]string{"from": {from}, "to": {to}, "granularity": {granularity}}, now)
		if perr == nil {
			perr = checkSpan(u, maxSpan[u.granularity], "granularity="+u.granularity)
		}
		if perr != nil {
			if perr.status != 400 || !strings.Contains(perr.msg, ":") {
				t.Fatalf("%d %q names no parameter", perr.status, perr.msg)
			}
			return
		}
		if u.from.Before(earliest) || u.to.After(latest) || u.to.Sub(u.from) > maxSpan[u.granularity] {
			t.Fatalf("accepted %s .. %s by %s", u.from, u.to, u.granularity)
		}
		bucket := func(m int64) time.Time { return time.Unix(usage.BucketOf(m, u.granularity)*60, 0).UTC() }
		first, last := bucket(u.from.Unix()/60), bucket((u.to.Unix()-1)/60)
		if first.After(u.from) || last.After(u.to) || first.Year() < 1970 || last.Year() > 2106 {
			t.Fatalf("buckets %s .. %s for %s .. %s", first, last, u.from, u.to)
		}
	})
}
