package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/loadgen"
)

// scenario is one comparison of tollgate with a baseline on the same load.
type scenario struct {
	name       string // as in --scenarios
	title      string
	baseline   string // what the baseline is, for the tables
	path       string
	apiKey     string
	wantStatus int // every response of both sides must have it

	minRPSRatio float64       // tollgate req/s ≥ minRPSRatio × baseline req/s
	maxP99Extra time.Duration // tollgate p99 ≤ baseline p99 + maxP99Extra; 0: no p99 target
}

// scenarios are the comparisons, as the performance budget sets them.
var scenarios = []scenario{
	{
		name:        "proxy",
		title:       "proxy: GET /prod/items with a valid key",
		baseline:    "bare ReverseProxy",
		path:        "/prod/items",
		apiKey:      validKey,
		wantStatus:  http.StatusOK,
		minRPSRatio: 0.85,
		maxP99Extra: time.Millisecond,
	},
	{
		name:        "reject",
		title:       "rejections: GET /prod/items with an unknown key",
		baseline:    "Go 403 handler",
		path:        "/prod/items",
		apiKey:      unknownKey,
		wantStatus:  http.StatusForbidden,
		minRPSRatio: 0.85,
	},
}

// load is how hard and how long each side is driven.
type load struct {
	conns    int
	warmup   time.Duration
	duration time.Duration
	timeout  time.Duration
	rounds   int
}

// side is one server of a comparison and its results, one per round.
type side struct {
	label  string
	addr   string
	rounds []*loadgen.Result
}

// outcome is a measured scenario.
type outcome struct {
	sc       scenario
	baseline *side
	tollgate *side // nil when only the baseline was measured
}

// measure drives baseline and tollgate (if not nil) in interleaved rounds,
// baseline first, so that noise on the machine hits both alike. It prints
// a line per run to progress.
func measure(ctx context.Context, sc scenario, baseline, tollgate *side, l load, progress io.Writer) (*outcome, error) {
	sides := []*side{baseline}
	if tollgate != nil {
		sides = append(sides, tollgate)
	}
	for _, s := range sides {
		if err := preflight(ctx, sc, s); err != nil {
			return nil, err
		}
	}
	for round := 1; round <= l.rounds; round++ {
		for _, s := range sides {
			g, err := loadgen.New(loadgen.Config{
				Addr:     s.addr,
				Path:     sc.path,
				Header:   http.Header{"x-api-key": {sc.apiKey}},
				Conns:    l.conns,
				Warmup:   l.warmup,
				Duration: l.duration,
				Timeout:  l.timeout,
			})
			if err != nil {
				return nil, err
			}
			res, err := g.Run(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s, %s, round %d: %w", sc.name, s.label, round, err)
			}
			s.rounds = append(s.rounds, res)
			fmt.Fprintf(progress, "  %s round %d/%d %-18s %9.0f req/s  p99 %s  %s\n", sc.name, round, l.rounds,
				s.label, res.RPS(), fmtDur(res.Latency.Quantile(0.99)), fmtStatus(res.Status, res.Errors))
		}
	}
	return &outcome{sc: sc, baseline: baseline, tollgate: tollgate}, nil
}

// preflight sends one request to s and checks its status, so that a
// misconfiguration fails at once, with the answer shown, not after a run.
func preflight(ctx context.Context, sc scenario, s *side) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr+sc.path, nil)
	if err != nil {
		return fmt.Errorf("preflight %s: %w", s.label, err)
	}
	req.Header.Set("x-api-key", sc.apiKey)
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return fmt.Errorf("preflight %s, %s: %w", sc.name, s.label, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != sc.wantStatus {
		return fmt.Errorf("preflight %s: %s answered GET %s with %s, want %d: %s",
			sc.name, s.label, sc.path, resp.Status, sc.wantStatus, strings.TrimSpace(string(body)))
	}
	return nil
}

// summary condenses a side's rounds: medians of rounds for req/s and the
// percentiles, the largest max, and totals of statuses and errors.
type summary struct {
	rps                 float64
	p50, p90, p99, p999 time.Duration
	max                 time.Duration
	roundRPS            []float64
	responses           uint64
	status              map[int]uint64
	errors              loadgen.Errors
}

func summarize(rounds []*loadgen.Result) summary {
	s := summary{status: map[int]uint64{}}
	var p50, p90, p99, p999 []time.Duration
	for _, r := range rounds {
		s.roundRPS = append(s.roundRPS, r.RPS())
		p50 = append(p50, r.Latency.Quantile(0.50))
		p90 = append(p90, r.Latency.Quantile(0.90))
		p99 = append(p99, r.Latency.Quantile(0.99))
		p999 = append(p999, r.Latency.Quantile(0.999))
		s.max = max(s.max, r.Latency.Max())
		s.responses += r.Responses
		for code, n := range r.Status {
			s.status[code] += n
		}
		s.errors.Connect += r.Errors.Connect
		s.errors.Write += r.Errors.Write
		s.errors.Read += r.Errors.Read
		s.errors.Timeout += r.Errors.Timeout
		s.errors.Parse += r.Errors.Parse
	}
	s.rps = median(s.roundRPS)
	s.p50, s.p90, s.p99, s.p999 = median(p50), median(p90), median(p99), median(p999)
	return s
}

// median is the middle value, or the mean of the middle two; 0 when empty.
func median[T ~int64 | ~float64](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// check is one target or sanity condition and whether it held.
type check struct {
	what string // the condition, e.g. "tollgate req/s ≥ 0.85 × bare"
	got  string // the measured value
	ok   bool
}

// evaluate checks an outcome against its scenario's targets.
func evaluate(o *outcome) []check {
	sc := o.sc
	base := summarize(o.baseline.rounds)
	checks := []check{statusCheck(o.baseline.label, sc.wantStatus, base)}
	if o.tollgate == nil {
		return checks
	}
	tg := summarize(o.tollgate.rounds)
	checks = append(checks, statusCheck(o.tollgate.label, sc.wantStatus, tg))

	ratio := 0.0
	if base.rps > 0 {
		ratio = tg.rps / base.rps
	}
	checks = append(checks, check{
		what: fmt.Sprintf("%s req/s ≥ %.2f × %s req/s", o.tollgate.label, sc.minRPSRatio, o.baseline.label),
		got:  fmt.Sprintf("%.3f ×", ratio),
		ok:   base.rps > 0 && ratio >= sc.minRPSRatio,
	})
	if sc.maxP99Extra > 0 {
		extra := tg.p99 - base.p99
		checks = append(checks, check{
			what: fmt.Sprintf("%s p99 ≤ %s p99 + %s", o.tollgate.label, o.baseline.label, fmtDur(sc.maxP99Extra)),
			got:  fmtSignedDur(extra),
			ok:   base.responses > 0 && tg.responses > 0 && extra <= sc.maxP99Extra,
		})
	}
	return checks
}

// statusCheck requires responses, all with status want, and no errors.
func statusCheck(label string, want int, s summary) check {
	return check{
		what: fmt.Sprintf("every %s response is %d, no errors", label, want),
		got:  fmtStatus(s.status, s.errors),
		ok:   s.responses > 0 && s.status[want] == s.responses && s.errors.Total() == 0,
	}
}

// fmtStatus lists counts by status and errors, e.g. "200×81234, 502×3, errors: read 2".
func fmtStatus(status map[int]uint64, errs loadgen.Errors) string {
	var parts []string
	codes := make([]int, 0, len(status))
	for code := range status {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	for _, code := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", code, status[code]))
	}
	if len(parts) == 0 {
		parts = append(parts, "no responses")
	}
	if errs.Total() > 0 {
		parts = append(parts, fmt.Sprintf("errors: connect %d, write %d, read %d, timeout %d, parse %d",
			errs.Connect, errs.Write, errs.Read, errs.Timeout, errs.Parse))
	}
	return strings.Join(parts, ", ")
}

// fmtDur prints a latency in milliseconds, e.g. "1.234ms".
func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}

func fmtSignedDur(d time.Duration) string {
	if d >= 0 {
		return "+" + fmtDur(d)
	}
	return fmtDur(d)
}
