package reportapi

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

type fakeMinutes []usage.MinuteCount

// Report computes r over the rows in memory (usage.Aggregate, the
// reference the stores' queries are held to).
func (f fakeMinutes) Report(_ context.Context, r usage.Report, fn func(*usage.ReportRow) error) error {
	if err := r.Check(); err != nil {
		return err
	}
	for _, row := range usage.Aggregate(r, f) {
		if err := fn(&row); err != nil {
			return err
		}
	}
	return nil
}

func minute(s string) int64 {
	t, _ := time.Parse(time.RFC3339, s)
	return t.Unix() / 60
}

var testMinutes = fakeMinutes{
	{Minute: minute("2026-11-26T23:59:00Z"), KeyID: "k1", PlanID: "p1", APIID: "a", Stage: "prod", Method: "GET", Resource: "/items", Status: 200, Decision: schemas.DecisionAllowed, Requests: 3, BytesIn: 0, BytesOut: 300, LatencyMicrosSum: 3000},
	{Minute: minute("2026-11-27T10:00:00Z"), KeyID: "k1", PlanID: "p1", APIID: "a", Stage: "prod", Method: "GET", Resource: "/items", Status: 200, Decision: schemas.DecisionAllowed, Requests: 5, BytesOut: 500, LatencyMicrosSum: 5500},
	{Minute: minute("2026-11-27T10:01:00Z"), KeyID: "k1", PlanID: "p1", APIID: "a", Stage: "prod", Method: "POST", Resource: "/items", Status: 429, Decision: schemas.DecisionThrottled, Requests: 2, BytesOut: 62},
	{Minute: minute("2026-11-27T11:30:00Z"), KeyID: "k2", PlanID: "p1", APIID: "a", Stage: "prod", Method: "GET", Resource: "/items", Status: 200, Decision: schemas.DecisionAllowed, Requests: 7, BytesOut: 700},
	{Minute: minute("2026-11-27T11:31:00Z"), KeyID: "k2", PlanID: "p1", APIID: "a", Stage: "prod", Method: "GET", Resource: "/items", Status: 429, Decision: schemas.DecisionQuotaExceeded, Requests: 1, BytesOut: 28},
	{Minute: minute("2026-11-27T12:00:00Z"), APIID: "a", Stage: "prod", Method: "GET", Resource: "/items", Status: 403, Decision: schemas.DecisionForbidden, Requests: 4, BytesOut: 92},
}

func newNative(t *testing.T) string {
	t.Helper()
	m, err := catalog.NewManager(catalog.StateOf(&catalog.Catalog{
		APIs: []catalog.API{{ID: "a", Stages: []catalog.Stage{{Name: "prod", Upstream: "http://127.0.0.1:1"}},
			Resources: []catalog.Resource{{Path: "/items", Methods: map[string]catalog.Method{"GET": {APIKeyRequired: true}}}}}},
		UsagePlans: []catalog.UsagePlan{{ID: "p1", Name: "Free", Quota: &catalog.Quota{Limit: 6, Period: catalog.Day}}},
		APIKeys: []catalog.APIKey{{ID: "k1", Name: "acme", CustomerID: "acme-corp", ValueHash: catalog.HashKey("acmeacmeacmeacmeacme01")},
			{ID: "k2", Name: "widget", CustomerID: "widget-inc", ValueHash: catalog.HashKey("widgetwidgetwidget0001")}},
	}), memSaver{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Catalog: m, Minutes: testMinutes,
		Now: func() time.Time { return time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func fetch(t *testing.T, url string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+testCreds.Token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// A transport that does not decompress, to see what was sent.
	r, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var rd io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		rd = gz
	}
	b, _ := io.ReadAll(rd)
	return r.StatusCode, r.Header, string(b)
}

func TestUsageQueries(t *testing.T) {
	url := newNative(t)
	tests := []struct {
		name, query string
		want        string
	}{
		{"per day and decision", "from=2026-11-26T00:00:00Z&to=2026-11-28T00:00:00Z&group_by=decision",
			`{"from":"2026-11-26T00:00:00Z","to":"2026-11-28T00:00:00Z","granularity":"day","rows":[` +
				`{"bytes_in":0,"bytes_out":300,"decision":"admitted","latency_ms_sum":3,"requests":3,"time":"2026-11-26T00:00:00Z"},` +
				`{"bytes_in":0,"bytes_out":1200,"decision":"admitted","latency_ms_sum":5.5,"requests":12,"time":"2026-11-27T00:00:00Z"},` +
				`{"bytes_in":0,"bytes_out":92,"decision":"forbidden","latency_ms_sum":0,"requests":4,"time":"2026-11-27T00:00:00Z"},` +
				`{"bytes_in":0,"bytes_out":28,"decision":"quota_exceeded","latency_ms_sum":0,"requests":1,"time":"2026-11-27T00:00:00Z"},` +
				`{"bytes_in":0,"bytes_out":62,"decision":"throttled","latency_ms_sum":0,"requests":2,"time":"2026-11-27T00:00:00Z"}]}`},
		{"per hour for one key, by status", "from=2026-11-27T00:00:00Z&to=2026-11-28T00:00:00Z&granularity=hour&group_by=key,status&key=k1",
			`{"from":"2026-11-27T00:00:00Z","to":"2026-11-28T00:00:00Z","granularity":"hour","rows":[` +
				`{"bytes_in":0,"bytes_out":500,"key":"k1","latency_ms_sum":5.5,"requests":5,"status":200,"time":"2026-11-27T10:00:00Z"},` +
				`{"bytes_in":0,"bytes_out":62,"key":"k1","latency_ms_sum":0,"requests":2,"status":429,"time":"2026-11-27T10:00:00Z"}]}`},
		{"per month, no dimensions, to defaults to now", "from=2026-11-01T00:00:00Z&granularity=month",
			`{"from":"2026-11-01T00:00:00Z","to":"2026-11-28T00:00:00Z","granularity":"month","rows":[` +
				`{"bytes_in":0,"bytes_out":1682,"latency_ms_sum":8.5,"requests":22,"time":"2026-11-01T00:00:00Z"}]}`},
		{"minute range cuts rows", "from=2026-11-27T10:01:00Z&to=2026-11-27T11:31:00Z&granularity=minute&group_by=key",
			`{"from":"2026-11-27T10:01:00Z","to":"2026-11-27T11:31:00Z","granularity":"minute","rows":[` +
				`{"bytes_in":0,"bytes_out":62,"key":"k1","latency_ms_sum":0,"requests":2,"time":"2026-11-27T10:01:00Z"},` +
				`{"bytes_in":0,"bytes_out":700,"key":"k2","latency_ms_sum":0,"requests":7,"time":"2026-11-27T11:30:00Z"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := fetch(t, url+"/v1/usage?"+tt.query)
			if code != 200 || strings.TrimSpace(body) != tt.want {
				t.Errorf("%d\n got %s\nwant %s", code, body, tt.want)
			}
		})
	}
}

func TestUsageFormats(t *testing.T) {
	url := newNative(t)
	q := "/v1/usage?from=2026-11-27T00:00:00Z&to=2026-11-28T00:00:00Z&group_by=key,decision&plan=p1"
	_, h, body := fetch(t, url+q+"&format=csv")
	want := "time,key,decision,requests,bytes_in,bytes_out,latency_ms_sum\n" +
		"2026-11-27T00:00:00Z,k1,admitted,5,0,500,5.5\n" +
		"2026-11-27T00:00:00Z,k1,throttled,2,0,62,0\n" +
		"2026-11-27T00:00:00Z,k2,admitted,7,0,700,0\n" +
		"2026-11-27T00:00:00Z,k2,quota_exceeded,1,0,28,0\n"
	if body != want || h.Get("Content-Type") != "text/csv" {
		t.Errorf("csv:\n%s\nwant\n%s", body, want)
	}
	_, h, body = fetch(t, url+q, "Accept", "application/x-ndjson", "Accept-Encoding", "gzip")
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if h.Get("Content-Encoding") != "gzip" || len(lines) != 4 {
		t.Fatalf("ndjson+gzip: %v %q", h, body)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first["key"] != "k1" || first["requests"] != float64(5) {
		t.Errorf("first ndjson line %s", lines[0])
	}
}

func TestUsageBadParameters(t *testing.T) {
	url := newNative(t)
	for _, tt := range []struct{ query, want string }{
		{"", "from:"},
		{"from=yesterday", `from: \"yesterday\" is not an RFC 3339 time`},
		{"from=2026-11-27T00:00:00Z&to=2026-11-26T00:00:00Z", "to: must be after from"},
		{"from=2026-11-27T00:00:00Z&to=soon", "to:"},
		{"from=2026-11-27T00:00:00Z&granularity=week", `granularity: \"week\" is not one of minute, hour, day, month`},
		{"from=2026-11-27T00:00:00Z&group_by=key,color", `group_by: unknown dimension \"color\"`},
		{"from=2026-11-27T00:00:00Z&format=xml", `format: \"xml\" is not one of json, csv, ndjson`},
	} {
		code, _, body := fetch(t, url+"/v1/usage?"+tt.query)
		if code != 400 || !strings.Contains(body, tt.want) {
			t.Errorf("%q: %d %s, want %q", tt.query, code, body, tt.want)
		}
	}
	if code, _, body := fetch(t, url+"/v1/reports/billing?month=11-2026"); code != 400 || !strings.Contains(body, "month:") {
		t.Errorf("billing bad month: %d %s", code, body)
	}
	if code, _, body := fetch(t, url+"/v1/usage/top?from=2026-11-27T00:00:00Z&limit=0"); code != 400 || !strings.Contains(body, "limit:") {
		t.Errorf("top bad limit: %d %s", code, body)
	}
}

func TestTopAndBilling(t *testing.T) {
	url := newNative(t)
	_, _, body := fetch(t, url+"/v1/usage/top?from=2026-11-27T00:00:00Z&to=2026-11-28T00:00:00Z")
	want := `{"from":"2026-11-27T00:00:00Z","rows":[` +
		`{"key":"k2","name":"widget","customer_id":"widget-inc","plan":"p1","admitted":7,"throttled":0,"quota_exceeded":1},` +
		`{"key":"k1","name":"acme","customer_id":"acme-corp","plan":"p1","admitted":5,"throttled":2,"quota_exceeded":0}],"to":"2026-11-28T00:00:00Z"}`
	if strings.TrimSpace(body) != want {
		t.Errorf("top:\n got %s\nwant %s", body, want)
	}
	_, _, body = fetch(t, url+"/v1/reports/billing?month=2026-11&format=csv")
	// Free: 6 a day. k2 had 7 admitted on the 27th: 1 over.
	want = "key_id,key_name,customer_id,plan_id,plan_name,requests_admitted,quota_limit,quota_period,overage,throttled,rejected\n" +
		"k1,acme,acme-corp,p1,Free,8,6,DAY,0,2,0\n" +
		"k2,widget,widget-inc,p1,Free,7,6,DAY,1,0,1\n"
	if body != want {
		t.Errorf("billing:\n%s\nwant\n%s", body, want)
	}
}

// The OpenAPI document parses and describes every native endpoint the
// router serves.
func TestOpenAPI(t *testing.T) {
	url := newNative(t)
	code, _, body := fetch(t, url+"/openapi.json")
	var doc struct {
		OpenAPI string
		Paths   map[string]map[string]struct {
			Parameters []struct {
				Name, In string
				Required bool
				Schema   struct {
					Type, Format string
					Enum         []string
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &doc); code != 200 || err != nil {
		t.Fatalf("%d %v", code, err)
	}
	for _, p := range []string{"/v1/usage", "/v1/usage/top", "/v1/reports/billing"} {
		op, ok := doc.Paths[p]["get"]
		if !ok {
			t.Errorf("%s missing", p)
			continue
		}
		// Every documented parameter is accepted: the endpoint answers
		// 200 when all are given sensible values.
		q := []string{}
		for _, prm := range op.Parameters {
			v := map[string]string{"from": "2026-11-27T00:00:00Z", "to": "2026-11-28T00:00:00Z", "granularity": "hour",
				"group_by": "key", "format": "json", "limit": "5", "month": "2026-11",
				"key": "k1", "plan": "p1", "api": "a", "stage": "prod"}[prm.Name]
			if v == "" {
				v = "x"
			}
			q = append(q, prm.Name+"="+v)
		}
		if code, _, body := fetch(t, url+p+"?"+strings.Join(q, "&")); code != 200 {
			t.Errorf("%s with every documented parameter: %d %s", p, code, body)
		}
		// Each constrained parameter is really checked: a value outside
		// its enum, format or bounds is refused, naming the parameter.
		for i, prm := range op.Parameters {
			if len(prm.Schema.Enum) == 0 && prm.Schema.Format == "" && prm.Schema.Type != "integer" && prm.Name != "month" {
				continue
			}
			bad := append([]string{}, q...)
			bad[i] = prm.Name + "=not-valid"
			code, _, body := fetch(t, url+p+"?"+strings.Join(bad, "&"))
			if code != 400 || !strings.Contains(body, prm.Name+":") {
				t.Errorf("%s with a bad %s: %d %s", p, prm.Name, code, body)
			}
		}
	}
}

// A WEEK quota period across two months is charged to the month it ends
// in, counting its days in both.
func TestBillingWeekAcrossMonths(t *testing.T) {
	m, _ := catalog.NewManager(catalog.StateOf(&catalog.Catalog{
		UsagePlans: []catalog.UsagePlan{{ID: "p1", Name: "Weekly", Quota: &catalog.Quota{Limit: 10, Period: catalog.Week}}},
		APIKeys:    []catalog.APIKey{{ID: "k1", Name: "acme", ValueHash: catalog.HashKey("acmeacmeacmeacmeacme01")}},
	}), memSaver{}, nil)
	// Monday 2026-11-30 to Sunday 2026-12-06: 6 requests in November, 6 in December.
	rows := fakeMinutes{
		{Minute: minute("2026-11-30T12:00:00Z"), KeyID: "k1", PlanID: "p1", Decision: schemas.DecisionAllowed, Requests: 6},
		{Minute: minute("2026-12-02T12:00:00Z"), KeyID: "k1", PlanID: "p1", Decision: schemas.DecisionAllowed, Requests: 6},
	}
	h, _ := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Catalog: m, Minutes: rows})
	srv := httptest.NewServer(h)
	defer srv.Close()
	_, _, nov := fetch(t, srv.URL+"/v1/reports/billing?month=2026-11&format=csv")
	_, _, dec := fetch(t, srv.URL+"/v1/reports/billing?month=2026-12&format=csv")
	if !strings.HasSuffix(nov, "k1,acme,,p1,Weekly,6,10,WEEK,0,0,0\n") {
		t.Errorf("November (the week has not ended):\n%s", nov)
	}
	if !strings.HasSuffix(dec, "k1,acme,,p1,Weekly,6,10,WEEK,2,0,0\n") {
		t.Errorf("December (12 in the week, limit 10):\n%s", dec)
	}
}

// failingMinutes yields its rows, then fails, as a store that dies mid-scan.
type failingMinutes struct{ fakeMinutes }

func (f failingMinutes) Report(ctx context.Context, r usage.Report, fn func(*usage.ReportRow) error) error {
	if err := f.fakeMinutes.Report(ctx, r, fn); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// Rows leave as their bucket completes; a store failure mid-way leaves
// the body unterminated rather than pretending the result is whole.
func TestUsageStreamsAndCutsShortOnFailure(t *testing.T) {
	m, _ := catalog.NewManager(catalog.StateOf(&catalog.Catalog{}), memSaver{}, nil)
	h, _ := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Catalog: m, Minutes: failingMinutes{testMinutes},
		Now: func() time.Time { return time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC) }})
	srv := httptest.NewServer(h)
	defer srv.Close()
	code, _, body := fetch(t, srv.URL+"/v1/usage?from=2026-11-26T00:00:00Z&group_by=key")
	if code != 200 || !strings.Contains(body, `"time":"2026-11-26T00:00:00Z"`) || strings.HasSuffix(strings.TrimSpace(body), "]}") {
		t.Errorf("%d %q: want the completed buckets and no closing ]}", code, body)
	}
	var v any
	if json.Unmarshal([]byte(body), &v) == nil {
		t.Error("a cut-short result parses as complete JSON")
	}
}
