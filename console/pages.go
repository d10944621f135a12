package console

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/tollgate/tollgate/catalog"
)

// pageSize is the rows of a keys table page: GetUsage's page, and one
// GetApiKey each for the names, so a page costs the same at 100 keys in
// a plan as at 1,000,000.
const pageSize = 50

// timeRange is the overview's range: a preset or a custom span of days,
// with the granularity that draws it in tens to a couple of hundred
// bars.
type timeRange struct {
	Name        string
	From, To    time.Time
	Granularity string
	// FromDate and ToDate fill the custom range's inputs (inclusive
	// days).
	FromDate, ToDate string
}

var presets = []struct {
	Name, Label string
	Span        time.Duration
	Granularity string
}{
	{"1h", "Last hour", time.Hour, "minute"},
	{"24h", "Last day", 24 * time.Hour, "hour"},
	{"7d", "Last 7 days", 7 * 24 * time.Hour, "hour"},
	{"30d", "Last 30 days", 30 * 24 * time.Hour, "day"},
}

// maxCustomDays is the longest custom range: the longest the usage API
// sums at once (a calendar quarter).
const maxCustomDays = 92

func parseRange(q url.Values, now time.Time) (timeRange, error) {
	name := q.Get("range")
	if name == "" {
		name = "24h"
	}
	now = now.UTC()
	for _, p := range presets {
		if p.Name == name {
			// Whole buckets, the last one the current (nothing is
			// stored past now): the store answers from its hour and
			// day rollups, which hold whole hours and days; ranges of
			// days are whole days, so that the top consumers read the
			// day rollup too.
			unit := p.Granularity
			if p.Span >= 7*24*time.Hour {
				unit = "day"
			}
			step, _ := stepOf(unit)
			to := truncate(now, unit).Add(step)
			from := to.Add(-p.Span)
			return timeRange{Name: name, From: from, To: to, Granularity: p.Granularity,
				FromDate: from.Format("2006-01-02"), ToDate: to.Add(-time.Nanosecond).Format("2006-01-02")}, nil
		}
	}
	if name != "custom" {
		return timeRange{}, fmt.Errorf("range: %q is not one of 1h, 24h, 7d, 30d, custom", name)
	}
	from, err := time.Parse("2006-01-02", q.Get("from"))
	if err != nil {
		return timeRange{}, fmt.Errorf("from: %q is not a day such as 2026-11-01", q.Get("from"))
	}
	last, err := time.Parse("2006-01-02", q.Get("to"))
	if err != nil {
		return timeRange{}, fmt.Errorf("to: %q is not a day such as 2026-11-30", q.Get("to"))
	}
	if last.Before(from) {
		return timeRange{}, errors.New("to: the last day is before the first")
	}
	to := last.AddDate(0, 0, 1)
	if days := to.Sub(from) / (24 * time.Hour); days > maxCustomDays {
		return timeRange{}, fmt.Errorf("to: %d days is longer than the %d a range may span", days, maxCustomDays)
	}
	g := "day"
	if to.Sub(from) <= 2*24*time.Hour {
		g = "hour"
	}
	return timeRange{Name: "custom", From: from, To: to, Granularity: g, FromDate: q.Get("from"), ToDate: q.Get("to")}, nil
}

// decisionTotal is one decision's requests over a chart's range.
type decisionTotal struct {
	Name, Label string
	Total       int64
}

// decisionTotals sums a chart's series, in the decisions' order.
func decisionTotals(c *chart) []decisionTotal {
	out := make([]decisionTotal, len(c.Series))
	for i, s := range c.Series {
		out[i].Name, out[i].Label = decisions[i].Name, s.Name
		for _, v := range s.Values {
			out[i].Total += v
		}
	}
	return out
}

func (s *server) overview(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now()
	rg, err := parseRange(r.URL.Query(), now)
	data := map[string]any{"Presets": presets, "Range": rg}
	if err != nil {
		data["Error"] = err.Error()
		s.render(w, r, http.StatusBadRequest, "overview", nil, data)
		return
	}
	// The chart's report and the top consumers at once: the page takes
	// the longer of the two, not their sum.
	a := s.api(r)
	var rep reportJSON
	var top []consumer
	var topErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		top, topErr = a.top(r.Context(), rg.From, rg.To, "", 10)
	}()
	rep, err = a.report(r.Context(), rg.From, rg.To, rg.Granularity, nil)
	<-done
	if err = cmp.Or(err, topErr); err != nil {
		s.fail(w, r, "overview", data, err)
		return
	}
	c := decisionChart("Requests by decision", rep, rg.From, rg.To, rg.Granularity)
	data["Chart"], data["Totals"], data["Top"] = c, decisionTotals(c), top
	s.render(w, r, http.StatusOK, "overview", nil, data)
}

// fail shows an error the API answered (or any other) on the page.
func (s *server) fail(w http.ResponseWriter, r *http.Request, page string, data map[string]any, err error) {
	status := http.StatusInternalServerError
	var ae *apiError
	if errors.As(err, &ae) {
		status = ae.Status
	} else {
		s.log.Error("read for a page", "page", page, "err", err)
	}
	if data == nil {
		data = map[string]any{}
	}
	data["Error"] = err.Error()
	if page == "" || status == http.StatusNotFound {
		page = "error"
		data["Message"] = err.Error()
	}
	s.render(w, r, status, page, nil, data)
}

// planUse is a key's use of one plan's quota in the current period.
type planUse struct {
	Plan        planJSON
	HasQuota    bool
	Used        int64 // in the period so far (GetUsage's used, summed)
	Remaining   int64 // GetUsage's remaining today
	PeriodStart time.Time
	PeriodEnd   time.Time
	Daily       *chart // the last 30 days' used (GetUsage)
}

// periodOf is the current quota period of p (today, without a quota).
func periodOf(p planJSON, now time.Time) (time.Time, time.Time) {
	if p.Quota == nil {
		d := truncate(now, "day")
		return d, d.AddDate(0, 0, 1)
	}
	start, end := p.Quota.Period.Bounds(now.UnixNano())
	return time.Unix(0, start).UTC(), time.Unix(0, end).UTC()
}

// useOf sums GetUsage's values for one key: used over the days, and the
// last day's remaining.
func useOf(vals [][2]int64) (used, remaining int64) {
	for _, v := range vals {
		used += v[0]
	}
	if len(vals) > 0 {
		remaining = vals[len(vals)-1][1]
	}
	return used, remaining
}

// param is a path parameter as the id it names: chi routes on the
// escaped path when the request's needed escaping, and gives the
// parameter as it is there.
func param(r *http.Request, name string) string {
	v := chi.URLParam(r, name)
	if r.URL.RawPath == "" {
		return v
	}
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

func (s *server) key(w http.ResponseWriter, r *http.Request) {
	id := param(r, "id")
	a, ctx, now := s.api(r), r.Context(), s.cfg.Now().UTC()
	k, err := a.key(ctx, id)
	if err != nil {
		s.fail(w, r, "", nil, err)
		return
	}
	data := map[string]any{"Key": k, "Done": doneMessages[r.URL.Query().Get("done")]}
	plans, err := a.plansOf(ctx, id, "", 100)
	if err != nil {
		s.fail(w, r, "", nil, err)
		return
	}
	var uses []planUse
	today := truncate(now, "day")
	for _, p := range plans.Item {
		u := planUse{Plan: p, HasQuota: p.Quota != nil}
		u.PeriodStart, u.PeriodEnd = periodOf(p, now)
		month, err := a.getUsage(ctx, p.ID, id, today.AddDate(0, 0, -29), now, "", 0)
		if err != nil {
			s.fail(w, r, "", nil, err)
			return
		}
		vals := month.Values[id]
		c := &chart{Title: "Requests counted against the quota, per day", Layout: "Jan 2",
			Series: []series{{Name: "used", Color: decisions[0].Color, Values: make([]int64, 30)}}}
		for i := range 30 {
			c.Buckets = append(c.Buckets, today.AddDate(0, 0, i-29))
			if i < len(vals) {
				c.Series[0].Values[i] = vals[i][0]
			}
		}
		u.Daily = c
		if u.HasQuota {
			cur, err := a.getUsage(ctx, p.ID, id, u.PeriodStart, now, "", 0)
			if err != nil {
				s.fail(w, r, "", nil, err)
				return
			}
			u.Used, u.Remaining = useOf(cur.Values[id])
		}
		uses = append(uses, u)
	}
	data["Plans"] = uses
	hourAgo := now.Add(-time.Hour).Truncate(time.Minute)
	minutes, err := a.report(ctx, hourAgo, now, "minute", url.Values{"key": {id}})
	if err != nil {
		s.fail(w, r, "", nil, err)
		return
	}
	data["Minutes"] = decisionChart("Requests in the last hour, per minute", minutes, hourAgo, now, "minute")
	// Whole days, today's included: the store's day rollups answer.
	from, tomorrow := today.AddDate(0, 0, -29), today.AddDate(0, 0, 1)
	days, err := a.report(ctx, from, tomorrow, "day", url.Values{"key": {id}})
	if err != nil {
		s.fail(w, r, "", nil, err)
		return
	}
	dc := decisionChart("Requests in the last 30 days by decision", days, from, tomorrow, "day")
	data["Days"], data["DayTotals"] = dc, decisionTotals(dc)
	if s.cfg.Audit != nil {
		// The key's own entries, and its UpdateUsage ones (kind usage,
		// id plan/key).
		changes, complete, err := s.cfg.Audit.Recent(id+`"`, func(e *catalog.AuditEntry) bool {
			return e.ID == id || e.Kind == "usage" && strings.HasSuffix(e.ID, "/"+id)
		}, 10, auditScan)
		if err != nil {
			data["AuditError"] = err.Error()
		}
		data["Changes"], data["AuditComplete"], data["HasAudit"] = changes, complete, true
	}
	all, err := a.plansOf(ctx, "", "", 500)
	if err != nil {
		s.fail(w, r, "", nil, err)
		return
	}
	var others []planJSON
	for _, p := range all.Item {
		if !slices.ContainsFunc(plans.Item, func(q planJSON) bool { return q.ID == p.ID }) {
			others = append(others, p)
		}
	}
	data["Others"] = others
	s.render(w, r, http.StatusOK, "key", nil, data)
}

// auditScan is how far back from its end a key page reads the audit log
// for the key's changes: a bounded cost whatever the log's size (bulk
// imports write a line per key); older changes are in `tollgate audit`.
const auditScan = 8 << 20

var doneMessages = map[string]string{
	"enabled":  "The key is enabled.",
	"disabled": "The key is disabled: the gateway answers 403 Forbidden to it.",
	"moved":    "The key moved to its new plan.",
	"granted":  "The quota remaining this period is set.",
}

func (s *server) keys(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	a, ctx := s.api(r), r.Context()
	search := strings.TrimSpace(q.Get("q"))
	if search != "" && q.Get("position") == "" {
		// An id goes straight to its key.
		if k, err := a.key(ctx, search); err == nil {
			http.Redirect(w, r, "/ui/keys/"+url.PathEscape(k.ID), http.StatusSeeOther)
			return
		}
	}
	params := url.Values{"limit": {strconv.Itoa(pageSize)}}
	if search != "" {
		params.Set("name", search)
	}
	if p := q.Get("position"); p != "" {
		params.Set("position", p)
	}
	var list page[keyJSON]
	data := map[string]any{"Search": search}
	if err := a.do(ctx, http.MethodGet, "/apikeys?"+params.Encode(), nil, &list); err != nil {
		s.fail(w, r, "keys", data, err)
		return
	}
	data["Keys"] = list.Item
	if list.Position != "" {
		data["Next"] = "?" + url.Values{"q": {search}, "position": {list.Position}}.Encode()
	}
	s.render(w, r, http.StatusOK, "keys", nil, data)
}

func (s *server) plans(w http.ResponseWriter, r *http.Request) {
	list, err := s.api(r).plansOf(r.Context(), "", r.URL.Query().Get("position"), 100)
	if err != nil {
		s.fail(w, r, "", nil, err)
		return
	}
	data := map[string]any{"Plans": list.Item}
	if list.Position != "" {
		data["Next"] = "?" + url.Values{"position": {list.Position}}.Encode()
	}
	s.render(w, r, http.StatusOK, "plans", nil, data)
}

// keyUse is one row of a plan's keys table.
type keyUse struct {
	ID, Name, Value string
	Enabled         bool
	Used, Remaining int64
}

// methodThrottle is one per-method override of a plan's stage.
type methodThrottle struct {
	Stage, Method string
	catalog.Throttle
}

func (s *server) plan(w http.ResponseWriter, r *http.Request) {
	id := param(r, "id")
	q := r.URL.Query()
	a, ctx, now := s.api(r), r.Context(), s.cfg.Now().UTC()
	p, err := a.plan(ctx, id)
	if err != nil {
		s.fail(w, r, "", nil, err)
		return
	}
	start, end := periodOf(p, now)
	data := map[string]any{"Plan": p, "PeriodStart": start, "PeriodEnd": end, "Sort": "id"}
	var methods []methodThrottle
	for _, st := range p.APIStages {
		for _, m := range slices.Sorted(mapKeys(st.Throttle)) {
			methods = append(methods, methodThrottle{Stage: st.APIID + ":" + st.Stage, Method: m, Throttle: st.Throttle[m]})
		}
	}
	data["Methods"] = methods
	var rows []keyUse
	switch q.Get("sort") {
	case "used":
		// The ranking reads every key of the plan (to the period's end,
		// nothing is stored past now: whole days, which the day rollups
		// answer), so only this view asks for it: the page by id costs
		// its 50 keys whatever the plan's size.
		heavy, at, err := s.top.get(ctx, a, p.ID, start, end)
		if err != nil {
			s.fail(w, r, "", nil, err)
			return
		}
		data["Heaviest"], data["HeaviestAt"] = heavy[:min(10, len(heavy))], at
		// The order is the store's: /v1/usage/top sums the period's
		// admitted requests per key in one query; the rows shown are
		// GetUsage's, like every other number of the table.
		data["Sort"] = "used"
		n := pageNumber(q.Get("page"), len(heavy), pageSize)
		lo := min((n-1)*pageSize, len(heavy))
		hi := min(lo+pageSize, len(heavy))
		for _, c := range heavy[lo:hi] {
			u, err := a.getUsage(ctx, p.ID, c.Key, start, now, "", 0)
			var ae *apiError
			if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
				continue // it left the plan (or was deleted) this period
			}
			if err != nil {
				s.fail(w, r, "", nil, err)
				return
			}
			row := keyUse{ID: c.Key, Name: c.Name}
			row.Used, row.Remaining = useOf(u.Values[c.Key])
			rows = append(rows, row)
		}
		if n > 1 {
			data["Prev"] = "?sort=used&page=" + strconv.Itoa(n-1)
		}
		if hi < len(heavy) {
			data["Next"] = "?sort=used&page=" + strconv.Itoa(n+1)
		}
		data["Offset"] = lo
	default:
		// By id, a page of GetUsage: the plan's keys from the position,
		// its cost the page's whatever the plan's size.
		u, err := a.getUsage(ctx, p.ID, "", start, now, q.Get("position"), pageSize)
		if err != nil {
			s.fail(w, r, "", nil, err)
			return
		}
		for _, kid := range slices.Sorted(mapKeys(u.Values)) {
			row := keyUse{ID: kid}
			row.Used, row.Remaining = useOf(u.Values[kid])
			if k, err := a.key(ctx, kid); err == nil {
				row.Name, row.Enabled = k.Name, k.Enabled
			}
			rows = append(rows, row)
		}
		if u.Position != "" {
			data["Next"] = "?" + url.Values{"position": {u.Position}}.Encode()
		}
	}
	data["Keys"] = rows
	s.render(w, r, http.StatusOK, "plan", nil, data)
}

// pageNumber is the page asked for, from 1 to the last of rows (an
// absurd number is the last page, not an overflow).
func pageNumber(s string, rows, size int) int {
	n, _ := strconv.Atoi(s)
	return min(max(n, 1), max(rows+size-1, size)/size)
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// topCache keeps a plan's heaviest keys of a period for topTTL: the
// ranking is one query over the period's rows of every key of the plan,
// and paging through it, or reloading the page, should not repeat it.
type topCache struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]topEntry
}

type topEntry struct {
	rows []consumer
	at   time.Time
}

const (
	topTTL     = 30 * time.Second
	topEntries = 64
	// topKeys is how deep the ranking goes: /v1/usage/top's largest
	// page. Keys past it have used less than the last one shown.
	topKeys = 1000
)

func newTopCache(now func() time.Time) *topCache {
	return &topCache{now: now, m: map[string]topEntry{}}
}

func (c *topCache) get(ctx context.Context, a api, plan string, from, to time.Time) ([]consumer, time.Time, error) {
	key := plan + "\x00" + from.Format(time.RFC3339)
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < topTTL {
		return e.rows, e.at, nil
	}
	rows, err := a.top(ctx, from, to, plan, topKeys)
	if err != nil {
		return nil, time.Time{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Full: the expired go, then the oldest if none had.
	for k, old := range c.m {
		if now.Sub(old.at) >= topTTL {
			delete(c.m, k)
		}
	}
	if len(c.m) >= topEntries {
		oldest := ""
		for k, e := range c.m {
			if oldest == "" || e.at.Before(c.m[oldest].at) {
				oldest = k
			}
		}
		delete(c.m, oldest)
	}
	c.m[key] = topEntry{rows: rows, at: now}
	return rows, now, nil
}

func (s *server) billing(w http.ResponseWriter, r *http.Request) {
	month := r.URL.Query().Get("month")
	if month == "" {
		month = s.cfg.Now().UTC().Format("2006-01")
	}
	data := map[string]any{"Month": month}
	var b billingJSON
	if err := s.api(r).do(r.Context(), http.MethodGet, "/v1/reports/billing?"+url.Values{"month": {month}}.Encode(), nil, &b); err != nil {
		s.fail(w, r, "billing", data, err)
		return
	}
	var total billingRow
	for _, row := range b.Rows {
		total.Admitted += row.Admitted
		total.Overage += row.Overage
		total.Throttled += row.Throttled
		total.Rejected += row.Rejected
	}
	const billingPage = 100
	n := pageNumber(r.URL.Query().Get("page"), len(b.Rows), billingPage)
	lo := min((n-1)*billingPage, len(b.Rows))
	hi := min(lo+billingPage, len(b.Rows))
	data["Rows"], data["Total"], data["Count"] = b.Rows[lo:hi], total, len(b.Rows)
	if n > 1 {
		data["Prev"] = "?" + url.Values{"month": {month}, "page": {strconv.Itoa(n - 1)}}.Encode()
	}
	if hi < len(b.Rows) {
		data["Next"] = "?" + url.Values{"month": {month}, "page": {strconv.Itoa(n + 1)}}.Encode()
	}
	s.render(w, r, http.StatusOK, "billing", nil, data)
}

func (s *server) billingCSV(w http.ResponseWriter, r *http.Request) {
	month := r.URL.Query().Get("month")
	body, err := s.api(r).raw(r.Context(), "/v1/reports/billing?"+url.Values{"month": {month}, "format": {"csv"}}.Encode())
	if err != nil {
		s.fail(w, r, "", nil, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="tollgate-billing-`+safeName(month)+`.csv"`)
	w.Write(body)
}

// safeName keeps what a file name may hold of s (a month, checked by the
// API already).
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return -1
	}, s)
}

func (s *server) newKey(w http.ResponseWriter, r *http.Request) {
	all, err := s.api(r).plansOf(r.Context(), "", "", 500)
	if err != nil {
		s.fail(w, r, "", nil, err)
		return
	}
	s.render(w, r, http.StatusOK, "newkey", nil, map[string]any{"Plans": all.Item})
}

// changed says what an audit entry changed: created, deleted, or each
// top-level field whose value differs, old → new (a key's hash and
// dates left out).
func changed(old, next json.RawMessage) string {
	switch {
	case len(old) == 0:
		return "created"
	case len(next) == 0:
		return "deleted"
	}
	var o, n map[string]json.RawMessage
	if json.Unmarshal(old, &o) != nil || json.Unmarshal(next, &n) != nil {
		return string(old) + " → " + string(next)
	}
	var out []string
	for _, f := range slices.Sorted(mapKeys(mergeKeys(o, n))) {
		if f == "valueHash" || f == "lastUpdatedDate" || f == "createdDate" || bytes.Equal(o[f], n[f]) {
			continue
		}
		out = append(out, f+": "+orNone(o[f])+" → "+orNone(n[f]))
	}
	return strings.Join(out, "; ")
}

func mergeKeys(a, b map[string]json.RawMessage) map[string]json.RawMessage {
	m := make(map[string]json.RawMessage, len(a)+len(b))
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

func orNone(v json.RawMessage) string {
	if len(v) == 0 {
		return "none"
	}
	return string(v)
}
