package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tollgate/tollgate/internal/history"
	"github.com/tollgate/tollgate/reportapi"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/chstore"
)

// The report API's credentials in this run (given to reportapi in its
// environment; requests are signed with them).
var creds = reportapi.Credentials{AccessKeyID: "TGAKHISTORYBENCH0000", SecretAccessKey: "historybench-secret-historybench-secret"}

// result is one query's timings.
type result struct {
	label, target string
	limit         time.Duration // 0: no target of its own
	cold          time.Duration
	warm          []time.Duration
	rows          int
	detail        string // what the rows were checked against
	err           error
}

func (r *result) median() time.Duration {
	if len(r.warm) == 0 {
		return 0
	}
	s := slices.Clone(r.warm)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *result) max() time.Duration {
	if len(r.warm) == 0 {
		return 0
	}
	return slices.Max(append([]time.Duration{r.cold}, r.warm...))
}

// met reports whether the median meets the target.
func (r *result) met() bool { return r.err == nil && len(r.warm) > 0 && r.median() <= r.limit }

// queryRun is one run of a query: how long it took and its rows, counted and
// checked after the clock stopped.
type queryRun func(ctx context.Context) (time.Duration, int, string, error)

// client sends signed requests to the report API.
type client struct {
	base string
	http *http.Client
}

func newClient(addr string) *client {
	// No compression: the body as curl would get it, and no gzip work
	// on either side.
	return &client{base: "http://" + addr, http: &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4}}}
}

// get sends a signed GET and reads the whole body; the duration runs
// from sending to the body's last byte.
func (c *client) get(ctx context.Context, path string, q url.Values) ([]byte, time.Duration, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	if err := reportapi.Sign(req, nil, creds, time.Now()); err != nil {
		return nil, 0, err
	}
	began := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(began)
	if err != nil {
		return nil, d, fmt.Errorf("GET %s: read the body: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, d, fmt.Errorf("GET %s: %s: %.300s", path, resp.Status, body)
	}
	return body, d, nil
}

// rowsBody is the part of /v1/usage's, top's and billing's JSON the
// checks read.
type rowsBody struct {
	Rows []struct {
		Requests int64 `json:"requests"`
		Admitted int64 `json:"requests_admitted"`
	} `json:"rows"`
}

// getRows is get of a report that answers rowsBody; what names the
// report in errors.
func (c *client) getRows(ctx context.Context, what, path string, q url.Values) ([]byte, rowsBody, time.Duration, error) {
	var rb rowsBody
	body, d, err := c.get(ctx, path, q)
	if err != nil {
		return nil, rb, d, err
	}
	if err := json.Unmarshal(body, &rb); err != nil {
		return nil, rb, d, fmt.Errorf("%s: %w", what, err)
	}
	return body, rb, d, nil
}

// requests is the sum of the rows' requests.
func (rb rowsBody) requests() (n int64) {
	for _, r := range rb.Rows {
		n += r.Requests
	}
	return n
}

// span is the history's range of the queries: the month (the days of
// the history, at most its first 31), and the key and day of the
// one-key queries.
type span struct {
	from, to time.Time // [from, to), whole days
	days     int
	month    time.Time // the calendar month billing reads: the one from starts in
	key      string    // a key in the middle
	day      time.Time // a day in the middle
	events   int64     // the events of the history (all its days)
	keys     int
	rate     float64
}

func (b *bench) span(events int64) span {
	days := min(b.cfg.days, 31)
	s := span{from: b.cfg.start, to: b.cfg.start.AddDate(0, 0, days), days: days,
		month: time.Date(b.cfg.start.Year(), b.cfg.start.Month(), 1, 0, 0, 0, 0, time.UTC),
		key:   history.KeyID(b.cfg.keys / 2), day: b.cfg.start.AddDate(0, 0, b.cfg.days/2),
		keys: b.cfg.keys, rate: b.cfg.rate}
	if days == b.cfg.days {
		s.events = events
	} else {
		s.events = b.cfg.history(s.from, days).Total()
	}
	return s
}

const rfc = time.RFC3339

// queries runs every query, each once cold and --runs times warm, the
// hand-written one alternating with /v1/usage's.
func (b *bench) queries(ctx context.Context, c *client, conn driver.Conn, s span) []*result {
	a := &result{label: "(a) /v1/usage granularity=day group_by=key, the month", target: "≤ 1 s and ≤ 3× (b)", limit: time.Second}
	hw := &result{label: "(b) hand-written ClickHouse query, same sums on usage_key_day (clickhouse-go, all rows read)", target: "reference"}
	usageA := func(ctx context.Context) (time.Duration, int, string, error) {
		body, rb, d, err := c.getRows(ctx, "/v1/usage", "/v1/usage", url.Values{"from": {s.from.Format(rfc)}, "to": {s.to.Format(rfc)},
			"granularity": {"day"}, "group_by": {"key"}})
		if err != nil {
			return d, 0, "", err
		}
		detail, err := checkMonth(s, len(rb.Rows), rb.requests())
		return d, len(rb.Rows), sized(detail, body), err
	}
	handwritten := func(ctx context.Context) (time.Duration, int, string, error) {
		began := time.Now()
		rows, err := conn.Query(ctx, handwrittenSQL, s.from.Format("2006-01-02"), s.to.AddDate(0, 0, -1).Format("2006-01-02"),
			s.from.Unix()/60, s.to.Unix()/60)
		if err != nil {
			return 0, 0, "", fmt.Errorf("hand-written query: %w", err)
		}
		var (
			n, req              int64
			minute              int64
			key                 string
			r, in, out, latency int64
		)
		for rows.Next() {
			if err := rows.Scan(&minute, &key, &r, &in, &out, &latency); err != nil {
				rows.Close()
				return 0, 0, "", fmt.Errorf("hand-written query: %w", err)
			}
			n++
			req += r
		}
		err = rows.Err()
		rows.Close()
		d := time.Since(began)
		if err != nil {
			return d, 0, "", fmt.Errorf("hand-written query: %w", err)
		}
		detail, err := checkMonth(s, int(n), req)
		return d, int(n), detail, err
	}
	b.measurePair(ctx, a, usageA, hw, handwritten)

	getUsage := &result{label: fmt.Sprintf("(c) GetUsage, one key, %d days", s.days), target: "≤ 50 ms", limit: 50 * time.Millisecond}
	b.measure(ctx, getUsage, func(ctx context.Context) (time.Duration, int, string, error) {
		body, d, err := c.get(ctx, "/usageplans/hist-plan/usage", url.Values{"startDate": {s.from.Format("2006-01-02")},
			"endDate": {s.to.AddDate(0, 0, -1).Format("2006-01-02")}, "keyId": {s.key}})
		if err != nil {
			return d, 0, "", err
		}
		var v struct {
			Values map[string][][]json.Number `json:"values"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return d, 0, "", fmt.Errorf("GetUsage: %w", err)
		}
		days := v.Values[s.key]
		var used int64
		for _, u := range days {
			if len(u) > 0 {
				n, _ := u[0].Int64()
				used += n
			}
		}
		detail := fmt.Sprintf("%d days of %s, %s requests used", len(days), s.key, count(used))
		if len(days) != s.days || used <= 0 {
			return d, len(days), detail, fmt.Errorf("GetUsage: %s; want %d days with usage", detail, s.days)
		}
		return d, len(days), sized(detail, body), nil
	})

	minutes := &result{label: "(d) /v1/usage granularity=minute key=, one key, one day", target: "≤ 100 ms", limit: 100 * time.Millisecond}
	b.measure(ctx, minutes, func(ctx context.Context) (time.Duration, int, string, error) {
		body, rb, d, err := c.getRows(ctx, "/v1/usage", "/v1/usage", url.Values{"from": {s.day.Format(rfc)}, "to": {s.day.AddDate(0, 0, 1).Format(rfc)},
			"granularity": {"minute"}, "key": {s.key}})
		if err != nil {
			return d, 0, "", err
		}
		req := rb.requests()
		want := int64(s.rate * 24)
		detail := fmt.Sprintf("%s requests of %s on %s (the history: %d ± 1)", count(req), s.key, s.day.Format("2006-01-02"), want)
		if len(rb.Rows) == 0 || len(rb.Rows) > 1440 || req < want-1 || req > want+1 {
			return d, len(rb.Rows), detail, fmt.Errorf("minute rows: %d rows, %s", len(rb.Rows), detail)
		}
		return d, len(rb.Rows), sized(detail, body), nil
	})

	billing := &result{label: "(e) /v1/reports/billing, the month", target: "≤ 2 s", limit: 2 * time.Second}
	b.measure(ctx, billing, func(ctx context.Context) (time.Duration, int, string, error) {
		body, rb, d, err := c.getRows(ctx, "billing", "/v1/reports/billing", url.Values{"month": {s.month.Format("2006-01")}})
		if err != nil {
			return d, 0, "", err
		}
		var admitted int64
		for _, r := range rb.Rows {
			admitted += r.Admitted
		}
		detail := fmt.Sprintf("%s keys, %s requests admitted", count(int64(len(rb.Rows))), count(admitted))
		if len(rb.Rows) != s.keys || admitted <= 0 {
			return d, len(rb.Rows), detail, fmt.Errorf("billing: %s; want %d keys", detail, s.keys)
		}
		return d, len(rb.Rows), sized(detail, body), nil
	})

	top := &result{label: "(f) /v1/usage/top, the month", target: "≤ 1 s", limit: time.Second}
	b.measure(ctx, top, func(ctx context.Context) (time.Duration, int, string, error) {
		body, d, err := c.get(ctx, "/v1/usage/top", url.Values{"from": {s.from.Format(rfc)}, "to": {s.to.Format(rfc)}})
		if err != nil {
			return d, 0, "", err
		}
		var v struct {
			Rows []struct {
				Admitted int64 `json:"admitted"`
			} `json:"rows"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return d, 0, "", fmt.Errorf("top: %w", err)
		}
		want := min(10, s.keys)
		detail := fmt.Sprintf("top %d keys", len(v.Rows))
		if len(v.Rows) > 0 {
			detail += fmt.Sprintf(", the first with %s requests admitted", count(v.Rows[0].Admitted))
		}
		if len(v.Rows) != want {
			return d, len(v.Rows), detail, fmt.Errorf("top: %s; want %d", detail, want)
		}
		return d, len(v.Rows), sized(detail, body), nil
	})
	return []*result{a, hw, getUsage, minutes, billing, top}
}

// sized adds the body's size to a response's detail.
func sized(detail string, body []byte) string {
	return fmt.Sprintf("%s; body %s", detail, bytesStr(uint64(len(body))))
}

// handwrittenSQL is (a) as one would write it by hand on the table the
// report reads (usage_key_day: whole days, grouped by key): its rows of
// the month's days, marker rows (minute < 0) left out by the same minute
// range, summed per day (the table's minute is its day's first) and key.
const handwrittenSQL = `SELECT minute, key_id, sum(requests), sum(bytes_in), sum(bytes_out), sum(latency_us_sum)
FROM usage_key_day
WHERE day BETWEEN ? AND ? AND minute >= ? AND minute < ?
GROUP BY minute, key_id
ORDER BY minute, key_id`

// checkMonth checks the day-by-key rows of the month: one per key and
// day, summing to the history's events.
func checkMonth(s span, rows int, requests int64) (string, error) {
	detail := fmt.Sprintf("%s rows (%s keys × %d days), %s requests (the history: %s)", count(int64(rows)), count(int64(s.keys)), s.days, count(requests), count(s.events))
	if rows != s.keys*s.days || requests != s.events {
		return detail, fmt.Errorf("day by key: %s", detail)
	}
	return detail, nil
}

// measure runs q once cold (caches dropped before) and --runs times
// warm.
func (b *bench) measure(ctx context.Context, r *result, q queryRun) {
	b.cold(ctx, r, q)
	for range b.cfg.runs {
		if r.err != nil {
			break
		}
		b.warm(ctx, r, q)
	}
	b.logResult(r)
}

// measurePair measures two queries whose medians are compared, their
// warm runs alternating.
func (b *bench) measurePair(ctx context.Context, r1 *result, q1 queryRun, r2 *result, q2 queryRun) {
	b.cold(ctx, r1, q1)
	b.cold(ctx, r2, q2)
	for range b.cfg.runs {
		if r1.err == nil {
			b.warm(ctx, r1, q1)
		}
		if r2.err == nil {
			b.warm(ctx, r2, q2)
		}
	}
	b.logResult(r1)
	b.logResult(r2)
}

func (b *bench) cold(ctx context.Context, r *result, q queryRun) {
	if err := dropCaches(ctx, b.conn, b.cfg.dropPageCache); err != nil {
		b.logf("  drop caches: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.queryTimeout)
	defer cancel()
	r.cold, r.rows, r.detail, r.err = q(ctx)
}

func (b *bench) warm(ctx context.Context, r *result, q queryRun) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.queryTimeout)
	defer cancel()
	d, rows, detail, err := q(ctx)
	if err != nil {
		r.err = err
		return
	}
	r.warm, r.rows, r.detail = append(r.warm, d), rows, detail
}

func (b *bench) logResult(r *result) {
	if r.err != nil {
		b.logf("%s: %v", r.label, r.err)
		return
	}
	b.logf("%s: cold %s, median %s, max %s; %d rows: %s", r.label, dur(r.cold), dur(r.median()), dur(r.max()), r.rows, r.detail)
}

// storeRun is one report's query as the store runs it, in this process.
type storeRun struct {
	label   string
	elapsed time.Duration
	log     logged
	logged  bool
	err     error
}

// storeQueries runs each report's query through chstore, in this
// process, with the parameters the report API gives it, logged in
// system.query_log, and reads what the server says it read.
func (b *bench) storeQueries(ctx context.Context, st *chstore.Store, s span) []*storeRun {
	month := usage.Report{FromMinute: s.from.Unix() / 60, ToMinute: s.to.Unix() / 60}
	dayByKey := month
	dayByKey.Granularity, dayByKey.GroupBy = "day", []string{"key"}
	top := month
	top.Granularity, top.GroupBy = "month", []string{"key", "plan", "decision"}
	billing := usage.Report{FromMinute: s.month.AddDate(0, 0, -7).Unix() / 60, ToMinute: s.month.AddDate(0, 1, 0).Unix() / 60,
		Granularity: "day", GroupBy: []string{"key", "plan", "decision"}}
	minutes := usage.Report{FromMinute: s.day.Unix() / 60, ToMinute: s.day.AddDate(0, 0, 1).Unix() / 60, Granularity: "minute",
		Filters: map[string]string{"key": s.key}}
	report := func(r usage.Report) func(context.Context) error {
		return func(ctx context.Context) error {
			return st.Report(ctx, r, func(*usage.ReportRow) error { return nil })
		}
	}
	fromDay, toDay := s.from.Unix()/86400, s.to.Unix()/86400-1
	runs := []struct {
		label string
		f     func(context.Context) error
	}{
		{"(a) day by key, the month: Store.Report", report(dayByKey)},
		{"(b) the hand-written query", func(ctx context.Context) error {
			rows, err := b.conn.Query(ctx, handwrittenSQL, s.from.Format("2006-01-02"), s.to.AddDate(0, 0, -1).Format("2006-01-02"),
				s.from.Unix()/60, s.to.Unix()/60)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
			}
			return rows.Err()
		}},
		{"(c) GetUsage, one key: Store.Daily", func(ctx context.Context) error {
			_, err := st.Daily(ctx, usage.Filter{FromDay: fromDay, ToDay: toDay, PlanID: "hist-plan", KeyIDs: []string{s.key}})
			return err
		}},
		{"(d) minute rows of one key, a day: Store.Report", report(minutes)},
		{"(e) billing, the month and 7 days before: Store.Report", report(billing)},
		{"(f) top, the month: Store.Report", report(top)},
	}
	tag := fmt.Sprintf("historybench-%d-", time.Now().UnixNano())
	out := make([]*storeRun, len(runs))
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = tag + fmt.Sprint(i)
		qctx, cancel := context.WithTimeout(ctx, b.cfg.queryTimeout)
		qctx = clickhouse.Context(qctx, clickhouse.WithQueryID(ids[i]), clickhouse.WithSettings(clickhouse.Settings{"log_queries": 1}))
		began := time.Now()
		err := r.f(qctx)
		cancel()
		out[i] = &storeRun{label: r.label, elapsed: time.Since(began), err: err}
	}
	logs, err := queryLog(ctx, b.conn, ids)
	for i, r := range out {
		if err != nil && r.err == nil {
			r.err = err
		}
		r.log, r.logged = logs[ids[i]]
	}
	return out
}
