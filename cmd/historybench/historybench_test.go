package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The benchmark itself needs ClickHouse and minutes (make bench-history);
// these tests cover its pure parts.

func fakeBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tollgate")
	if err := os.WriteFile(p, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseFlags(t *testing.T) {
	bin := fakeBinary(t)
	cfg, err := parseFlags([]string{"--tollgate", bin}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.keys != 10000 || cfg.days != 31 || cfg.rate != 14 || cfg.start != time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC) {
		t.Errorf("defaults %+v, want issue #12's size", cfg)
	}
	if n := cfg.history(cfg.start, cfg.days).Total(); n != 104_160_000 {
		t.Errorf("default history of %d events, want 104,160,000", n)
	}
	if dsn, _ := cfg.dsn(); dsn != "clickhouse://127.0.0.1:9000/tollgate_history" {
		t.Errorf("dsn %q", dsn)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "14.1"}, "not a whole number"},
		{[]string{"--database", "default"}, "--database"},
		{[]string{"--database", "a-b"}, "--database"},
		{[]string{"--days", "93"}, "--days"},
		{[]string{"--start", "1 Oct"}, "--start"},
		{[]string{"--retention-days", "1"}, "--retention-days"},
		{[]string{"--clickhouse", "http://127.0.0.1:8123"}, "--clickhouse"},
	} {
		_, err := parseFlags(append([]string{"--tollgate", bin}, tt.args...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want an error naming %s", tt.args, err, tt.want)
		}
	}
}

// The retention holds the fullest partition's days of records, and
// more than a day of it.
func TestRetentionFor(t *testing.T) {
	bin := fakeBinary(t)
	cfg, err := parseFlags([]string{"--tollgate", bin, "--keys", "1000"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	one, err := retentionFor(cfg.history(cfg.start, 1), 12, 1)
	if err != nil {
		t.Fatal(err)
	}
	two, _ := retentionFor(cfg.history(cfg.start, 1), 12, 2)
	// 1000 keys × 336 events a day over 12 partitions: ≥ 28,000 records
	// in the fullest, each of some 100 bytes.
	if one < 28000*80+1<<20 || one > 28000*300*2 {
		t.Errorf("a day: %d bytes", one)
	}
	if two-(1<<20) < 2*(one-(1<<20))-2 || two-(1<<20) > 2*(one-(1<<20))+2 {
		t.Errorf("two days: %d bytes, a day %d", two, one)
	}
}

func TestResult(t *testing.T) {
	ms := time.Millisecond
	r := &result{limit: 10 * ms, cold: 30 * ms, warm: []time.Duration{9 * ms, 5 * ms, 12 * ms, 7 * ms, 8 * ms}}
	if r.median() != 8*ms || r.max() != 30*ms || !r.met() {
		t.Errorf("median %v, max %v, met %v", r.median(), r.max(), r.met())
	}
	r.warm = r.warm[:4]
	if r.median() != 8*ms { // (7+9)/2
		t.Errorf("median of four %v", r.median())
	}
}

func TestCheckMonth(t *testing.T) {
	s := span{keys: 3, days: 2, events: 100}
	if _, err := checkMonth(s, 6, 100); err != nil {
		t.Error(err)
	}
	for _, c := range [][2]int64{{5, 100}, {6, 99}} {
		if _, err := checkMonth(s, int(c[0]), c[1]); err == nil {
			t.Errorf("%d rows, %d requests: no error", c[0], c[1])
		}
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 104160000: "104,160,000", -1234: "-1,234"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}
