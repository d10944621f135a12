package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/internal/promtest"
)

// The Grafana dashboard of docker-compose.yml. Its PromQL may name only
// the metrics and labels the README's Metrics table lists, and those the
// binary really serves (a real scrape of each role); its ClickHouse
// queries run on a migrated database.
const dashboardFile = "../../docker/grafana/dashboards/tollgate.json"

// readmeMetric is a row of the README's Metrics table.
type readmeMetric struct {
	typ    string   // counter, gauge, histogram; "" for the go_*, process_* row
	labels []string // sorted
}

// targetLabels are the labels Prometheus adds to every series it scrapes
// (docker/prometheus/prometheus.yml): any expression may use them.
var targetLabels = []string{"instance", "job"}

// readmeMetrics parses the README's Metrics table: metric names (a name
// ending in * is a prefix), types and labels.
func readmeMetrics(t *testing.T) map[string]readmeMetric {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n### Metrics\n")
	if !ok {
		t.Fatal("README.md has no Metrics section")
	}
	section, _, _ = strings.Cut(section, "\n#")
	tick := regexp.MustCompile("`([^`]+)`")
	out := map[string]readmeMetric{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 6 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue // not a row, or the header
		}
		var m readmeMetric
		m.typ = strings.TrimSpace(cells[2])
		// "`reason`: `error` (502), ...": the label, then its values.
		names, _, _ := strings.Cut(cells[3], ":")
		for _, l := range tick.FindAllStringSubmatch(names, -1) {
			m.labels = append(m.labels, l[1])
		}
		sort.Strings(m.labels)
		for _, n := range tick.FindAllStringSubmatch(cells[1], -1) {
			out[n[1]] = m
		}
	}
	if len(out) < 30 {
		t.Fatalf("README's Metrics table: %d metrics parsed, want every row", len(out))
	}
	return out
}

// family is the README metric a series name belongs to: itself, or a
// histogram's _bucket, _sum or _count; le is set for _bucket.
func family(readme map[string]readmeMetric, name string) (fam string, m readmeMetric, le, ok bool) {
	if m, ok := readme[name]; ok {
		return name, m, false, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, cut := strings.CutSuffix(name, suffix); cut {
			if m, ok := readme[base]; ok && m.typ == "histogram" {
				return base, m, suffix == "_bucket", true
			}
		}
	}
	for pattern, m := range readme {
		if p, wild := strings.CutSuffix(pattern, "*"); wild && strings.HasPrefix(name, p) {
			return name, m, false, true
		}
	}
	return "", readmeMetric{}, false, false
}

// dashboardQuery is a panel's target.
type dashboardQuery struct {
	panel      string
	datasource dsRef
	expr       string // PromQL
	rawSQL     string // ClickHouse
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboardPanel struct {
	Title      string           `json:"title"`
	Type       string           `json:"type"`
	Datasource *dsRef           `json:"datasource"`
	Panels     []dashboardPanel `json:"panels"` // a collapsed row's
	Targets    []struct {
		Datasource *dsRef `json:"datasource"`
		Expr       string `json:"expr"`
		RawSQL     string `json:"rawSql"`
	} `json:"targets"`
}

// dashboardQueries returns every target of the dashboard, with the data
// source it runs on (the target's, else its panel's).
func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string           `json:"uid"`
		Panels []dashboardPanel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []dashboardQuery
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, tg := range p.Targets {
				q := dashboardQuery{panel: p.Title, expr: tg.Expr, rawSQL: tg.RawSQL}
				switch {
				case tg.Datasource != nil:
					q.datasource = *tg.Datasource
				case p.Datasource != nil:
					q.datasource = *p.Datasource
				default:
					t.Errorf("panel %q: a target names no data source", p.Title)
				}
				out = append(out, q)
			}
		}
	}
	walk(d.Panels)
	if len(out) == 0 {
		t.Fatalf("%s: no queries", dashboardFile)
	}
	return out
}

// promQueries are the dashboard's PromQL expressions, parsed.
func promQueries(t *testing.T) map[string]promRefs {
	t.Helper()
	out := map[string]promRefs{}
	for _, q := range dashboardQueries(t) {
		if q.datasource.Type != "prometheus" {
			continue
		}
		if q.expr == "" {
			t.Errorf("panel %q: a Prometheus target without an expression", q.panel)
			continue
		}
		r, err := parsePromQL(q.expr)
		if err != nil {
			t.Errorf("panel %q: %s: %v", q.panel, q.expr, err)
			continue
		}
		out[q.expr] = r
	}
	return out
}

// TestDashboardUsesReadmeMetrics checks every PromQL expression of the
// dashboard against the README's Metrics table: each metric it selects
// is a row (a histogram's _bucket, _sum or _count), and each label it
// matches or groups by is one of that metric's labels, le for a bucket,
// or a target label Prometheus adds.
func TestDashboardUsesReadmeMetrics(t *testing.T) {
	readme := readmeMetrics(t)
	exprs := promQueries(t)
	if len(exprs) < 20 {
		t.Errorf("%d PromQL expressions, want the dashboard's", len(exprs))
	}
	for expr, r := range exprs {
		if len(r.selectors) == 0 {
			t.Errorf("%s: selects no metric", expr)
		}
		grouping := slices.Clone(targetLabels)
		for _, s := range r.selectors {
			_, m, le, ok := family(readme, s.name)
			if !ok {
				t.Errorf("%s: %s is not in the README's Metrics table", expr, s.name)
				continue
			}
			allowed := append(slices.Clone(targetLabels), m.labels...)
			if le {
				allowed = append(allowed, "le")
			}
			for _, l := range s.labels {
				if !slices.Contains(allowed, l) {
					t.Errorf("%s: %s has no label %s (README: %v)", expr, s.name, l, m.labels)
				}
			}
			grouping = append(grouping, allowed...)
		}
		for _, l := range r.grouping {
			if !slices.Contains(grouping, l) {
				t.Errorf("%s: groups by %s, which none of its metrics has", expr, l)
			}
		}
	}
}

// TestDashboardMetricsAreServed scrapes `serve` and then a fleet (an
// enforcer, a report API on ClickHouse, an aggregator) after traffic
// went through them, and checks that every family they serve is in the
// README's table with the labels it lists, and that every metric the
// dashboard selects is served by one of them. The ClickHouse panels'
// queries then run on the aggregator's database. Without a ClickHouse
// server the fleet part is skipped (the README and serve checks ran).
func TestDashboardMetricsAreServed(t *testing.T) {
	readme := readmeMetrics(t)
	exprs := promQueries(t)
	served := map[string]bool{}
	scraped := func(role string, s promtest.Series) {
		t.Helper()
		for fam, labels := range seriesLabels(s) {
			served[fam] = true
			f, m, _, ok := family(readme, fam)
			switch {
			case !ok:
				t.Errorf("%s serves %s, which the README's Metrics table lacks", role, fam)
			case f == fam && m.typ == "": // go_*, process_*
			case !slices.Equal(labels, m.labels):
				t.Errorf("%s: %s has labels %v, the README says %v", role, fam, labels, m.labels)
			}
		}
	}

	_, data, cfg := fixture(t)
	now := frozen
	n := start(t, data, cfg, &now)
	for _, key := range []string{"widgetwidgetwidget0001", "unknown-key-000000001"} {
		get(t, "http://"+n.addrs.gateway+"/prod/items", key)
	}
	scraped("serve", promtest.Scrape(t, "http://"+n.addrs.admin+"/metrics", "Bearer "+adminCreds(t, data).Token))
	n.stop(t)

	dsn := migratedClickHouse(t) // skips here without a server
	f := newFleet(t)
	ao := f.options(false, true)
	ao.config, ao.clickhouse = f.config, dsn
	admin := f.start(ao)
	eo := f.options(true, false)
	eo.adminListen = "127.0.0.1:0"
	e := f.start(eo)
	aggAddr := startAggregatorAt(t, f, dsn, "127.0.0.1:0")
	const key = "widgetwidgetwidget0001"
	e.waitStatus(t, key, 200, 10*time.Second)
	for range 9 {
		e.status(key)
	}
	e.status("unknown-key-000000001")
	if code, _ := admin.admin(t, "GET", "/apikeys", ""); code != 200 {
		t.Fatalf("get-api-keys: %d", code)
	}
	scrape := func(addr, data string) promtest.Series {
		return promtest.Scrape(t, "http://"+addr+"/metrics", "Bearer "+adminCreds(t, data).Token)
	}
	// Some families appear only once there is something to show: a
	// partition's lag, the newest signal's age.
	var agg, enf promtest.Series
	poll.UntilOK(t, 20*time.Second, 50*time.Millisecond, "the aggregator stores the requests and the enforcer applies a signal", func() error {
		agg, enf = scrape(aggAddr, filepath.Join(f.dir, "agg")), scrape(e.addrs.admin, e.data)
		if agg["tollgate_aggregator_events_stored_total"] < 10 || len(agg.With("tollgate_aggregator_consumer_lag_records{")) == 0 {
			return fmt.Errorf("stored %v, lag of %d partitions", agg["tollgate_aggregator_events_stored_total"], len(agg.With("tollgate_aggregator_consumer_lag_records{")))
		}
		if _, ok := enf["tollgate_signals_newest_age_seconds"]; !ok {
			return fmt.Errorf("no signal applied")
		}
		return nil
	})
	scraped("aggregator", agg)
	scraped("enforcer", enf)
	scraped("reportapi", scrape(admin.addrs.admin, admin.data))

	for expr, r := range exprs {
		for _, s := range r.selectors {
			if fam, _, _, ok := family(readme, s.name); ok && !served[fam] {
				t.Errorf("%s: no role serves %s", expr, fam)
			}
		}
	}

	checkDashboardSQL(t, dsn)
}

// seriesLabels returns the label names of each family of s (a
// histogram's by its name).
func seriesLabels(s promtest.Series) map[string][]string {
	fams := s.Families()
	out := map[string][]string{}
	for k := range s {
		name, ls, _ := strings.Cut(k, "{")
		if !fams[name] {
			name = name[:strings.LastIndex(name, "_")] // a histogram's _count, _sum
		}
		var labels []string
		for _, kv := range splitLabels(strings.TrimSuffix(ls, "}")) {
			l, _, _ := strings.Cut(kv, "=")
			labels = append(labels, l)
		}
		sort.Strings(labels)
		out[name] = labels
	}
	return out
}

// splitLabels splits `a="x",b="y,z"` at the commas between pairs.
func splitLabels(s string) []string {
	var out []string
	for s != "" {
		name, rest, _ := strings.Cut(s, "=")
		var v string
		if _, err := fmt.Sscanf(rest, "%q", &v); err != nil {
			return append(out, s)
		}
		q := fmt.Sprintf("%q", v)
		out = append(out, name+"="+q)
		s = strings.TrimPrefix(rest[len(q):], ",")
	}
	return out
}

// checkDashboardSQL runs the ClickHouse panels' queries on the database
// of dsn, the panel's time range being every day: each must run, and
// list the key that made the requests (its first column).
func checkDashboardSQL(t *testing.T, dsn string) {
	t.Helper()
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	keyID := ""
	if err := conn.QueryRow(context.Background(), "SELECT any(key_id) FROM usage_events WHERE key_id != ''").Scan(&keyID); err != nil || keyID == "" {
		t.Fatalf("the key's id in usage_events: %q %v", keyID, err)
	}
	dateFilter := regexp.MustCompile(`\$__dateFilter\((\w+)\)`)
	n := 0
	for _, q := range dashboardQueries(t) {
		if q.datasource.Type != "grafana-clickhouse-datasource" {
			continue
		}
		n++
		sql := dateFilter.ReplaceAllString(q.rawSQL, "$1 >= toDate('1970-01-02') AND $1 <= toDate('2100-01-01')")
		if strings.Contains(sql, "$") {
			t.Errorf("panel %q: a macro the test does not know: %s", q.panel, sql)
			continue
		}
		rows, err := conn.Query(context.Background(), sql)
		if err != nil {
			t.Errorf("panel %q: %v\n%s", q.panel, err, sql)
			continue
		}
		found := false
		for rows.Next() {
			vals := make([]any, len(rows.ColumnTypes()))
			for i, ct := range rows.ColumnTypes() {
				vals[i] = reflect.New(ct.ScanType()).Interface()
			}
			if err := rows.Scan(vals...); err != nil {
				t.Errorf("panel %q: %v", q.panel, err)
				break
			}
			if s, ok := vals[0].(*string); ok && *s == keyID {
				found = true
			}
		}
		if err := rows.Err(); err != nil {
			t.Errorf("panel %q: %v", q.panel, err)
		}
		rows.Close()
		if !found {
			t.Errorf("panel %q: the key that made requests (%s) is not in its rows", q.panel, keyID)
		}
	}
	if n == 0 {
		t.Error("the dashboard has no ClickHouse panel (top keys)")
	}
}
