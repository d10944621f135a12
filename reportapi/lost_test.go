package reportapi

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/aggregator/aggstore"
	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/chtest"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/chstore"
)

// The stores that answer /v1/usage/lost: ClickHouse, where the
// aggregators keep the lost-usage topic.
var _ LostStore = (*chstore.Store)(nil)

// fakeLost is a MinuteStore that keeps lost usage: rows, filtered as a
// store would, and the last call's arguments.
type fakeLost struct {
	fakeMinutes
	rows []usage.LostRow
	call []any
}

func (f *fakeLost) Lost(_ context.Context, fromDay, toDay int64, keyID, planID string) ([]usage.LostRow, error) {
	f.call = []any{fromDay, toDay, keyID, planID}
	var out []usage.LostRow
	for _, r := range f.rows {
		if r.Day >= fromDay && r.Day <= toDay && (keyID == "" || r.KeyID == keyID) && (planID == "" || r.PlanID == planID) {
			out = append(out, r)
		}
	}
	return out, nil
}

func lostServer(t *testing.T, minutes MinuteStore) string {
	t.Helper()
	m, err := catalog.NewManager(catalog.NewState(), memSaver{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Catalog: m, Minutes: minutes,
		Now: func() time.Time { return time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func day(s string) int64 {
	d, err := usage.ParseDay(s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestLostUsageReport(t *testing.T) {
	store := &fakeLost{rows: []usage.LostRow{
		{Day: day("2026-11-26"), KeyID: "k1", PlanID: "p1", Node: "edge1", Reason: schemas.LostSpillFull, Requests: 15, Admitted: 12},
		{Day: day("2026-11-27"), KeyID: "k2", PlanID: "p1", Node: "edge2", Reason: schemas.LostSpillFull, Requests: 3},
		{Day: day("2026-11-27"), Node: "edge2", Reason: schemas.LostQueueFull, Requests: 40},
	}}
	url := lostServer(t, store)

	// A range within days: every day it touches.
	code, hdr, body := fetch(t, url+"/v1/usage/lost?from=2026-11-26T12:00:00Z&to=2026-11-27T00:00:01Z")
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s: %s", code, hdr.Get("Content-Type"), body)
	}
	if want := []any{day("2026-11-26"), day("2026-11-27"), "", ""}; !slices.Equal(store.call, want) {
		t.Errorf("store asked for %v, want %v", store.call, want)
	}
	var got struct {
		From, To           string
		Requests, Admitted int64
		Rows               []lostRow
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if got.From != "2026-11-26T12:00:00Z" || got.To != "2026-11-27T00:00:01Z" || got.Requests != 58 || got.Admitted != 12 || len(got.Rows) != 3 {
		t.Errorf("answer %+v, want the range, 58 requests of which 12 admitted, 3 rows", got)
	}
	if want := (lostRow{Day: "2026-11-26", KeyID: "k1", PlanID: "p1", Node: "edge1", Reason: "spill-full", Requests: 15, Admitted: 12}); len(got.Rows) > 0 && got.Rows[0] != want {
		t.Errorf("row 0 = %+v, want %+v", got.Rows[0], want)
	}

	// Whole days end before to; the filters are ids, passed as they are
	// (no catalog holds k2 here); CSV.
	code, hdr, body = fetch(t, url+"/v1/usage/lost?from=2026-11-27T00:00:00Z&to=2026-11-28T00:00:00Z&keyId=k2&planId=p1&format=csv")
	want := "day,key_id,plan_id,node,reason,requests,admitted\n2026-11-27,k2,p1,edge2,spill-full,3,0\n"
	if code != 200 || hdr.Get("Content-Type") != "text/csv" || body != want {
		t.Errorf("csv: %d %s %q, want %q", code, hdr.Get("Content-Type"), body, want)
	}
	if want := []any{day("2026-11-27"), day("2026-11-27"), "k2", "p1"}; !slices.Equal(store.call, want) {
		t.Errorf("store asked for %v, want %v", store.call, want)
	}

	// Nothing lost: an empty list, not null.
	if code, _, body := fetch(t, url+"/v1/usage/lost?from=2026-10-01T00:00:00Z&to=2026-10-02T00:00:00Z"); code != 200 || !strings.Contains(body, `"rows":[]`) {
		t.Errorf("no losses: %d %s", code, body)
	}
}

// Bad parameters are 400s that name the parameter, as /v1/usage's; a
// request without credentials is refused.
func TestLostUsageReportBadRequests(t *testing.T) {
	url := lostServer(t, &fakeLost{})
	for _, c := range []struct{ name, query, want string }{
		{"no from", "", "from: "},
		{"from not a time", "from=yesterday", `from: \"yesterday\" is not an RFC 3339 time`},
		{"to not a time", "from=2026-11-01T00:00:00Z&to=2026-11-31", "to: "},
		{"reversed", "from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "to: must be after from"},
		{"before 1970", "from=1969-12-31T00:00:00Z&to=2026-11-01T00:00:00Z", "from: 1969-12-31T00:00:00Z is outside"},
		{"93 days", "from=2026-08-01T00:00:00Z&to=2026-11-02T00:00:00Z", "to: the range from 2026-08-01T00:00:00Z to 2026-11-02T00:00:00Z is 93 days; /v1/usage/lost reads at most 92 days"},
		{"format", "from=2026-11-01T00:00:00Z&format=xml", `format: \"xml\" is not one of`},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, body := fetch(t, url+"/v1/usage/lost?"+c.query)
			if code != 400 || !strings.Contains(body, c.want) {
				t.Errorf("%d %s, want 400 with %q", code, body, c.want)
			}
		})
	}
	if code, _ := get(t, url+"/v1/usage/lost?from=2026-11-01T00:00:00Z"); code != 403 {
		t.Errorf("without credentials: %d, want 403", code)
	}
}

// A store that keeps no lost usage (the embedded one) answers 501,
// saying why and where lost usage is kept.
func TestLostUsageNotImplementedWithoutALostStore(t *testing.T) {
	url := lostServer(t, testMinutes)
	code, hdr, body := fetch(t, url+"/v1/usage/lost?from=2026-11-01T00:00:00Z")
	if code != 501 || hdr.Get("X-Amzn-Errortype") != "NotImplementedException" || !strings.Contains(body, "lost-usage topic") || !strings.Contains(body, "--clickhouse") {
		t.Errorf("%d %s %s, want 501 NotImplementedException naming the lost-usage topic and --clickhouse", code, hdr.Get("X-Amzn-Errortype"), body)
	}
}

// On ClickHouse: what the aggregators stored, summed once per record.
func TestLostUsageReportOnClickHouse(t *testing.T) {
	ctx := context.Background()
	s, err := chstore.Open(ctx, chtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	rec := func(offset int64, key string, n int64) aggstore.LostRecord {
		return aggstore.LostRecord{Offset: offset, Day: day("2026-11-27"), Lost: schemas.LostUsage{Node: "edge1", KeyID: key, PlanID: "p1",
			Count: n, Admitted: n, Reason: schemas.LostSpillFull}}
	}
	recs := []aggstore.LostRecord{rec(0, "k1", 4), rec(1, "k1", 6), rec(2, "k2", 1)}
	for range 2 { // two aggregators
		if err := s.InsertLost(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	url := lostServer(t, s)
	code, _, body := fetch(t, url+"/v1/usage/lost?from=2026-11-27T00:00:00Z&to=2026-11-28T00:00:00Z&format=csv")
	want := "day,key_id,plan_id,node,reason,requests,admitted\n2026-11-27,k1,p1,edge1,spill-full,10,10\n2026-11-27,k2,p1,edge1,spill-full,1,1\n"
	if code != 200 || body != want {
		t.Errorf("%d %q, want %q", code, body, want)
	}
}

// The OpenAPI document describes /v1/usage/lost, and every parameter it
// names is accepted.
func TestLostUsageInOpenAPI(t *testing.T) {
	url := lostServer(t, &fakeLost{})
	_, _, body := fetch(t, url+"/openapi.json")
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct{ Name string }
			Responses  map[string]any
		}
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	op, ok := doc.Paths["/v1/usage/lost"]["get"]
	if !ok {
		t.Fatal("/v1/usage/lost missing")
	}
	if _, ok := op.Responses["501"]; !ok {
		t.Error("the 501 is not documented")
	}
	q := []string{}
	for _, p := range op.Parameters {
		v := map[string]string{"from": "2026-11-27T00:00:00Z", "to": "2026-11-28T00:00:00Z", "keyId": "k1", "planId": "p1", "format": "csv"}[p.Name]
		if v == "" {
			t.Errorf("parameter %s: no test value", p.Name)
		}
		q = append(q, p.Name+"="+v)
	}
	if code, _, body := fetch(t, url+"/v1/usage/lost?"+strings.Join(q, "&")); code != 200 {
		t.Errorf("every documented parameter: %d %s", code, body)
	}
}
