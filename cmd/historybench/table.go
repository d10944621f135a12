package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// printLoad prints the load's table as soon as the load ends (or
// fails), so that a failure later does not lose it.
func (b *bench) printLoad(o *outcome) {
	fmt.Fprint(b.out, "\n"+loadTable(o.load)+"\n")
}

// loadTable is the per-day table of the load.
func loadTable(l *loadResult) string {
	var sb strings.Builder
	sb.WriteString("| day | events | seconds | events/s | CPUs busy: clickhouse-server | aggregator | loader | broker (kfake, this process) | machine (of CPUs) | others |\n")
	sb.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	var total cpuUse
	var wallAll float64
	for _, d := range l.days {
		u, w := d.use, d.wall.Seconds()
		fmt.Fprintf(&sb, "| %s | %s | %.1f | %s | %.2f | %.2f | %.2f | %.2f | %.2f (%.0f) | %.2f |\n", d.day.Format("2006-01-02"),
			count(d.events), w, count(int64(float64(d.events)/w)), u.clickhouse, u.aggregator, u.loader, u.broker, u.machine, u.cpus, u.others())
		// CPU-seconds, for the total's averages.
		total.clickhouse += u.clickhouse * w
		total.aggregator += u.aggregator * w
		total.loader += u.loader * w
		total.broker += u.broker * w
		total.machine += u.machine * w
		total.cpus += u.cpus * w
		wallAll += w
	}
	events, _, _ := l.total()
	if wallAll > 0 {
		per := func(x float64) float64 { return x / wallAll }
		t := cpuUse{clickhouse: per(total.clickhouse), aggregator: per(total.aggregator), loader: per(total.loader),
			broker: per(total.broker), machine: per(total.machine), cpus: per(total.cpus)}
		fmt.Fprintf(&sb, "| **total** | **%s** | **%.1f** | **%s** | %.2f | %.2f | %.2f | %.2f | %.2f (%.0f) | %.2f |\n",
			count(events), wallAll, count(int64(float64(events)/wallAll)), t.clickhouse, t.aggregator, t.loader, t.broker, t.machine, t.cpus, t.others())
	}
	fmt.Fprintf(&sb, "\nEach day: from the loader's start until every table holds the day (chstore watermarks). CPUs busy: CPU time / wall time of the day.\n")
	fmt.Fprintf(&sb, "Broker: retention.bytes %.1f MB per partition of the events topic; it held at most %.1f MB (%.1f MB in one partition); retention deleted %s records; %d records in the dead-letter topic.\n",
		float64(l.retentionBytes)/1e6, float64(l.peakHeld)/1e6, float64(l.peakFullest)/1e6, count(l.trimmed), l.deadLetters)
	if len(l.aggErrors) > 0 {
		fmt.Fprintf(&sb, "The aggregator logged %d ERROR lines (the first: %s).\n", len(l.aggErrors), l.aggErrors[0])
	}
	return sb.String()
}

// tables renders everything the run measured as markdown.
func (b *bench) tables(o *outcome) string {
	var sb strings.Builder
	sb.WriteString(o.header)
	switch {
	case o.reused != nil:
		fmt.Fprintf(&sb, "\nLoad: reused (--reuse), loaded %s: %s events.\n", o.reused.loaded.UTC().Format(time.RFC3339), count(int64(o.reused.events)))
	case o.load != nil:
		sb.WriteString("\n### Load, a day at a time\n\n")
		sb.WriteString(loadTable(o.load))
		if len(o.counts) > 0 {
			sb.WriteString("Stored, requests per table: ")
			for i, c := range o.counts {
				if i > 0 {
					sb.WriteString(", ")
				}
				fmt.Fprintf(&sb, "%s %s", c.table, count(int64(c.requests)))
			}
			sb.WriteString(".\n")
		}
	}
	fmt.Fprintf(&sb, "\n### Tables (active parts; merges %s)\n\n", mergeNote(o))
	sb.WriteString("| table | parts | rows | on disk | uncompressed |\n|---|--:|--:|--:|--:|\n")
	for _, t := range o.sizes {
		fmt.Fprintf(&sb, "| %s | %d | %s | %s | %s |\n", t.table, t.parts, count(int64(t.rows)), bytesStr(t.bytes), bytesStr(t.uncompressed))
	}

	fmt.Fprintf(&sb, "\n### Queries over HTTP (signed, loopback): 1 cold run (ClickHouse caches dropped%s), %d warm\n\n", pageCacheNote(b.cfg.dropPageCache), b.cfg.runs)
	sb.WriteString("| query | target | cold | median | max | rows | met (median) |\n|---|---|--:|--:|--:|--:|---|\n")
	var a, hw *result
	for i, r := range o.results {
		switch i {
		case 0:
			a = r
		case 1:
			hw = r
		}
		verdict := "✓"
		switch {
		case r.err != nil:
			verdict = "✗ " + cell(r.err.Error())
		case r.limit == 0:
			verdict = ""
		case !r.met():
			verdict = "✗"
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s | %s |\n", r.label, r.target, dur(r.cold), dur(r.median()), dur(r.max()), count(int64(r.rows)), verdict)
		if i == 1 && a != nil && hw != nil && a.err == nil && hw.err == nil && hw.median() > 0 {
			ratio := float64(a.median()) / float64(hw.median())
			mark := "✓"
			if ratio > 3 {
				mark = "✗"
			}
			fmt.Fprintf(&sb, "| (a) / (b), medians | ≤ 3× | %.2f× | **%.2f×** | | | %s |\n", float64(a.cold)/float64(hw.cold), ratio, mark)
		}
	}
	sb.WriteString("\nRows checked:\n")
	for _, r := range o.results {
		fmt.Fprintf(&sb, "- %s: %s\n", r.label[:3], r.detail)
	}

	sb.WriteString("\n### The reports' queries as the store runs them (chstore in this process, once, warm; system.query_log)\n\n")
	sb.WriteString("| query | tables read | rows read | read | result rows | server | store call |\n|---|---|--:|--:|--:|--:|--:|\n")
	for _, s := range o.store {
		if s.err != nil {
			fmt.Fprintf(&sb, "| %s | %s | | | | | |\n", s.label, cell(s.err.Error()))
			continue
		}
		if !s.logged {
			fmt.Fprintf(&sb, "| %s | not in system.query_log | | | | | %s |\n", s.label, dur(s.elapsed))
			continue
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %d ms | %s |\n", s.label, strings.Join(s.log.tables, ", "), count(int64(s.log.readRows)),
			bytesStr(s.log.readBytes), count(int64(s.log.resultRows)), s.log.durationMS, dur(s.elapsed))
	}
	if o.problem != nil {
		fmt.Fprintf(&sb, "\n**Problem:** %s\n", cell(o.problem.Error()))
	}
	return sb.String()
}

func pageCacheNote(drop bool) string {
	if drop {
		return ", and the OS page cache"
	}
	return "; not the OS page cache"
}

// cell makes s fit a markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}

// count formats n with thousands separators.
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// dur formats a duration for the tables: ms below 10 s, else s.
func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	case d < 100*time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%.0f s", d.Seconds())
	}
}

func bytesStr(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
}
