package reportapi

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// reportOnly hides a store's other methods: the answers through Report.
type reportOnly struct{ MinuteStore }

// /v1/usage/top of whole days, from the store's day and month tables
// (TopStore), answers what it answers through Report: random usage of
// random keys and plans, out of order, every decision; a day, a month,
// days across a month's end; with and without a plan; limits that cut
// ties.
func TestTopFromTablesEqualsReport(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	store, err := sqlitestore.Open(filepath.Join(t.TempDir(), "usage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var plans []catalog.UsagePlan
	for i := range 3 {
		plans = append(plans, catalog.UsagePlan{ID: fmt.Sprintf("p%d", i), Name: fmt.Sprintf("plan %d", i)})
	}
	var keys []catalog.APIKey
	for i := range 40 {
		keys = append(keys, catalog.APIKey{ID: fmt.Sprintf("k%02d", i), Name: fmt.Sprintf("key %d", i), ValueHash: catalog.HashKey(fmt.Sprintf("value-of-key-%02d-xxxxxxxx", i))})
	}
	m, _ := catalog.NewManager(catalog.StateOf(&catalog.Catalog{UsagePlans: plans, APIKeys: keys}), memSaver{}, nil)
	decisions := []schemas.Decision{schemas.DecisionAllowed, schemas.DecisionAllowed, schemas.DecisionThrottled, schemas.DecisionQuotaExceeded, schemas.DecisionForbidden, schemas.DecisionMissingToken}
	start := time.Date(2026, 10, 28, 0, 0, 0, 0, time.UTC)
	var events []schemas.UsageEvent
	for range 5000 {
		ns := start.Add(time.Duration(r.Int64N(int64(8 * 24 * time.Hour)))).UnixNano()
		e := schemas.UsageEvent{ID: schemas.NewEventID(ns), Time: ns, APIID: "a", Stage: "prod", KeyID: keys[r.IntN(len(keys))].ID,
			PlanID: plans[r.IntN(len(plans))].ID, Method: "GET", Resource: "/r", Status: 200, Decision: decisions[r.IntN(len(decisions))], Count: uint32(1 + r.IntN(3))}
		switch r.IntN(15) {
		case 0:
			e.KeyID = ""
		case 1:
			e.PlanID = ""
		}
		events = append(events, e)
	}
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	for b := range slices.Chunk(events, 400) {
		if err := store.InsertEvents(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	serve := func(ms MinuteStore) string {
		h, err := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Catalog: m, Minutes: ms,
			Now: func() time.Time { return start.AddDate(0, 0, 10) }})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	counted := &countingTop{Store: store}
	tables, report := serve(counted), serve(reportOnly{store})
	ranges := [][2]string{{"2026-10-30T00:00:00Z", "2026-10-31T00:00:00Z"}, {"2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"},
		{"2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"}, {"2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"2026-10-29T00:00:00Z", "2026-11-04T00:00:00Z"}, {"2026-10-15T00:00:00Z", "2026-11-15T00:00:00Z"}}
	for _, rg := range ranges {
		for _, plan := range []string{"", "p1"} {
			for _, limit := range []string{"3", "17", "1000"} {
				q := url.Values{"from": {rg[0]}, "to": {rg[1]}, "limit": {limit}}
				if plan != "" {
					q.Set("plan", plan)
				}
				_, _, want := fetch(t, report+"/v1/usage/top?"+q.Encode())
				_, _, got := fetch(t, tables+"/v1/usage/top?"+q.Encode())
				if got != want {
					t.Fatalf("%v:\n tables %s\n report %s", q, got, want)
				}
				if len(want) < 100 {
					t.Fatalf("%v: too little to compare: %s", q, want)
				}
			}
		}
	}
	if counted.calls != len(ranges)*2*3 {
		t.Fatalf("the store's tables answered %d of %d", counted.calls, len(ranges)*2*3)
	}
}

// countingTop counts the rankings its store's tables answer.
type countingTop struct {
	*sqlitestore.Store
	calls int
}

func (c *countingTop) TopKeys(ctx context.Context, fromDay, toDay int64, planID string, limit int, f func(*usage.KeyCounts) error) error {
	c.calls++
	return c.Store.TopKeys(ctx, fromDay, toDay, planID, limit, f)
}

// Top consumers with nobody: an empty list, through either path; through
// Report, one month bucket per key whatever granularity= asked.
func TestTopOfNobodyAndItsBuckets(t *testing.T) {
	store, err := sqlitestore.Open(filepath.Join(t.TempDir(), "usage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m, _ := catalog.NewManager(catalog.StateOf(&catalog.Catalog{}), memSaver{}, nil)
	rec := &granularities{MinuteStore: store}
	for _, ms := range []MinuteStore{store, rec} {
		h, _ := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Catalog: m, Minutes: ms})
		srv := httptest.NewServer(h)
		_, _, body := fetch(t, srv.URL+"/v1/usage/top?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z&granularity=minute")
		srv.Close()
		if !strings.Contains(body, `"rows":[]`) {
			t.Errorf("top of nobody: %s", body)
		}
	}
	if len(rec.seen) != 1 || slices.ContainsFunc(rec.seen, func(g string) bool { return g != "month" }) {
		t.Fatalf("the reports' granularities: %v", rec.seen)
	}
}

// granularities records the granularity of each report (and hides the
// store's tables: everything goes through Report).
type granularities struct {
	MinuteStore
	mu   sync.Mutex
	seen []string
}

func (g *granularities) Report(ctx context.Context, r usage.Report, f func(*usage.ReportRow) error) error {
	g.mu.Lock()
	g.seen = append(g.seen, r.Granularity)
	g.mu.Unlock()
	return g.MinuteStore.Report(ctx, r, f)
}
