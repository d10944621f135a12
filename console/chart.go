package console

import (
	"fmt"
	"html"
	"html/template"
	"strconv"
	"strings"
	"time"
)

// Charts are SVG written by the server into the page: no script, no
// charting library, nothing fetched; they render wherever the page does
// (a phone, a printout, a test's headless browser), and the numbers
// behind each bar are in its <title> and in the table beside the chart.
// A stacked bar chart is all the console needs (requests per bucket by
// decision), so a library's generality would buy nothing.

// series is one stacked layer of a chart.
type series struct {
	Name   string
	Color  string
	Values []int64 // one per bucket
}

// chart is a stacked bar chart over time buckets.
type chart struct {
	Title   string
	Buckets []time.Time
	Layout  string // time layout of the bucket labels
	Series  []series
}

// Decisions, in the order charts stack them, with their colours.
var decisions = []struct{ Name, Label, Color string }{
	{"admitted", "admitted", "#2f7d32"},
	{"throttled", "throttled", "#e6a100"},
	{"quota_exceeded", "quota exceeded", "#c62828"},
	{"forbidden", "forbidden", "#6d4c9f"},
}

const (
	chartW, chartH       = 720.0, 220.0
	padL, padR, padT, pB = 56.0, 8.0, 10.0, 24.0
)

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v int64) int64 {
	if v <= 0 {
		return 1
	}
	p := int64(1)
	for p*10 <= v {
		p *= 10
	}
	for _, m := range []int64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// totals is the sum of the series per bucket.
func (c *chart) totals() []int64 {
	t := make([]int64, len(c.Buckets))
	for _, s := range c.Series {
		for i, v := range s.Values {
			t[i] += v
		}
	}
	return t
}

// SVG renders the chart. Every text in it is escaped here.
func (c *chart) SVG() template.HTML {
	var b strings.Builder
	n := len(c.Buckets)
	totals := c.totals()
	var top int64
	for _, t := range totals {
		top = max(top, t)
	}
	ymax := niceMax(top)
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="%s" preserveAspectRatio="none">`, chartW, chartH, html.EscapeString(c.Title))
	label := func(v float64) string {
		if v != float64(int64(v)) {
			return strconv.FormatFloat(v, 'f', 1, 64)
		}
		return short(int64(v))
	}
	plotW, plotH := chartW-padL-padR, chartH-padT-pB
	// Grid lines and the y axis: 0, half, the top.
	for _, f := range []float64{0, 0.5, 1} {
		y := padT + plotH*(1-f)
		fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#ddd" stroke-width="1"/>`, padL, y, chartW-padR, y)
		fmt.Fprintf(&b, `<text x="%g" y="%.1f" text-anchor="end" font-size="11" fill="#555">%s</text>`, padL-6, y+4, label(float64(ymax)*f))
	}
	if n > 0 {
		slot := plotW / float64(n)
		bw := max(slot*0.8, 1)
		for i := range n {
			x := padL + slot*float64(i) + (slot-bw)/2
			y := padT + plotH
			for _, s := range c.Series {
				v := s.Values[i]
				if v == 0 {
					continue
				}
				h := plotH * float64(v) / float64(ymax)
				y -= h
				fmt.Fprintf(&b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"><title>%s %s: %d</title></rect>`,
					x, y, bw, h, s.Color, html.EscapeString(c.Buckets[i].UTC().Format(c.Layout)), html.EscapeString(s.Name), v)
			}
		}
		// x labels: the first, middle and last buckets.
		for _, i := range []int{0, n / 2, n - 1} {
			x := padL + slot*(float64(i)+0.5)
			anchor := "middle"
			if i == 0 {
				anchor = "start"
			} else if i == n-1 {
				anchor = "end"
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%g" text-anchor="%s" font-size="11" fill="#555">%s</text>`, x, chartH-6, anchor, html.EscapeString(c.Buckets[i].UTC().Format(c.Layout)))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// short writes n with a k, M or G suffix past a thousand.
func short(n int64) string {
	switch {
	case n >= 1e9:
		return strconv.FormatFloat(float64(n)/1e9, 'g', 3, 64) + "G"
	case n >= 1e6:
		return strconv.FormatFloat(float64(n)/1e6, 'g', 3, 64) + "M"
	case n >= 1e3:
		return strconv.FormatFloat(float64(n)/1e3, 'g', 3, 64) + "k"
	}
	return strconv.FormatInt(n, 10)
}

// decisionChart fills a chart from /v1/usage rows by decision: every
// bucket of [from, to) at the granularity, zeros included.
func decisionChart(title string, rep reportJSON, from, to time.Time, granularity string) *chart {
	step, layout := stepOf(granularity)
	var buckets []time.Time
	index := map[int64]int{}
	for t := truncate(from, granularity); t.Before(to); t = next(t, granularity, step) {
		index[t.Unix()] = len(buckets)
		buckets = append(buckets, t)
	}
	c := &chart{Title: title, Buckets: buckets, Layout: layout}
	for _, d := range decisions {
		c.Series = append(c.Series, series{Name: d.Label, Color: d.Color, Values: make([]int64, len(buckets))})
	}
	for _, r := range rep.Rows {
		i, ok := index[r.Time.Unix()]
		if !ok {
			continue
		}
		for j, d := range decisions {
			if d.Name == r.Decision {
				c.Series[j].Values[i] += r.Requests
			}
		}
	}
	return c
}

func stepOf(granularity string) (time.Duration, string) {
	switch granularity {
	case "minute":
		return time.Minute, "15:04"
	case "hour":
		return time.Hour, "Jan 2 15:04"
	default:
		return 24 * time.Hour, "Jan 2"
	}
}

func truncate(t time.Time, granularity string) time.Time {
	t = t.UTC()
	switch granularity {
	case "minute":
		return t.Truncate(time.Minute)
	case "hour":
		return t.Truncate(time.Hour)
	case "month":
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func next(t time.Time, granularity string, step time.Duration) time.Time {
	if granularity == "month" {
		return t.AddDate(0, 1, 0)
	}
	return t.Add(step)
}
