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
	command  string
	date     time.Time
	cfg      runConfig
	numCPU   int
	outcomes []*outcome
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
	tollgate := r.cfg.tollgate
	if r.cfg.baselineOnly {
		tollgate = "not measured (--baseline-only)"
	}
	return [][2]string{
		{"command", r.command},
		{"date", r.date.Format(time.RFC3339)},
		{"GOGC", r.cfg.gogc + " (every server process, baselines and tollgate alike)"},
		{"connections", fmt.Sprintf("%d, one request in flight on each", r.cfg.conns)},
		{"duration", fmt.Sprintf("%v measured per run, after %v warm-up", r.cfg.duration, r.cfg.warmup)},
		{"rounds", fmt.Sprintf("%d per side, interleaved; medians of rounds compared", r.cfg.rounds)},
		{"runtime.NumCPU()", fmt.Sprint(r.numCPU)},
		{"Go", fmt.Sprintf("%s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)},
		{"tollgate", tollgate},
	}
}

// writeIntro prints the settings before the runs begin.
func (r *report) writeIntro(w io.Writer) {
	for _, kv := range r.settings() {
		fmt.Fprintf(w, "%-17s %s\n", kv[0]+":", kv[1])
	}
}

// rows returns a scenario's table: one row per side.
func rows(o *outcome) [][]string {
	sides := []*side{o.baseline}
	if o.tollgate != nil {
		sides = append(sides, o.tollgate)
	}
	var out [][]string
	for _, s := range sides {
		sum := summarize(s.rounds)
		rounds := make([]string, len(sum.roundRPS))
		for i, v := range sum.roundRPS {
			rounds[i] = fmt.Sprintf("%.0f", v)
		}
		out = append(out, []string{s.label, fmt.Sprintf("%.0f", sum.rps), fmtDur(sum.p50), fmtDur(sum.p90),
			fmtDur(sum.p99), fmtDur(sum.p999), fmtDur(sum.max), strings.Join(rounds, " ")})
	}
	return out
}

var columns = []string{"side", "req/s", "p50", "p90", "p99", "p99.9", "max", "req/s by round"}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// writeText prints a table and the checks per scenario.
func (r *report) writeText(w io.Writer) {
	for _, o := range r.outcomes {
		fmt.Fprintf(w, "\n== %s ==\n", o.sc.title)
		for _, row := range append([][]string{columns}, rows(o)...) {
			fmt.Fprintf(w, "%-18s %9s %10s %10s %10s %10s %10s   %s\n",
				row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])
		}
		for _, c := range evaluate(o) {
			fmt.Fprintf(w, "  %s  %s: %s\n", verdict(c.ok), c.what, c.got)
		}
	}
	if failed := r.failures(); len(failed) == 0 {
		fmt.Fprintf(w, "\nall targets met\n")
	} else {
		fmt.Fprintf(w, "\n%d target(s) missed\n", len(failed))
	}
}

// writeMarkdown writes the same as writeText as markdown.
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
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(columns, " | "), strings.Repeat("---|", len(columns)))
		for _, row := range rows(o) {
			fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
		}
		fmt.Fprintf(w, "\n| check | measured | verdict |\n|---|---|---|\n")
		for _, c := range evaluate(o) {
			fmt.Fprintf(w, "| %s | %s | %s |\n", c.what, c.got, verdict(c.ok))
		}
	}
	if failed := r.failures(); len(failed) == 0 {
		fmt.Fprintf(w, "\n**All targets met.**\n")
	} else {
		fmt.Fprintf(w, "\n**%d target(s) missed.**\n", len(failed))
	}
}
