package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// promRefs is what a PromQL expression names: the series it selects and
// the labels it groups or matches by.
type promRefs struct {
	selectors []promSelector
	grouping  []string // by, without, on, ignoring, group_left, group_right
}

// promSelector is a metric name and the labels of its matchers.
type promSelector struct {
	name   string
	labels []string
}

// promFunctions are PromQL's functions and aggregation operators: an
// identifier followed by "(" must be one of them.
var promFunctions = strings.Fields(`abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes
clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv
double_exponential_smoothing exp floor histogram_avg histogram_count histogram_fraction histogram_quantile
histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase irate label_join label_replace
last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi predict_linear
present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_by_label
sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp vector year`)

// promAggregations may be followed by a by or without clause before "(".
var promAggregations = strings.Fields(`sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio`)

// promKeywords are the other identifiers that are not metric names.
var promKeywords = strings.Fields(`and or unless bool offset atan2 inf nan`)

// parsePromQL reads the metric names and label names of a PromQL
// expression, as Grafana stores it ($__rate_interval and other variables
// left in). It is a lexer, not a parser: it knows the lexical shape of
// selectors, matchers, ranges and grouping clauses, which is what naming
// the metrics and labels takes, and refuses what it does not know (a
// selector without a metric name, an unknown function).
func parsePromQL(expr string) (promRefs, error) {
	var r promRefs
	s := expr
	i := 0
	last := -1 // the selector a following {…} belongs to
	skipSpace := func() {
		for i < len(s) && strings.ContainsRune(" \t\r\n", rune(s[i])) {
			i++
		}
	}
	ident := func() string {
		j := i
		for i < len(s) && (isIdentByte(s[i]) || (i > j && s[i] >= '0' && s[i] <= '9')) {
			i++
		}
		return s[j:i]
	}
	skipString := func() error {
		q := s[i]
		for i++; i < len(s); i++ {
			switch {
			case s[i] == '\\' && q != '`':
				i++
			case s[i] == q:
				i++
				return nil
			}
		}
		return fmt.Errorf("unterminated string")
	}
	// labelList reads "(a, b)" after a grouping keyword.
	labelList := func() error {
		i++ // (
		for {
			skipSpace()
			if i < len(s) && s[i] == ')' {
				i++
				return nil
			}
			l := ident()
			if l == "" {
				return fmt.Errorf("at %d: want a label name", i)
			}
			r.grouping = append(r.grouping, l)
			skipSpace()
			if i < len(s) && s[i] == ',' {
				i++
			}
		}
	}
	for {
		skipSpace()
		if i >= len(s) {
			return r, nil
		}
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			if err := skipString(); err != nil {
				return r, err
			}
			last = -1
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '$': // a Grafana variable: $name, ${name}, $__rate_interval
			i++
			if i < len(s) && s[i] == '{' {
				for i < len(s) && s[i] != '}' {
					i++
				}
				i++
			} else {
				ident()
			}
			last = -1
		case c == '[': // a range or subquery: durations and variables only
			for i < len(s) && s[i] != ']' {
				i++
			}
			i++
		case c == '{':
			if last < 0 {
				return r, fmt.Errorf("at %d: a selector without a metric name", i)
			}
			i++
			for {
				skipSpace()
				if i >= len(s) {
					return r, fmt.Errorf("unterminated matchers")
				}
				if s[i] == '}' {
					i++
					break
				}
				if s[i] == ',' {
					i++
					continue
				}
				l := ident()
				if l == "" {
					return r, fmt.Errorf("at %d: want a label name", i)
				}
				r.selectors[last].labels = append(r.selectors[last].labels, l)
				skipSpace()
				for i < len(s) && strings.ContainsRune("=!~", rune(s[i])) {
					i++
				}
				skipSpace()
				if i >= len(s) || !strings.ContainsRune("\"'`", rune(s[i])) {
					return r, fmt.Errorf("at %d: want a label value", i)
				}
				if err := skipString(); err != nil {
					return r, err
				}
			}
			last = -1
		case isIdentByte(c):
			id := ident()
			j := i
			skipSpace()
			next := byte(0)
			if i < len(s) {
				next = s[i]
			}
			i = j
			switch {
			case slices.Contains([]string{"by", "without", "on", "ignoring", "group_left", "group_right"}, id):
				skipSpace()
				if i < len(s) && s[i] == '(' {
					if err := labelList(); err != nil {
						return r, err
					}
				}
				last = -1
			case slices.Contains(promAggregations, id), slices.Contains(promKeywords, strings.ToLower(id)):
				last = -1
			case next == '(':
				if !slices.Contains(promFunctions, id) {
					return r, fmt.Errorf("unknown function %s", id)
				}
				last = -1
			default:
				r.selectors = append(r.selectors, promSelector{name: id})
				last = len(r.selectors) - 1
			}
		case c >= '0' && c <= '9' || c == '.': // a number or a duration
			for i < len(s) && (isIdentByte(s[i]) || s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
				i++
			}
			last = -1
		default: // operators, parentheses, commas
			i++
			last = -1
		}
	}
}

func isIdentByte(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func TestDashboardPromQLReader(t *testing.T) {
	tests := []struct {
		name     string
		expr     string
		want     []promSelector
		grouping []string
		err      string
	}{
		{name: "plain", expr: "go_goroutines", want: []promSelector{{name: "go_goroutines"}}},
		{name: "rate with grouping", expr: "sum by (decision) (rate(tollgate_gateway_requests_total[$__rate_interval]))",
			want: []promSelector{{name: "tollgate_gateway_requests_total"}}, grouping: []string{"decision"}},
		{name: "grouping after", expr: "sum(rate(a_total[5m])) without (instance, job)",
			want: []promSelector{{name: "a_total"}}, grouping: []string{"instance", "job"}},
		{name: "matchers", expr: `a_total{decision!="allowed", class=~"4.."} / on(instance) group_left b`,
			want: []promSelector{{name: "a_total", labels: []string{"decision", "class"}}, {name: "b"}}, grouping: []string{"instance"}},
		{name: "histogram quantile", expr: "histogram_quantile(0.99, sum by (instance, le) (rate(x_seconds_bucket[1m] offset 5m)))",
			want: []promSelector{{name: "x_seconds_bucket"}}, grouping: []string{"instance", "le"}},
		{name: "strings and keywords", expr: `label_replace(up_total, "dst", "$1", "src", "(.*)") and bool 1e3 or vector(0)`,
			want: []promSelector{{name: "up_total"}}},
		{name: "variable in matcher", expr: `a{job="$job"} unless b{instance=~"${inst}"}`,
			want: []promSelector{{name: "a", labels: []string{"job"}}, {name: "b", labels: []string{"instance"}}}},
		{name: "no metric name", expr: `{__name__="a"}`, err: "without a metric name"},
		{name: "unknown function", expr: "rates(a[5m])", err: "unknown function rates"},
		{name: "unterminated", expr: `a{b="c}`, err: "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePromQL(tt.expr)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got.selectors) != fmt.Sprint(tt.want) || !slices.Equal(got.grouping, tt.grouping) {
				t.Errorf("got %v %v, want %v %v", got.selectors, got.grouping, tt.want, tt.grouping)
			}
		})
	}
}
