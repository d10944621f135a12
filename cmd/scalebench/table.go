package main

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"
)

// miss marks a figure that misses its target.
const miss = " ✗"

// row is one line of the table: a measurement, its target, and how a
// size's result shows it.
type row struct {
	label, target string
	cell          func(r *sizeResult) string
}

// table renders the results as markdown: one column per size, the
// baseline's first.
func table(cfg config, results []*sizeResult, at time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Scale benchmark of %s, %s: %d CPUs, --ops %d, --step-timeout %v.\n",
		cfg.tollgate, at.UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), cfg.ops, cfg.stepTimeout)
	fmt.Fprintf(&b, "Targets are for 1M keys; %s marks a figure that misses its target. Ratios are to the baseline (%s keys).\n\n",
		strings.TrimSpace(miss), count(cfg.baseline))
	b.WriteString("| measurement | target |")
	for i, r := range results {
		fmt.Fprintf(&b, " %s keys", count(r.keys))
		if i == 0 {
			b.WriteString(" (baseline)")
		}
		b.WriteString(" |")
	}
	b.WriteString("\n|---|---|")
	b.WriteString(strings.Repeat("---|", len(results)))
	b.WriteString("\n")
	for _, rw := range rows(cfg, results[0]) {
		fmt.Fprintf(&b, "| %s | %s |", rw.label, rw.target)
		for _, r := range results {
			c := rw.cell(r)
			if r.err != nil {
				c = failure(r.err)
			}
			fmt.Fprintf(&b, " %s |", c)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func rows(cfg config, base *sizeResult) []row {
	var rs []row
	for i, op := range adminOps {
		rs = append(rs, row{op + ", p50 / p99", "p99 ≤ 10 ms and ≤ 2× baseline", func(r *sizeResult) string {
			return opCell(r.ops[i], base.ops[i], r == base)
		}})
	}
	rs = append(rs,
		row{"serve: first start from the file to serving the last key", "≤ 30 s", func(r *sizeResult) string {
			return timingCell(r.serveStart, 30*time.Second)
		}},
		row{"serve: restart from its data folder to serving the last key", "≤ 5 s", func(r *sizeResult) string {
			return timingCell(r.serveRestart, 5*time.Second)
		}},
		row{"serve: RSS after start", "≤ 1 KB per key", func(r *sizeResult) string {
			return rssCell(r, base, func(r *sizeResult) memory { return r.rssStart }, 1024)
		}},
		row{"serve: RSS after the admin changes", "no growth with the changes", func(r *sizeResult) string {
			return rssGrowthCell(r)
		}},
		row{"serve: RSS after the restart", "≤ 1 KB per key", func(r *sizeResult) string {
			return rssCell(r, base, func(r *sizeResult) memory { return r.rssRestart }, 1024)
		}},
		row{"GetApiKeys, page of 500: slowest (first, middle, last)", "≤ 50 ms", func(r *sizeResult) string {
			return pagesCell(r.pages)
		}},
		row{fmt.Sprintf("ImportApiKeys, %s rows with UsagePlanIds", count(cfg.importRows)), "≤ 5 s", func(r *sizeResult) string {
			if !r.imported {
				return "—"
			}
			return timingCell(r.importKeys, 5*time.Second)
		}},
	)
	if !cfg.skipFleet {
		rs = append(rs,
			row{"fleet: `reportapi --config` applies the file, to healthy", "—", func(r *sizeResult) string {
				return timingCell(r.fleetLoad, 0)
			}},
			row{"fleet: enforcer first start from the config log to serving the last key", "≤ 30 s", func(r *sizeResult) string {
				return timingCell(r.enforcerStart, 30*time.Second)
			}},
			row{"fleet: enforcer RSS after its first start", "— (measured)", func(r *sizeResult) string {
				return rssCell(r, base, func(r *sizeResult) memory { return r.rssEnforcer }, 0)
			}},
			row{"fleet: enforcer restart from its snapshot to serving the last key", "≤ 3 s", func(r *sizeResult) string {
				return timingCell(r.enforcerRestart, 3*time.Second)
			}},
			row{"fleet: admin change to both enforcers, p50 / p99", "p99 ≤ 1 s", func(r *sizeResult) string {
				return propagationCell(r.propagation)
			}},
		)
	}
	return append(rs, row{"wall time of the size", "—", func(r *sizeResult) string { return dur(r.wall) }})
}

func opCell(l, base latencies, isBase bool) string {
	p50, p99 := l.quantile(0.5), l.quantile(0.99)
	if l.err != nil {
		if len(l.samples) == 0 {
			return failure(l.err)
		}
		return fmt.Sprintf("%s: %d of %d calls, %s / %s", failure(l.err), len(l.samples), l.want, dur(p50), dur(p99))
	}
	var notes []string
	if len(l.samples) < l.want {
		notes = append(notes, fmt.Sprintf("%d calls", len(l.samples)))
	}
	over := p99 > 10*time.Millisecond
	if !isBase && base.err == nil && base.quantile(0.99) > 0 {
		ratio := float64(p99) / float64(base.quantile(0.99))
		notes = append(notes, fmt.Sprintf("%.1f×", ratio))
		over = over || ratio > 2
	}
	s := dur(p50) + " / " + dur(p99)
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, "; ") + ")"
	}
	if over {
		s += miss
	}
	return s
}

// timingCell shows a duration; a target of 0 means none.
func timingCell(t timing, target time.Duration) string {
	if t.err != nil {
		return failure(t.err)
	}
	s := dur(t.d)
	if target > 0 && t.d > target {
		s += miss
	}
	return s
}

// rssCell shows an RSS (of), and for sizes above the baseline the bytes
// each key beyond the baseline's added to it, marked if over limit (0:
// none).
func rssCell(r, base *sizeResult, of func(*sizeResult) memory, limit float64) string {
	m, b := of(r), of(base)
	if m.err != nil {
		return failure(m.err)
	}
	s := "RSS " + mib(m.rss)
	if r == base || b.err != nil || r.keys <= base.keys {
		return s
	}
	perKey := float64(m.rss-b.rss) / float64(r.keys-base.keys)
	s = fmt.Sprintf("%.0f B/key (%s)", perKey, s)
	if limit > 0 && perKey > limit {
		s += miss
	}
	return s
}

func rssGrowthCell(r *sizeResult) string {
	switch {
	case r.rssChanged.err != nil:
		return failure(r.rssChanged.err)
	case r.rssStart.err != nil:
		return failure(r.rssStart.err)
	}
	d := r.rssChanged.rss - r.rssStart.rss
	sign := "+"
	if d < 0 {
		sign, d = "−", -d
	}
	return fmt.Sprintf("%s%s after %d changes (RSS %s)", sign, mib(d), r.changes, mib(r.rssChanged.rss))
}

func pagesCell(l latencies) string {
	if len(l.samples) == 0 {
		return failure(l.err)
	}
	slowest := l.quantile(1)
	s := fmt.Sprintf("%s (%s, %s, %s; %d pages)", dur(slowest), dur(l.samples[0]), dur(l.samples[len(l.samples)/2]), dur(l.samples[len(l.samples)-1]), len(l.samples))
	if l.err != nil {
		return failure(l.err) + ": " + s
	}
	if slowest > 50*time.Millisecond {
		s += miss
	}
	return s
}

func propagationCell(l latencies) string {
	if len(l.samples) == 0 {
		return failure(l.err)
	}
	p99 := l.quantile(0.99)
	s := fmt.Sprintf("%s / %s (%d changes)", dur(l.quantile(0.5)), dur(p99), len(l.samples))
	if l.err != nil {
		return failure(l.err) + ": " + s
	}
	if p99 > time.Second {
		s += miss
	}
	return s
}

// failure shows why a figure is missing, on one line of a table cell.
func failure(err error) string {
	var to timedOut
	switch {
	case errors.As(err, &to):
		return to.Error()
	case errors.Is(err, errNotReached):
		return "not reached"
	}
	s := strings.Join(strings.Fields(err.Error()), " ")
	if r := []rune(s); len(r) > 120 {
		s = string(r[:117]) + "..."
	}
	return "failed: " + strings.ReplaceAll(s, "|", `\|`)
}

// dur shows a duration with three significant digits at most.
func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// count shows a number of keys: 1000 as 1k, 1000000 as 1M.
func count(n int) string {
	switch {
	case n >= 1e6 && n%1e6 == 0:
		return fmt.Sprintf("%dM", n/1e6)
	case n >= 1e3 && n%1e3 == 0:
		return fmt.Sprintf("%dk", n/1e3)
	default:
		return fmt.Sprint(n)
	}
}
