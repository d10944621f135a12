package reportapi

import (
	"bufio"
	"cmp"
	"compress/gzip"
	"context"
	_ "embed"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/usage"
)

//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPI)
}

// MinuteStore computes reports: each one query of the store over the
// coarsest rollup that answers it (see usage.Report), streamed a row at a
// time; the answer is the per-minute rollup's sums.
type MinuteStore interface {
	Report(ctx context.Context, r usage.Report, f func(*usage.ReportRow) error) error
}

// dimensions of /v1/usage's group_by, in output order.
var dimensions = usage.Dimensions

// earliest and latest bound the times a native report may name: the days
// every store holds (usage.MinDay to usage.MaxDay, 1970-2105).
var (
	earliest = time.Unix(usage.MinDay*86400, 0).UTC()
	latest   = time.Unix((usage.MaxDay+1)*86400, 0).UTC()
)

// The longest range each report reads at once. Every native report is
// one aggregating query of the store over the rollups of its range
// (usage.Report: grouped, summed and ordered by the store, filters
// in its WHERE), streamed out row by row; what a request holds is one row
// (/v1/usage) or one row per key and plan (top, billing), but the rows
// the store reads, the time it takes and the size of the answer grow with
// the range. So:
//   - minute: 1 day, 1,440 buckets per series;
//   - hour: 31 days, 744 buckets, a whole month;
//   - day and month, and /v1/usage/top: 92 days, the longest calendar
//     quarter (so any quarter fits), and of the order of the 90 days AWS
//     keeps for GetUsage: at most a quarter of minute rows per request;
//   - billing reads one month, and the 7 days before it (a WEEK quota
//     period that ends in the month), by construction.
var maxSpan = map[string]time.Duration{
	"minute": 24 * time.Hour,
	"hour":   31 * 24 * time.Hour,
	"day":    92 * 24 * time.Hour,
	"month":  92 * 24 * time.Hour,
}

// maxTopSpan bounds /v1/usage/top's range (see maxSpan).
const maxTopSpan = 92 * 24 * time.Hour

// checkSpan refuses a range longer than max; what names the report.
func checkSpan(u usageQuery, max time.Duration, what string) *apiError {
	if d := u.to.Sub(u.from); d > max {
		return badRequest(fmt.Sprintf("to: the range from %s to %s is %s; %s reads at most %s at once",
			u.from.UTC().Format(time.RFC3339), u.to.UTC().Format(time.RFC3339), days(d), what, days(max)))
	}
	return nil
}

// days formats d in days (and hours, when not whole).
func days(d time.Duration) string {
	n, h := int64(d/(24*time.Hour)), int64(d%(24*time.Hour)/time.Hour)
	s := strconv.FormatInt(n, 10) + " day"
	if n != 1 {
		s += "s"
	}
	if h != 0 {
		s += " " + strconv.FormatInt(h, 10) + "h"
	}
	return s
}

// resolveFilters checks the key, plan, api and stage filters against the
// catalog: a key or plan is named by id or name (the filter becomes the
// id); one the catalog does not know is a 404 that names it, rather than
// an empty report. (A deleted key's or plan's rows still show without
// the filter.)
func resolveFilters(u *usageQuery, c *catalog.State) *apiError {
	notFound := func(msg string) *apiError {
		return &apiError{status: 404, errType: "NotFoundException", msg: msg}
	}
	if v, ok := u.filters["key"]; ok {
		k := c.KeyByNameOrID(v)
		if k == nil {
			return notFound(fmt.Sprintf("key: no API key has the id or name %q", v))
		}
		u.filters["key"] = k.ID
	}
	if v, ok := u.filters["plan"]; ok {
		p := c.PlanByNameOrID(v)
		if p == nil {
			return notFound(fmt.Sprintf("plan: no usage plan has the id or name %q", v))
		}
		u.filters["plan"] = p.ID
	}
	apiID, hasAPI := u.filters["api"]
	if hasAPI && c.API(apiID) == nil {
		return notFound(fmt.Sprintf("api: no API has the id %q", apiID))
	}
	if st, ok := u.filters["stage"]; ok {
		found := false
		for _, a := range c.APIs() {
			if hasAPI && a.ID != apiID {
				continue
			}
			found = found || slices.ContainsFunc(a.Stages, func(s catalog.Stage) bool { return s.Name == st })
		}
		if !found {
			if hasAPI {
				return notFound(fmt.Sprintf("stage: API %q has no stage %q", apiID, st))
			}
			return notFound(fmt.Sprintf("stage: no API has a stage %q", st))
		}
	}
	return nil
}

// usageQuery is a parsed /v1/usage request.
type usageQuery struct {
	from, to    time.Time
	granularity string
	groupBy     []string
	filters     map[string]string // dimension → value
}

func parseUsageQuery(q map[string][]string, now time.Time) (usageQuery, *apiError) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	u, perr := parseRange(get, now)
	if perr != nil {
		return u, perr
	}
	u.granularity = cmp.Or(get("granularity"), "day")
	if !slices.Contains([]string{"minute", "hour", "day", "month"}, u.granularity) {
		return u, badRequest(fmt.Sprintf("granularity: %q is not one of minute, hour, day, month", u.granularity))
	}
	if s := get("group_by"); s != "" {
		for _, d := range strings.Split(s, ",") {
			if !slices.Contains(dimensions, d) {
				return u, badRequest(fmt.Sprintf("group_by: unknown dimension %q; use %s", d, strings.Join(dimensions, ", ")))
			}
			if !slices.Contains(u.groupBy, d) {
				u.groupBy = append(u.groupBy, d)
			}
		}
	}
	u.filters = map[string]string{}
	for _, d := range []string{"key", "plan", "api", "stage"} {
		if v := get(d); v != "" {
			u.filters[d] = v
		}
	}
	return u, nil
}

// parseRange parses the range of every native report: from (required)
// and to (default now), RFC 3339 times within earliest ... latest, to
// after from. The reports' bounds on its length are checkSpan's.
func parseRange(get func(string) string, now time.Time) (usageQuery, *apiError) {
	var u usageQuery
	var err error
	if u.from, err = time.Parse(time.RFC3339, get("from")); err != nil {
		return u, badRequest(fmt.Sprintf("from: %q is not an RFC 3339 time such as 2026-11-01T00:00:00Z", get("from")))
	}
	u.to = now
	if s := get("to"); s != "" {
		if u.to, err = time.Parse(time.RFC3339, s); err != nil {
			return u, badRequest(fmt.Sprintf("to: %q is not an RFC 3339 time such as 2026-11-02T00:00:00Z", s))
		}
	}
	for _, t := range []struct {
		name string
		t    time.Time
	}{{"from", u.from}, {"to", u.to}} {
		if t.t.Before(earliest) || t.t.After(latest) {
			return u, badRequest(fmt.Sprintf("%s: %s is outside %s ... %s", t.name, t.t.Format(time.RFC3339),
				earliest.Format(time.RFC3339), latest.Format(time.RFC3339)))
		}
	}
	if !u.to.After(u.from) {
		return u, badRequest("to: must be after from")
	}
	return u, nil
}

// report is the store's report of the query: its minutes, buckets,
// grouping and filters.
func (u *usageQuery) report(groupBy []string) usage.Report {
	return usage.Report{FromMinute: u.from.Unix() / 60, ToMinute: (u.to.Unix() + 59) / 60,
		Granularity: u.granularity, GroupBy: groupBy, Filters: u.filters}
}

// usageRow is one row of /v1/usage.
type usageRow struct {
	Time                        time.Time
	Dims                        []string // values of the group_by dimensions
	Requests, BytesIn, BytesOut int64
	LatencyMicrosSum            int64
}

type native struct {
	minutes MinuteStore
	cat     CatalogStore
	now     func() time.Time
}

// outputFormat picks json, csv or ndjson from format= or Accept.
func outputFormat(r *http.Request) (string, *apiError) {
	f := r.URL.Query().Get("format")
	if f == "" {
		accept := r.Header.Get("Accept")
		switch {
		case strings.Contains(accept, "text/csv"):
			f = "csv"
		case strings.Contains(accept, "application/x-ndjson"):
			f = "ndjson"
		default:
			f = "json"
		}
	}
	if f != "json" && f != "csv" && f != "ndjson" {
		return "", badRequest(fmt.Sprintf("format: %q is not one of json, csv, ndjson", f))
	}
	return f, nil
}

// compressed wraps w in gzip when the client accepts it.
func compressed(w http.ResponseWriter, r *http.Request) (io.Writer, func()) {
	if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		return w, func() {}
	}
	w.Header().Set("Content-Encoding", "gzip")
	w.Header().Add("Vary", "Accept-Encoding")
	gz := gzip.NewWriter(w)
	return gz, func() { gz.Close() }
}

func (n *native) usage(w http.ResponseWriter, r *http.Request) {
	u, perr := parseUsageQuery(r.URL.Query(), n.now())
	if perr == nil {
		perr = checkSpan(u, maxSpan[u.granularity], "granularity="+u.granularity)
	}
	if perr == nil {
		perr = resolveFilters(&u, n.cat.State())
	}
	if perr != nil {
		perr.write(w)
		return
	}
	format, perr := outputFormat(r)
	if perr != nil {
		perr.write(w)
		return
	}
	columns := append(append([]string{"time"}, u.groupBy...), "requests", "bytes_in", "bytes_out", "latency_ms_sum")
	record := func(row *usageRow) []string {
		rec := append([]string{row.Time.Format(time.RFC3339)}, row.Dims...)
		return append(rec, strconv.FormatInt(row.Requests, 10), strconv.FormatInt(row.BytesIn, 10),
			strconv.FormatInt(row.BytesOut, 10), strconv.FormatFloat(float64(row.LatencyMicrosSum)/1000, 'f', -1, 64))
	}
	enc := newRowEncoder(u.groupBy) // a JSON object per row, keys sorted
	switch format {
	case "csv":
		w.Header().Set("Content-Type", "text/csv")
	case "ndjson":
		w.Header().Set("Content-Type", "application/x-ndjson")
	default:
		w.Header().Set("Content-Type", "application/json")
	}
	bw, done := compressed(w, r)
	defer done()
	// Rows are written as each time bucket completes: the result is
	// never held whole. A store error after the first bytes can only cut
	// the response short.
	var emit func(*usageRow) error
	var finish func()
	switch format {
	case "csv":
		cw := csv.NewWriter(bw)
		cw.Write(columns)
		emit = func(row *usageRow) error { return cw.Write(record(row)) }
		finish = cw.Flush
	case "ndjson":
		emit = func(row *usageRow) error {
			_, err := bw.Write(append(enc.encode(row), '\n'))
			return err
		}
		finish = func() {}
	default:
		fmt.Fprintf(bw, `{"from":%q,"to":%q,"granularity":%q,"rows":[`, u.from.UTC().Format(time.RFC3339), u.to.UTC().Format(time.RFC3339), u.granularity)
		written := 0
		emit = func(row *usageRow) error {
			if written > 0 {
				io.WriteString(bw, ",")
			}
			written++
			_, err := bw.Write(enc.encode(row))
			return err
		}
		finish = func() { io.WriteString(bw, "]}\n") }
	}
	// The store groups, sums and orders; rows are written as they come.
	row := usageRow{}
	err := n.minutes.Report(r.Context(), u.report(u.groupBy), func(rr *usage.ReportRow) error {
		row = usageRow{Time: time.Unix(rr.Bucket*60, 0).UTC(), Dims: rr.Dims, Requests: rr.Requests, BytesIn: rr.BytesIn,
			BytesOut: rr.BytesOut, LatencyMicrosSum: rr.LatencyMicrosSum}
		return emit(&row)
	})
	if err != nil {
		return // the status is sent; an unfinished body tells the client
	}
	finish()
}

// TopStore ranks keys from tables kept as events arrive, over whole UTC
// days (usage/sqlitestore): a plan's heaviest keys of its quota period,
// or every plan's of 30 days, without every key's rows of every decision
// summed and sorted. Other ranges, and other filters than the plan, go
// through Report.
type TopStore interface {
	TopKeys(ctx context.Context, fromDay, toDay int64, planID string, limit int, f func(*usage.KeyCounts) error) error
}

// wholeDays reports whether u's range is whole UTC days, and which (the
// first and the last).
func wholeDays(u usageQuery) (int64, int64, bool) {
	from, to := u.from.UTC(), u.to.UTC()
	if !from.Equal(from.Truncate(24*time.Hour)) || !to.Equal(to.Truncate(24*time.Hour)) || !to.After(from) {
		return 0, 0, false
	}
	return utc.Day(from.UnixNano()), utc.Day(to.UnixNano()) - 1, true
}

// planOnly returns the plan filters narrow to (or "" for none), and
// whether they name nothing else.
func planOnly(filters map[string]string) (string, bool) {
	for d := range filters {
		if d != "plan" {
			return "", false
		}
	}
	return filters["plan"], true
}

// consumer is one key under one plan in /v1/usage/top.
type consumer struct {
	Key        string `json:"key"`
	Name       string `json:"name"`
	CustomerID string `json:"customer_id"`
	Plan       string `json:"plan"`
	Admitted   int64  `json:"admitted"`
	Throttled  int64  `json:"throttled"`
	Limited    int64  `json:"quota_exceeded"`
}

// topGroups are the dimensions of the reports top and billing read.
var topGroups = []string{"key", "plan", "decision"}

// top answers /v1/usage/top: the keys with the most admitted requests in
// [from, to), optionally within one plan.
func (n *native) top(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	u, perr := parseUsageQuery(q, n.now())
	if perr == nil {
		perr = checkSpan(u, maxTopSpan, "/v1/usage/top")
	}
	cat := n.cat.State()
	if perr == nil {
		perr = resolveFilters(&u, cat)
	}
	if perr != nil {
		perr.write(w)
		return
	}
	limit := 10
	if s := q.Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > 1000 {
			badRequest(fmt.Sprintf("limit: %q is not an integer from 1 to 1000", s)).write(w)
			return
		}
		limit = v
	}
	if ts, ok := n.minutes.(TopStore); ok {
		if fromDay, toDay, ok := wholeDays(u); ok {
			if only, ok := planOnly(u.filters); ok {
				list := []*consumer{}
				err := ts.TopKeys(r.Context(), fromDay, toDay, only, limit, func(kc *usage.KeyCounts) error {
					c := &consumer{Key: kc.KeyID, Plan: kc.PlanID, Admitted: kc.Admitted, Throttled: kc.Throttled, Limited: kc.QuotaExceeded}
					if k := cat.Key(c.Key); k != nil {
						c.Name, c.CustomerID = k.Name, k.CustomerID
					}
					list = append(list, c)
					return nil
				})
				if err != nil {
					internalError("read usage: ", err).write(w)
					return
				}
				writeJSON(w, http.StatusOK, map[string]any{"from": u.from.UTC().Format(time.RFC3339), "to": u.to.UTC().Format(time.RFC3339),
					"rows": list})
				return
			}
		}
	}
	// Summed by the store per key, plan and decision, by month whatever
	// granularity= the request named: the rows are bounded by the
	// consumers, not by the minutes read. One query: on ClickHouse, a
	// report of one decision at a time, four at once, took 461 ms where
	// this one took 274 (a month of 10,000 keys, make bench-history); the
	// embedded store answers whole days from its tables above.
	rep := u.report(topGroups)
	rep.Granularity = "month"
	byKey := map[[2]string]*consumer{} // a key under a plan, with requests of any decision
	err := n.minutes.Report(r.Context(), rep, func(row *usage.ReportRow) error {
		id := [2]string{row.Dims[0], row.Dims[1]}
		if id[0] == "" || id[1] == "" {
			return nil
		}
		c := byKey[id]
		if c == nil {
			c = &consumer{Key: id[0], Plan: id[1]}
			byKey[id] = c
		}
		switch row.Dims[2] {
		case "admitted":
			c.Admitted += row.Requests
		case "throttled":
			c.Throttled += row.Requests
		case "quota_exceeded":
			c.Limited += row.Requests
		}
		return nil
	})
	if err != nil {
		internalError("read usage: ", err).write(w)
		return
	}
	list := make([]*consumer, 0, len(byKey))
	for _, c := range byKey {
		list = append(list, c)
	}
	slices.SortFunc(list, func(a, b *consumer) int {
		return cmp.Or(cmp.Compare(b.Admitted, a.Admitted), strings.Compare(a.Key, b.Key), strings.Compare(a.Plan, b.Plan))
	})
	list = list[:min(limit, len(list))]
	for _, c := range list {
		if k := cat.Key(c.Key); k != nil {
			c.Name, c.CustomerID = k.Name, k.CustomerID
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": u.from.UTC().Format(time.RFC3339), "to": u.to.UTC().Format(time.RFC3339),
		"rows": list})
}

// billingRow is one key under one plan in a month.
type billingRow struct {
	KeyID       string `json:"key_id"`
	KeyName     string `json:"key_name"`
	CustomerID  string `json:"customer_id"`
	PlanID      string `json:"plan_id"`
	PlanName    string `json:"plan_name"`
	Admitted    int64  `json:"requests_admitted"`
	QuotaLimit  int64  `json:"quota_limit"`
	QuotaPeriod string `json:"quota_period"`
	Overage     int64  `json:"overage"`
	Throttled   int64  `json:"throttled"`
	Rejected    int64  `json:"rejected"` // refused for the quota (Limit Exceeded)
}

// billing answers /v1/reports/billing?month=YYYY-MM: per key and plan,
// the month's admitted requests, the quota, overage (requests admitted
// beyond the quota in each quota period that ends in the month, whole
// periods counted, so a week across two months is charged once, to the
// month it ends in; only an UpdateUsage that raised what remained
// produces any), throttled and quota-rejected requests.
func (n *native) billing(w http.ResponseWriter, r *http.Request) {
	ms := r.URL.Query().Get("month")
	month, err := time.Parse("2006-01", ms)
	if err != nil {
		badRequest(fmt.Sprintf("month: %q is not a month such as 2026-11", ms)).write(w)
		return
	}
	end := month.AddDate(0, 1, 0)
	if month.Before(earliest) || end.After(latest) {
		badRequest(fmt.Sprintf("month: %s is outside %s ... %s", ms, earliest.Format("2006-01"), latest.AddDate(0, -1, 0).Format("2006-01"))).write(w)
		return
	}
	format, perr := outputFormat(r)
	if perr != nil {
		perr.write(w)
		return
	}
	// A WEEK period that ends in this month may start in the previous
	// one: read from a week before, count in the month only, and charge
	// overage to the month in which a period ends.
	readFrom := month.AddDate(0, 0, -7)
	b := newBill(n.cat.State(), month)
	read := func() error { return b.read(r.Context(), n.minutes, readFrom, end, maxOverageKeys) }
	if s, ok := n.minutes.(BillingStore); ok {
		read = func() error {
			return s.ReadBilling(r.Context(), func(t usage.BillingTables) error { return b.readTables(r.Context(), t, readFrom, end) })
		}
	}
	if err := read(); err != nil {
		internalError("read usage: ", err).write(w)
		return
	}
	list := b.rows(end)
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv")
		cw := csv.NewWriter(w)
		cw.Write([]string{"key_id", "key_name", "customer_id", "plan_id", "plan_name", "requests_admitted", "quota_limit", "quota_period", "overage", "throttled", "rejected"})
		for _, b := range list {
			cw.Write([]string{b.KeyID, b.KeyName, b.CustomerID, b.PlanID, b.PlanName, strconv.FormatInt(b.Admitted, 10),
				strconv.FormatInt(b.QuotaLimit, 10), b.QuotaPeriod, strconv.FormatInt(b.Overage, 10), strconv.FormatInt(b.Throttled, 10), strconv.FormatInt(b.Rejected, 10)})
		}
		cw.Flush()
		return
	}
	// One row at a time: the list is held once, not again as its JSON.
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `{"month":%q,"rows":[`, month.Format("2006-01"))
	for i, b := range list {
		if i > 0 {
			bw.WriteByte(',')
		}
		row, _ := json.Marshal(b)
		bw.Write(row)
	}
	bw.WriteString("]}\n")
	bw.Flush()
}

// Bounds of billing's reads for overage (bill.read): per plan, up to
// maxOverageKeys keys' days are read one key at a time, more in one
// report of the plan; past maxOveragePlans plans, every plan's days in
// one report.
const (
	maxOverageKeys  = 64
	maxOveragePlans = 16
)

func newBill(cat *catalog.State, month time.Time) *bill {
	return &bill{cat: cat, month: month, out: map[[2]string]*billingRow{}, perPeriod: map[[2]string]map[int64]int64{}}
}

// read sums the month's usage, reading from readFrom (a week before it,
// for a WEEK period that ends in it) to end. Its reports are separate
// queries: on a store with no snapshot across them (ClickHouse), usage
// stored between them may show in a bill's overage and not yet in its
// totals; the embedded store's bills read one snapshot (readTables).
//
// Totals need a row per key, plan and decision; only overage needs the
// quota periods, and the store sums the range by month first (a few rows
// per key: a month of 1,000 keys is 4,000 rows where its days are
// 62,000). That gives the totals, and the MONTH periods whole. A DAY or
// WEEK period can hold overage only for a key that used more than its
// plan's smallest limit over the whole range (no period holds more than
// the range); for those keys the store sums days: one report per key
// when a plan has few of them, else one report of the plan, which for a
// DAY plan keeps only the days over its smallest limit (Report.Over), so
// what comes back is the days that may hold overage. Past
// maxOveragePlans plans with such keys, one report of every plan's days.
func (b *bill) read(ctx context.Context, m MinuteStore, readFrom, end time.Time, overageKeys int) error {
	from, to := readFrom.Unix()/60, end.Unix()/60
	used := map[[2]string]int64{} // admitted over [readFrom, end), per key and plan
	err := m.Report(ctx, usage.Report{FromMinute: from, ToMinute: to, Granularity: "month", GroupBy: topGroups}, func(r *usage.ReportRow) error {
		key, plan, decision := r.Dims[0], r.Dims[1], r.Dims[2]
		if key == "" || plan == "" {
			return nil
		}
		if decision == "admitted" {
			used[[2]string{key, plan}] += r.Requests
		}
		if r.Bucket >= b.month.Unix()/60 {
			b.addTotals(r)
		}
		if p := b.cat.Plan(plan); p != nil && p.Quota != nil && p.Quota.Period == catalog.Month {
			return b.addPeriods(r) // a month bucket is the MONTH period
		}
		return nil
	})
	if err != nil {
		return err
	}
	suspects := map[string][]string{} // plan → keys that may have overage in a DAY or WEEK period
	for id, n := range used {
		if p := b.cat.Plan(id[1]); p != nil && p.Quota != nil && p.Quota.Period != catalog.Month && n > smallestLimit(p.Quota) {
			suspects[id[1]] = append(suspects[id[1]], id[0])
		}
	}
	days := func(r *usage.ReportRow) error {
		if p := b.cat.Plan(r.Dims[1]); p != nil && p.Quota != nil && p.Quota.Period != catalog.Month {
			return b.addPeriods(r)
		}
		return nil
	}
	day := func(f map[string]string, over int64) usage.Report {
		return usage.Report{FromMinute: from, ToMinute: to, Granularity: "day", GroupBy: topGroups, Filters: f, Over: over}
	}
	if len(suspects) > maxOveragePlans {
		return m.Report(ctx, day(nil, 0), days)
	}
	for _, plan := range slices.Sorted(maps.Keys(suspects)) {
		keys := suspects[plan]
		if len(keys) > overageKeys {
			var over int64
			if q := b.cat.Plan(plan).Quota; q.Period == catalog.Day {
				over = smallestLimit(q)
			}
			if err := m.Report(ctx, day(map[string]string{"plan": plan}, over), days); err != nil {
				return err
			}
			continue
		}
		slices.Sort(keys)
		for _, key := range keys {
			if err := m.Report(ctx, day(map[string]string{"key": key, "plan": plan}, 0), days); err != nil {
				return err
			}
		}
	}
	return nil
}

// BillingStore gives a bill its tables, all of one state of the store
// (a bill is several reads, and batches arrive between them: its totals
// and its overage must agree). MinuteStores that are not are read
// through Report (bill.read).
type BillingStore interface {
	ReadBilling(ctx context.Context, f func(usage.BillingTables) error) error
}

// maxWeekSuspects bounds the keys of WEEK plans whose days readTables asks
// for by id; past it, it reads every key's days.
const maxWeekSuspects = 1000

// readTables is read from a BillingStore: the month's totals, and its
// MONTH periods, from its month rows; the previous month's rows bound
// what a key used in the week before the month; DAY periods from the days
// over the smallest limit of any DAY plan (one scan that returns only
// those); WEEK periods from the days of the keys that used more than
// their plan's smallest limit over both months.
func (b *bill) readTables(ctx context.Context, s usage.BillingTables, readFrom, end time.Time) error {
	month := b.month.Unix() / 60
	used := map[[2]string]int64{}
	err := s.KeyMonths(ctx, month, func(km *usage.KeyMonth) error {
		b.addTotal(km.KeyID, km.PlanID, "admitted", km.Admitted)
		b.addTotal(km.KeyID, km.PlanID, "throttled", km.Throttled)
		b.addTotal(km.KeyID, km.PlanID, "quota_exceeded", km.QuotaExceeded)
		used[[2]string{km.KeyID, km.PlanID}] += km.Admitted
		if p := b.cat.Plan(km.PlanID); p != nil && p.Quota != nil && p.Quota.Period == catalog.Month {
			b.addPeriod(km.KeyID, km.PlanID, month, km.Admitted)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if prev := usage.BucketOf(readFrom.Unix()/60, "month"); prev < month {
		err := s.KeyMonths(ctx, prev, func(km *usage.KeyMonth) error {
			used[[2]string{km.KeyID, km.PlanID}] += km.Admitted
			return nil
		})
		if err != nil {
			return err
		}
	}
	fromDay, toDay := utc.Day(readFrom.UnixNano()), utc.Day(end.UnixNano())-1
	var dayOver int64 = math.MaxInt64
	b.cat.Plans("", func(p *catalog.UsagePlan) bool {
		if p.Quota != nil && p.Quota.Period == catalog.Day {
			dayOver = min(dayOver, smallestLimit(p.Quota))
		}
		return true
	})
	if dayOver != math.MaxInt64 {
		err := s.DailyAdmitted(ctx, fromDay, toDay, nil, dayOver, func(day int64, plan, key string, n int64) error {
			if p := b.cat.Plan(plan); p != nil && p.Quota != nil && p.Quota.Period == catalog.Day && n > smallestLimit(p.Quota) {
				b.addPeriod(key, plan, day*1440, n)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	var week []string
	for id, n := range used {
		if p := b.cat.Plan(id[1]); p != nil && p.Quota != nil && p.Quota.Period == catalog.Week && n > smallestLimit(p.Quota) {
			week = append(week, id[0])
		}
	}
	if len(week) == 0 {
		return nil
	}
	slices.Sort(week)
	week = slices.Compact(week)
	if len(week) > maxWeekSuspects {
		week = nil // every key's days
	}
	return s.DailyAdmitted(ctx, fromDay, toDay, week, 0, func(day int64, plan, key string, n int64) error {
		if p := b.cat.Plan(plan); p != nil && p.Quota != nil && p.Quota.Period == catalog.Week {
			if week == nil && used[[2]string{key, plan}] <= smallestLimit(p.Quota) {
				return nil
			}
			b.addPeriod(key, plan, day*1440, n)
		}
		return nil
	})
}

// smallestLimit is the least a quota allows in a period: its limit, or
// less the offset in the plan's first period.
func smallestLimit(q *catalog.Quota) int64 {
	return min(q.Limit, max(q.Limit-q.Offset, 0))
}

// bill sums a month's report rows (per day, key, plan and decision) per
// key and plan as they stream: it holds one billingRow per (key, plan)
// and one count per quota period of each, whatever the range.
type bill struct {
	cat       *catalog.State
	month     time.Time
	out       map[[2]string]*billingRow
	perPeriod map[[2]string]map[int64]int64 // admitted per quota period index
}

// addTotals sums a row of the month into its key's and plan's totals.
func (b *bill) addTotals(r *usage.ReportRow) {
	b.addTotal(r.Dims[0], r.Dims[1], r.Dims[2], r.Requests)
}

// addTotal adds n requests of a decision to a key's and plan's totals.
func (b *bill) addTotal(key, plan, decision string, n int64) {
	if key == "" || plan == "" {
		return
	}
	id := [2]string{key, plan}
	row := b.out[id]
	if row == nil {
		row = &billingRow{KeyID: key, PlanID: plan}
		if k := b.cat.Key(key); k != nil {
			row.KeyName, row.CustomerID = k.Name, k.CustomerID
		}
		if p := b.cat.Plan(plan); p != nil {
			row.PlanName = p.Name
			if p.Quota != nil {
				row.QuotaLimit, row.QuotaPeriod = p.Quota.Limit, string(p.Quota.Period)
			}
		}
		b.out[id] = row
	}
	switch decision {
	case "admitted":
		row.Admitted += n
	case "throttled":
		row.Throttled += n
	case "quota_exceeded":
		row.Rejected += n
	}
}

// addPeriods sums a day's admitted requests into its quota period's,
// for the periods that end in the month or after it (a day before the
// month counts only toward a period it shares with the month).
func (b *bill) addPeriods(r *usage.ReportRow) error {
	if r.Dims[2] == "admitted" {
		b.addPeriod(r.Dims[0], r.Dims[1], r.Bucket, r.Requests)
	}
	return nil
}

// addPeriod adds n admitted requests of the bucket starting at minute
// (a day, or a month for a MONTH plan) to its quota period's.
func (b *bill) addPeriod(key, plan string, minute, n int64) {
	if key == "" || plan == "" {
		return
	}
	p := b.cat.Plan(plan)
	if p == nil || p.Quota == nil {
		return
	}
	id := [2]string{key, plan}
	idx := p.Quota.Period.Index(minute * 60e9)
	if minute < b.month.Unix()/60 && p.Quota.Period.Start(idx+1) <= b.month.UnixNano() {
		return
	}
	if b.perPeriod[id] == nil {
		b.perPeriod[id] = map[int64]int64{}
	}
	b.perPeriod[id][idx] += n
}

// rows returns the month's rows with their overage (of the quota periods
// ending by end), by customer, key and plan.
func (b *bill) rows(end time.Time) []*billingRow {
	list := make([]*billingRow, 0, len(b.out))
	for id, row := range b.out {
		if p := b.cat.Plan(row.PlanID); p != nil && p.Quota != nil {
			for idx, used := range b.perPeriod[id] {
				if periodEnd := p.Quota.Period.Start(idx + 1); periodEnd <= end.UnixNano() {
					row.Overage += max(used-p.Quota.LimitAt(idx, p.CreatedDate), 0)
				}
			}
		}
		list = append(list, row)
	}
	slices.SortFunc(list, func(a, b *billingRow) int {
		return cmp.Or(strings.Compare(a.CustomerID, b.CustomerID), strings.Compare(a.KeyID, b.KeyID), strings.Compare(a.PlanID, b.PlanID))
	})
	return list
}
