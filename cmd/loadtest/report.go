package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"
)

// report is a whole run: its settings and every scenario's outcome.
type report struct {
	command      string
	date         time.Time
	cfg          runConfig
	numCPU       int
	nginxVersion string
	outcomes     []*outcome
}

// failures lists the checks that did not hold, as "scenario: check (got)".
func (r *report) failures() []string {
	var out []string
	for _, o := range r.outcomes {
		for _, c := range evaluate(o) {
			if !c.ok {
				out = append(out, fmt.Sprintf("%s: %s (got %s)", o.sc.name, c.what, c.got))
			}
		}
	}
	return out
}

// settings describes the run as key/value pairs.
func (r *report) settings() [][2]string {
	tollgate := r.cfg.tollgate + " (data planes fasthttp, the default, and net/http: a process each)"
	if r.cfg.baselineOnly {
		tollgate = "not measured (--baseline-only)"
	}
	nginx := `not measured (--nginx "")`
	if r.cfg.nginx != "" {
		nginx = fmt.Sprintf("%s (%s), 2 worker processes, access log off", r.cfg.nginx, r.nginxVersion)
	}
	paced := "none (--paced-duration 0)"
	if r.cfg.pacedDuration > 0 {
		paced = fmt.Sprintf("%.0f req/s on %d connections, %v measured per run, after %v warm-up",
			r.cfg.pacedRate, r.cfg.pacedConns, r.cfg.pacedDuration, r.cfg.warmup)
	}
	return [][2]string{
		{"command", r.command},
		{"date", r.date.Format(time.RFC3339)},
		{"GOGC", r.cfg.gogc + " (every Go server process, baselines and tollgate alike)"},
		{"connections", fmt.Sprintf("%d, one request in flight on each", r.cfg.conns)},
		{"duration", fmt.Sprintf("%v measured per run, after %v warm-up", r.cfg.duration, r.cfg.warmup)},
		{"paced runs", paced},
		{"rounds", fmt.Sprintf("%d per side, interleaved; medians of rounds compared", r.cfg.rounds)},
		{"runs again", r.rerunsSetting()},
		{"runtime.NumCPU()", fmt.Sprint(r.numCPU)},
		{"Go", fmt.Sprintf("%s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)},
		{"nginx", nginx},
		{"tollgate", tollgate},
	}
}

// rerunsSetting says when a run is run again, and, once runs were made,
// how many were.
func (r *report) rerunsSetting() string {
	times := fmt.Sprintf("up to %d times", r.cfg.reruns)
	if r.cfg.reruns == 1 {
		times = "once at most"
	}
	s := fmt.Sprintf("when others took more than %s of the CPU, %s", fmtShare(r.cfg.maxOthers), times)
	if len(r.outcomes) == 0 {
		return s
	}
	var n int
	var who []string
	for _, o := range r.outcomes {
		for _, sd := range o.sides {
			if sd.reruns > 0 {
				n += sd.reruns
				who = append(who, fmt.Sprintf("%s %s %d", o.sc.name, sd.label, sd.reruns))
			}
		}
	}
	if n == 0 {
		return s + "; none was"
	}
	return fmt.Sprintf("%s; %d were (%s)", s, n, strings.Join(who, ", "))
}

// notes say how the figures were taken and what differs between the
// sides, under the tables.
var notes = []string{
	"CPU µs/req: user + system CPU time of the side's server process and its children (nginx's master and " +
		"workers) over the measured period, from /proc in 10 ms ticks, divided by the responses of that period. " +
		"A proxy's figure leaves out the upstream's CPU; the load generator's, on the same cores, counts for no side; " +
		"so does the kernel's softirq time, where loopback packets are mostly handled, which it charges to no process.",
	"Checks of req/s and CPU per request compare each round's two figures (the sides of a round run back to " +
		"back) and take the median of those ratios: this machine's speed drifts by a third between rounds, which " +
		"the tables' medians, each from its own rounds, carry. The tables' \"× nginx\" columns are those medians' ratios.",
	"others: the share of the machine's CPU (user + system) that processes the harness did not start used during " +
		"the measured period, the highest of the rounds kept. Anything above a few percent means another program's " +
		"load was on the cores and the side's figures are skewed by it; such a run is run again (\"runs again\" above).",
	"Paced runs: at 64 saturating connections on a machine whose cores the load generator shares, p99 is mostly " +
		"queueing. The paced runs send a moderate rate on a few connections, so their latencies are the request " +
		"path's; \"added\" is a side's paced p50/p99 minus the direct call's, medians of the rounds. Latency counts " +
		"from the write of a request; \"late\" counts requests whose slot passed before the previous response on " +
		"their connection was in (0: no waiting hidden).",
	"What differs: tollgate meters every request (an event on its queue, written to its embedded usage store) and " +
		"sends RateLimit headers; nginx keeps no access log and sends none. Both check the key, throttle by plan and " +
		"strip the stage; the bare proxies only strip the stage.",
}

// writeIntro prints the settings before the runs begin.
func (r *report) writeIntro(w io.Writer) {
	for _, kv := range r.settings() {
		fmt.Fprintf(w, "%-17s %s\n", kv[0]+":", kv[1])
	}
}

// A table is a header and rows of cells.
type table struct {
	header []string
	rows   [][]string
}

// saturatedTable is a scenario's figures at the load's connections.
func saturatedTable(o *outcome) table {
	t := table{header: []string{"side", "req/s", "× nginx", "p50", "p90", "p99", "p99.9", "max", "CPU µs/req", "CPU × nginx", "others", "req/s by round"}}
	var ref *summary
	if s := o.side(sideNginx); s != nil {
		sum := summarize(s.runs)
		ref = &sum
	}
	for _, s := range o.sides {
		sum := summarize(s.runs)
		rounds := make([]string, len(sum.roundRPS))
		for i, v := range sum.roundRPS {
			rounds[i] = fmt.Sprintf("%.0f", v)
		}
		rpsRatio, cpuRatio := "–", "–"
		if ref != nil {
			rpsRatio = fmtRatio(sum.rps, ref.rps)
			cpuRatio = fmtRatio(float64(sum.cpu), float64(ref.cpu))
		}
		t.rows = append(t.rows, []string{s.label, fmt.Sprintf("%.0f", sum.rps), rpsRatio, fmtDur(sum.p50), fmtDur(sum.p90),
			fmtDur(sum.p99), fmtDur(sum.p999), fmtDur(sum.max), fmtMicros(sum.cpu), cpuRatio, fmtShare(sum.others), strings.Join(rounds, " ")})
	}
	return t
}

// pacedTable is a scenario's paced figures; ok is false when it has none.
func pacedTable(o *outcome) (t table, ok bool) {
	t = table{header: []string{"side", "req/s", "p50", "p99", "p99.9", "added p50", "added p99", "late", "CPU µs/req", "CPU × nginx", "others"}}
	var direct, nginx *summary
	if s := o.side(sideDirect); s != nil && len(s.paced) > 0 {
		sum := summarize(s.paced)
		direct = &sum
	}
	if s := o.side(sideNginx); s != nil && len(s.paced) > 0 {
		sum := summarize(s.paced)
		nginx = &sum
	}
	for _, s := range o.sides {
		if len(s.paced) == 0 {
			continue
		}
		sum := summarize(s.paced)
		added50, added99, cpuRatio := "–", "–", "–"
		if direct != nil {
			added50, added99 = fmtSignedDur(sum.p50-direct.p50), fmtSignedDur(sum.p99-direct.p99)
		}
		if nginx != nil {
			cpuRatio = fmtRatio(float64(sum.cpu), float64(nginx.cpu))
		}
		t.rows = append(t.rows, []string{s.label, fmt.Sprintf("%.0f", sum.rps), fmtDur(sum.p50), fmtDur(sum.p99), fmtDur(sum.p999),
			added50, added99, fmt.Sprint(sum.late), fmtMicros(sum.cpu), cpuRatio, fmtShare(sum.others)})
	}
	return t, len(t.rows) > 0
}

// fmtRatio prints a / b as "0.873", "–" when b is 0.
func fmtRatio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f", a/b)
}

// writeText prints the table, aligned: the first column to the left,
// the others to the right.
func (t table) writeText(w io.Writer) {
	widths := make([]int, len(t.header))
	for _, row := range append([][]string{t.header}, t.rows...) {
		for i, cell := range row {
			widths[i] = max(widths[i], len([]rune(cell)))
		}
	}
	for _, row := range append([][]string{t.header}, t.rows...) {
		var b strings.Builder
		for i, cell := range row {
			pad := strings.Repeat(" ", widths[i]-len([]rune(cell)))
			switch {
			case i == 0:
				b.WriteString(cell + pad)
			default:
				b.WriteString("  " + pad + cell)
			}
		}
		fmt.Fprintln(w, b.String())
	}
}

// writeMarkdown writes the table as markdown.
func (t table) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(t.header, " | "), strings.Repeat("---|", len(t.header)))
	for _, row := range t.rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// writeText prints the tables and the checks per scenario.
func (r *report) writeText(w io.Writer) {
	for _, o := range r.outcomes {
		fmt.Fprintf(w, "\n== %s ==\n", o.sc.title)
		saturatedTable(o).writeText(w)
		if t, ok := pacedTable(o); ok {
			fmt.Fprintf(w, "paced, %.0f req/s on %d connections:\n", r.cfg.pacedRate, r.cfg.pacedConns)
			t.writeText(w)
		}
		for _, c := range evaluate(o) {
			fmt.Fprintf(w, "  %s  %s: %s\n", verdict(c.ok), c.what, c.got)
		}
		for _, u := range unchecked(o) {
			fmt.Fprintf(w, "  ----  not checked: %s\n", u)
		}
	}
	if failed := r.failures(); len(failed) == 0 {
		fmt.Fprintf(w, "\nall targets met\n")
	} else {
		fmt.Fprintf(w, "\n%d target(s) missed\n", len(failed))
	}
}

// writeMarkdown writes the same as writeText as markdown, with the notes.
func (r *report) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "# tollgate load test\n\n")
	for _, kv := range r.settings() {
		key, value := kv[0], kv[1]
		if key == "command" {
			value = "`" + value + "`"
		}
		fmt.Fprintf(w, "- %s: %s\n", key, value)
	}
	for _, o := range r.outcomes {
		fmt.Fprintf(w, "\n## %s\n\n", o.sc.title)
		fmt.Fprintf(w, "At %d connections:\n\n", r.cfg.conns)
		saturatedTable(o).writeMarkdown(w)
		if t, ok := pacedTable(o); ok {
			fmt.Fprintf(w, "\nPaced, %.0f req/s on %d connections:\n\n", r.cfg.pacedRate, r.cfg.pacedConns)
			t.writeMarkdown(w)
		}
		fmt.Fprintf(w, "\n| check | measured | verdict |\n|---|---|---|\n")
		for _, c := range evaluate(o) {
			fmt.Fprintf(w, "| %s | %s | %s |\n", c.what, c.got, verdict(c.ok))
		}
		for _, u := range unchecked(o) {
			fmt.Fprintf(w, "| %s | – | not checked |\n", u)
		}
	}
	fmt.Fprintf(w, "\n## Notes\n\n")
	for _, n := range notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	if failed := r.failures(); len(failed) == 0 {
		fmt.Fprintf(w, "\n**All targets met.**\n")
	} else {
		fmt.Fprintf(w, "\n**%d target(s) missed.**\n", len(failed))
	}
}
