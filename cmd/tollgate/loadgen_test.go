package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/history"
	"github.com/tollgate/tollgate/schemas"
)

// loadgen history writes the generator's events onto the events topic,
// each once and whole (as the wire format carries them), and its
// --config-out file is a configuration that holds the events' keys.
func TestLoadgenHistoryWritesTheEvents(t *testing.T) {
	f := newFleet(t)
	file := filepath.Join(t.TempDir(), "history.json")
	out, err := runCLI("loadgen", "history", "--kafka", f.kafka.brokers[0], "--keys", "20", "--days", "1", "--rate", "6",
		"--start", "2026-11-01", "--seed", "7", "--batch", "500", "--config-out", file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "wrote 2880 events") {
		t.Errorf("output %q, want it to report 2880 events", out)
	}
	k, err := f.kafka.config()
	if err != nil {
		t.Fatal(err)
	}
	got := readEvents(t, k)
	var want []schemas.UsageEvent
	c := history.Config{Keys: 20, Days: 1, Rate: 6, Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Seed: 7}
	if err := c.Generate(1000, func(b []schemas.UsageEvent) error { want = append(want, b...); return nil }); err != nil {
		t.Fatal(err)
	}
	byID := func(a, b schemas.UsageEvent) int { return slices.Compare(a.ID[:], b.ID[:]) }
	slices.SortFunc(got, byID)
	slices.SortFunc(want, byID)
	if len(got) != len(want) || !slices.Equal(got, want) {
		t.Fatalf("the topic holds %d events, the history %d (or they differ)", len(got), len(want))
	}

	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := catalog.ParseFile(file, b)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pf.Catalog.APIKeys); n != 20 {
		t.Errorf("the configuration holds %d keys, want 20", n)
	}
}

func TestLoadgenHistoryFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--keys", "0"}, "--keys: 0 is not from 1"},
		{[]string{"--rate", "-1"}, "--rate:"},
		{[]string{"--start", "November"}, `--start: "November" is not a date`},
		{nil, "--kafka is required"},
	} {
		_, err := runCLI(append([]string{"loadgen", "history"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
}
