package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmallRunFillsEveryRow runs the whole benchmark on tiny catalogs,
// fleet included, against a freshly built tollgate, and requires a figure
// in every cell: no step may time out, fail or be skipped.
func TestSmallRunFillsEveryRow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tollgate and runs it: not in -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tollgate")
	build := exec.Command("go", "build", "-o", bin, "github.com/tollgate/tollgate/cmd/tollgate")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tollgate: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	out := filepath.Join(dir, "table.md")
	var stdout, stderr bytes.Buffer
	code := cli(ctx, []string{"--sizes", "300", "--baseline", "100", "--ops", "10", "--import-rows", "1000",
		"--fleet-changes", "10", "--step-timeout", "20s", "--tollgate", bin, "--out", out,
		"--work-dir", filepath.Join(dir, "work")}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d\n%s", code, stderr.String())
	}
	t.Logf("\n%s", stdout.String())

	rows := tableRows(stdout.String())
	if len(rows) != 16 {
		t.Fatalf("%d rows, want 16 (every measurement, fleet included, and the wall time)", len(rows))
	}
	for _, cells := range rows {
		if len(cells) != 4 {
			t.Fatalf("row %q has %d cells, want 4 (measurement, target, 100 keys, 300 keys)", cells[0], len(cells))
		}
		for i, c := range cells[2:] {
			if strings.HasPrefix(cells[0], "ImportApiKeys") && i == 0 {
				if c != "—" {
					t.Errorf("%s at the baseline: %q, want — (measured at the smallest size only)", cells[0], c)
				}
				continue
			}
			if !strings.ContainsAny(c, "0123456789") || strings.Contains(c, "timed out") || strings.Contains(c, "failed") || strings.Contains(c, "not reached") {
				t.Errorf("%s, column %d: %q, want a figure", cells[0], i+1, c)
			}
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", stderr.String())
	}
}

// tableRows returns the cells of the markdown table's body rows.
func tableRows(s string) [][]string {
	var rows [][]string
	body := false
	for line := range strings.SplitSeq(s, "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		if strings.HasPrefix(line, "|---") {
			body = true
			continue
		}
		if !body {
			continue
		}
		var cells []string
		for c := range strings.SplitSeq(strings.Trim(line, "|"), " | ") {
			cells = append(cells, strings.TrimSpace(c))
		}
		rows = append(rows, cells)
	}
	return rows
}

func TestQuantileIsNearestRank(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var d []time.Duration
		for _, n := range ns {
			d = append(d, time.Duration(n)*time.Millisecond)
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100 down to 1: the order must not matter
	}
	tests := []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"none", nil, 0.99, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of four", ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"max", ms(hundred...), 1, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (latencies{samples: tt.samples}).quantile(tt.q); got != tt.want {
				t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}
