package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/benchkit"
	"github.com/tollgate/tollgate/internal/loadgen"
)

// The servers a run measures, as the tables name them.
const (
	sideDirect      = "upstream, direct"
	sideNginx       = "nginx"
	sideBareRP      = "bare ReverseProxy"
	sideBareFast    = "bare fasthttp"
	side403         = "Go 403 handler"
	sideTollgate    = "tollgate fasthttp" // the default data plane
	sideTollgateNet = "tollgate net/http"
)

// scenario is one request, sent to several servers on the same load.
type scenario struct {
	name       string // as in --scenarios
	title      string
	path       string
	apiKey     string
	wantStatus int // every response of every side must have it (but see minorStatus)

	// minorStatus, when not 0, may answer up to minorShare of the
	// requests instead of wantStatus: a throttle lets its rate through.
	minorStatus int
	minorShare  float64

	sides []string // measured in this order in every round, those run
	// paced: the sides are also measured at a moderate paced rate, for
	// the latency a proxy adds to a direct call of the upstream.
	paced   bool
	targets []target
}

// scenarios are the comparisons, as the performance budget sets them.
// The targets against nginx are those of tollgate's default data plane;
// the net/http plane keeps the targets it has always had, against the
// bare Go servers.
var scenarios = []scenario{
	{
		name:       "proxy",
		title:      "proxy: GET /prod/items with a valid key",
		path:       "/prod/items",
		apiKey:     validKey,
		wantStatus: http.StatusOK,
		sides:      []string{sideDirect, sideNginx, sideBareRP, sideBareFast, sideTollgate, sideTollgateNet},
		paced:      true,
		targets: []target{
			{side: sideTollgate, ref: sideNginx, metric: cpuPerRequest, ratio: 1.3},
			{side: sideTollgate, ref: sideNginx, metric: rps, ratio: 0.8},
			{side: sideTollgate, ref: sideDirect, metric: pacedP99Extra, extra: time.Millisecond},
			{side: sideTollgateNet, ref: sideBareRP, metric: rps, ratio: 0.85},
			{side: sideTollgateNet, ref: sideBareRP, metric: p99Extra, extra: time.Millisecond},
		},
	},
	{
		name:       "reject",
		title:      "rejections: GET /prod/items with an unknown key",
		path:       "/prod/items",
		apiKey:     unknownKey,
		wantStatus: http.StatusForbidden,
		sides:      []string{sideNginx, side403, sideTollgate, sideTollgateNet},
		targets: []target{
			{side: sideTollgate, ref: sideNginx, metric: rps, ratio: 0.9},
			{side: sideTollgateNet, ref: side403, metric: rps, ratio: 0.85},
		},
	},
	{
		name:        "throttle",
		title:       "throttled: GET /prod/items with a key over its plan's rate (1 request/s)",
		path:        "/prod/items",
		apiKey:      throttledKey,
		wantStatus:  http.StatusTooManyRequests,
		minorStatus: http.StatusOK,
		minorShare:  0.01,
		sides:       []string{sideNginx, sideTollgate, sideTollgateNet},
	},
}

// metric is what a target compares.
type metric int

const (
	rps           metric = iota // req/s at the load's connections: side ≥ ratio × ref
	cpuPerRequest               // CPU per request at the load's connections: side ≤ ratio × ref
	p99Extra                    // p99 at the load's connections: side ≤ ref + extra
	pacedP99Extra               // p99 of the paced runs: side ≤ ref + extra
)

// target holds a figure of one side to a reference side's. A target
// whose sides were not both measured is not checked (the report says so).
type target struct {
	side, ref string
	metric    metric
	ratio     float64       // rps, cpuPerRequest
	extra     time.Duration // p99Extra, pacedP99Extra
}

// load is how hard and how long each side is driven.
type load struct {
	conns    int
	warmup   time.Duration
	duration time.Duration
	timeout  time.Duration
	rounds   int

	// The paced runs. On two cores shared with the load generator, p99 at
	// 64 saturating connections is mostly the queue's: it says how the
	// CPU is shared, not what a proxy adds to a request. A paced run at a
	// moderate rate on a few connections leaves the CPU mostly idle, so
	// its latencies are the request path's own, and a proxy's p99 minus
	// the direct call's p99 (same rate, same run) is the latency it adds.
	// The default, 1000 requests/s on 8 connections, keeps each
	// connection's slots 8 ms apart, so that a slow answer seldom delays
	// the next request (Result.Late), and gives 1000 samples a second for
	// the p99. In trial runs on a 2-core machine, 2000/s almost doubled
	// the bare ReverseProxy's p99 over 1000/s (from 1.0 to 1.9 ms) as the
	// wake-ups of proxy, upstream and generator began to meet on the two
	// cores: contention again, not the request path.
	// A run during which processes outside the harness used more than
	// maxOthers of the machine's CPU is run again, up to reruns times.
	maxOthers float64
	reruns    int

	pacedRate     float64       // requests/s in all
	pacedConns    int           // connections
	pacedDuration time.Duration // measured time per paced run; 0: no paced runs
}

// server is a process the harness started and measures.
type server struct {
	addr string
	// proc is whose CPU time (with its child processes) a request costs;
	// nil: CPU not measured.
	proc *benchkit.Proc
}

// sample is one run of one side: what the generator measured, the CPU
// time the side's server used over the measured period, and the share of
// the machine's CPU that went to processes the harness did not start
// (another program's load skews every figure of the run).
type sample struct {
	*loadgen.Result
	cpu    time.Duration
	others float64
}

// cpuPerRequest is the server's CPU time per response; 0 without
// responses.
func (s sample) cpuPerRequest() time.Duration {
	if s.Responses == 0 {
		return 0
	}
	return s.cpu / time.Duration(s.Responses)
}

// side is one server in a scenario, and its runs.
type side struct {
	label  string
	srv    *server
	runs   []sample // at the load's connections, one per round
	paced  []sample // paced, one per round
	reruns int      // runs run again because others took the CPU
}

// outcome is a measured scenario.
type outcome struct {
	sc    scenario
	sides []*side // in sc.sides' order, those that ran
}

// side returns the side labelled label, nil if it did not run.
func (o *outcome) side(label string) *side {
	for _, s := range o.sides {
		if s.label == label {
			return s
		}
	}
	return nil
}

// measure drives the scenario's sides that servers has, in interleaved
// rounds (every side at the load's connections, then every side paced),
// so that noise on the machine hits all alike. It prints a line per run
// to progress.
func measure(ctx context.Context, sc scenario, servers map[string]*server, l load, progress io.Writer) (*outcome, error) {
	o := &outcome{sc: sc}
	for _, label := range sc.sides {
		if srv := servers[label]; srv != nil {
			o.sides = append(o.sides, &side{label: label, srv: srv})
		}
	}
	for _, s := range o.sides {
		if err := preflight(ctx, sc, s); err != nil {
			return nil, err
		}
	}
	paced := sc.paced && l.pacedDuration > 0
	for round := 1; round <= l.rounds; round++ {
		for _, s := range o.sides {
			cfg := loadgen.Config{Conns: l.conns, Warmup: l.warmup, Duration: l.duration, Timeout: l.timeout}
			res, err := runUndisturbed(ctx, sc, s, cfg, l, progress)
			if err != nil {
				return nil, fmt.Errorf("%s, %s, round %d: %w", sc.name, s.label, round, err)
			}
			s.runs = append(s.runs, res)
			fmt.Fprintf(progress, "  %s round %d/%d %-18s %9.0f req/s  p99 %s  CPU %s µs/req  others %s  %s\n", sc.name, round, l.rounds,
				s.label, res.RPS(), fmtDur(res.Latency.Quantile(0.99)), fmtMicros(res.cpuPerRequest()), fmtShare(res.others),
				fmtStatus(res.Status, res.Errors))
		}
		if !paced {
			continue
		}
		for _, s := range o.sides {
			cfg := loadgen.Config{Conns: l.pacedConns, Rate: l.pacedRate, Warmup: l.warmup, Duration: l.pacedDuration, Timeout: l.timeout}
			res, err := runUndisturbed(ctx, sc, s, cfg, l, progress)
			if err != nil {
				return nil, fmt.Errorf("%s, %s, paced, round %d: %w", sc.name, s.label, round, err)
			}
			s.paced = append(s.paced, res)
			fmt.Fprintf(progress, "  %s paced %d/%d %-18s %9.0f req/s  p50 %s  p99 %s  late %d  others %s  %s\n", sc.name, round, l.rounds,
				s.label, res.RPS(), fmtDur(res.Latency.Quantile(0.50)), fmtDur(res.Latency.Quantile(0.99)), res.Late,
				fmtShare(res.others), fmtStatus(res.Status, res.Errors))
		}
	}
	return o, nil
}

// runUndisturbed runs cfg against s, and runs it again, up to l.reruns
// times, while processes outside the harness took more than l.maxOthers
// of the machine's CPU during the run: on a shared machine another
// program's burst would otherwise decide a side's figures. It keeps the
// last run, whose others share the report shows.
func runUndisturbed(ctx context.Context, sc scenario, s *side, cfg loadgen.Config, l load, progress io.Writer) (sample, error) {
	return untilUndisturbed(func() (sample, error) { return runSide(ctx, sc, s, cfg) }, l.maxOthers, l.reruns, func(res sample) {
		s.reruns++
		fmt.Fprintf(progress, "  %s %-18s others took %s of the CPU: run again\n", sc.name, s.label, fmtShare(res.others))
	})
}

// untilUndisturbed calls run until it returns an error, a sample whose
// others share is at most maxOthers, or reruns calls after the first;
// onRerun is told of each sample run again.
func untilUndisturbed(run func() (sample, error), maxOthers float64, reruns int, onRerun func(sample)) (sample, error) {
	for try := 0; ; try++ {
		res, err := run()
		if err != nil || res.others <= maxOthers || try == reruns {
			return res, err
		}
		onRerun(res)
	}
}

// runSide runs cfg against s, reading the CPU times as the measured
// period begins and ends.
func runSide(ctx context.Context, sc scenario, s *side, cfg loadgen.Config) (sample, error) {
	cfg.Addr, cfg.Path, cfg.Header = s.srv.addr, sc.path, http.Header{"x-api-key": {sc.apiKey}}
	var begin, end cpuReading
	if p := s.srv.proc; p != nil {
		cfg.OnMeasureStart = func() { begin = readCPU(p) }
		cfg.OnMeasureEnd = func() { end = readCPU(p) }
	}
	g, err := loadgen.New(cfg)
	if err != nil {
		return sample{}, err
	}
	res, err := g.Run(ctx)
	if err != nil {
		return sample{}, err
	}
	if s.srv.proc == nil {
		return sample{Result: res}, nil
	}
	if err := errors.Join(begin.err, end.err); err != nil {
		return sample{}, fmt.Errorf("read the CPU time of %s: %w", s.label, err)
	}
	others := 0.0
	if total := end.total - begin.total; total > 0 {
		others = max(0, float64((end.tasks-begin.tasks)-(end.ours-begin.ours))/float64(total))
	}
	return sample{Result: res, cpu: end.side - begin.side, others: others}, nil
}

// cpuReading is the CPU time used so far by a side's server (with its
// child processes), by the harness and everything it started, by all
// the machine's processes, and the machine's time in all.
type cpuReading struct {
	side, ours, tasks, total time.Duration
	err                      error
}

func readCPU(side *benchkit.Proc) cpuReading {
	trees, err := benchkit.TreeCPUs(side.PID(), os.Getpid())
	if err != nil {
		return cpuReading{err: err}
	}
	r := cpuReading{side: trees[0], ours: trees[1]}
	r.tasks, r.total, r.err = benchkit.TasksCPU()
	return r
}

// preflight sends one request to s and checks its status, so that a
// misconfiguration fails at once, with the answer shown, not after a run.
func preflight(ctx context.Context, sc scenario, s *side) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.srv.addr+sc.path, nil)
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
	if resp.StatusCode != sc.wantStatus && (sc.minorStatus == 0 || resp.StatusCode != sc.minorStatus) {
		return fmt.Errorf("preflight %s: %s answered GET %s with %s, want %d: %s",
			sc.name, s.label, sc.path, resp.Status, sc.wantStatus, strings.TrimSpace(string(body)))
	}
	return nil
}

// summary condenses a side's runs: medians of runs for req/s, the
// percentiles and the CPU per request, the largest max, and totals of
// statuses, errors and late requests.
type summary struct {
	runs                int
	rps                 float64
	p50, p90, p99, p999 time.Duration
	max                 time.Duration
	cpu                 time.Duration // per request
	others              float64       // the highest of the runs
	roundRPS            []float64
	responses           uint64
	late                uint64
	status              map[int]uint64
	errors              loadgen.Errors
}

func summarize(runs []sample) summary {
	s := summary{runs: len(runs), status: map[int]uint64{}}
	var p50, p90, p99, p999, cpu []time.Duration
	for _, r := range runs {
		s.roundRPS = append(s.roundRPS, r.RPS())
		p50 = append(p50, r.Latency.Quantile(0.50))
		p90 = append(p90, r.Latency.Quantile(0.90))
		p99 = append(p99, r.Latency.Quantile(0.99))
		p999 = append(p999, r.Latency.Quantile(0.999))
		cpu = append(cpu, r.cpuPerRequest())
		s.max = max(s.max, r.Latency.Max())
		s.others = max(s.others, r.others)
		s.responses += r.Responses
		s.late += r.Late
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
	s.cpu = median(cpu)
	return s
}

// roundRatio is the median over rounds of a side's figure (req/s or CPU
// per request) divided by its reference's in the same round. The sides
// of a round run back to back, so a round's ratio sees the machine as it
// was then; this machine's speed drifts by a third between rounds (a
// quiet round and a slow one), which a ratio of the two sides' own
// medians, taken from different rounds, would carry into the result.
// Sides with unequal numbers of runs fall back to the ratio of medians.
func roundRatio(runs, ref []sample, m metric) float64 {
	value := func(r sample) float64 {
		if m == rps {
			return r.RPS()
		}
		return float64(r.cpuPerRequest())
	}
	if len(runs) != len(ref) || len(runs) == 0 {
		a, b := summarize(runs), summarize(ref)
		if m == rps {
			return ratio(a.rps, b.rps)
		}
		return ratio(float64(a.cpu), float64(b.cpu))
	}
	rs := make([]float64, len(runs))
	for i := range runs {
		rs[i] = ratio(value(runs[i]), value(ref[i]))
	}
	return median(rs)
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

// evaluate checks an outcome: every side's statuses, then the
// scenario's targets whose sides both ran.
func evaluate(o *outcome) []check {
	sc := o.sc
	var checks []check
	for _, s := range o.sides {
		checks = append(checks, statusCheck(sc, s.label, summarize(append(slices.Clone(s.runs), s.paced...))))
	}
	for _, t := range sc.targets {
		s, ref := o.side(t.side), o.side(t.ref)
		if s == nil || ref == nil {
			continue
		}
		checks = append(checks, t.check(s, ref, o.sc))
	}
	return checks
}

// unchecked lists the targets of o whose sides did not both run.
func unchecked(o *outcome) []string {
	var out []string
	for _, t := range o.sc.targets {
		for _, label := range []string{t.side, t.ref} {
			if o.side(label) == nil {
				out = append(out, fmt.Sprintf("%s (%s not measured)", t.what(), label))
				break
			}
		}
	}
	return out
}

// what states the target.
func (t target) what() string {
	switch t.metric {
	case rps:
		return fmt.Sprintf("%s req/s ≥ %.2f × %s req/s", t.side, t.ratio, t.ref)
	case cpuPerRequest:
		return fmt.Sprintf("%s CPU per request ≤ %.2f × %s's", t.side, t.ratio, t.ref)
	case p99Extra:
		return fmt.Sprintf("%s p99 ≤ %s p99 + %s", t.side, t.ref, fmtDur(t.extra))
	default:
		return fmt.Sprintf("%s p99 added to a direct call, paced (its p99 − %s p99) ≤ %s", t.side, t.ref, fmtDur(t.extra))
	}
}

// check measures the target on s and its reference side ref.
func (t target) check(s, ref *side, sc scenario) check {
	c := check{what: t.what()}
	switch t.metric {
	case rps, cpuPerRequest:
		a, b := summarize(s.runs), summarize(ref.runs)
		r := roundRatio(s.runs, ref.runs, t.metric)
		if t.metric == rps {
			c.ok = b.rps > 0 && r >= t.ratio
			c.got = fmt.Sprintf("%.3f × (medians %.0f vs %.0f req/s)", r, a.rps, b.rps)
		} else {
			c.ok = a.cpu > 0 && b.cpu > 0 && r <= t.ratio
			c.got = fmt.Sprintf("%.3f × (medians %s vs %s µs)", r, fmtMicros(a.cpu), fmtMicros(b.cpu))
		}
	default:
		runs, refRuns := s.runs, ref.runs
		if t.metric == pacedP99Extra {
			runs, refRuns = s.paced, ref.paced
		}
		a, b := summarize(runs), summarize(refRuns)
		extra := a.p99 - b.p99
		c.ok = a.responses > 0 && b.responses > 0 && extra <= t.extra
		c.got = fmt.Sprintf("%s (%s vs %s)", fmtSignedDur(extra), fmtDur(a.p99), fmtDur(b.p99))
		if a.responses == 0 || b.responses == 0 {
			c.got = "not measured"
		}
	}
	return c
}

// ratio is a / b, 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// statusCheck requires responses, all with the scenario's status (or up
// to its share of minorStatus), and no errors.
func statusCheck(sc scenario, label string, s summary) check {
	what := fmt.Sprintf("every %s response is %d, no errors", label, sc.wantStatus)
	ok := s.responses > 0 && s.status[sc.wantStatus] == s.responses
	if sc.minorStatus != 0 {
		what = fmt.Sprintf("every %s response is %d (or %d, at most %.0f%%), no errors", label, sc.wantStatus, sc.minorStatus, 100*sc.minorShare)
		minor := s.status[sc.minorStatus]
		ok = s.responses > 0 && s.status[sc.wantStatus]+minor == s.responses && float64(minor) <= sc.minorShare*float64(s.responses)
	}
	return check{what: what, got: fmtStatus(s.status, s.errors), ok: ok && s.errors.Total() == 0}
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

// fmtShare prints a share as a percentage, e.g. "3%".
func fmtShare(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }

// fmtMicros prints a CPU time per request in microseconds, e.g. "23.4".
func fmtMicros(d time.Duration) string {
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Microsecond))
}
