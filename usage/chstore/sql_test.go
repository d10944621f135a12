package chstore

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name, dsn string
		wantErr   string // "" for none
	}{
		{"native", "clickhouse://127.0.0.1:9000/default", ""},
		{"tcp scheme", "tcp://127.0.0.1:9000/tollgate", ""},
		{"no database", "clickhouse://127.0.0.1:9000", ""},
		{"empty", " ", "DSN: required"},
		{"http", "http://127.0.0.1:8123/default", "native protocol"},
		{"database name", "clickhouse://127.0.0.1:9000/my-db", `database "my-db"`},
		{"no host", "clickhouse:///default", "DSN:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Config{DSN: tt.dsn}.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate(%q): %v", tt.dsn, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate(%q) = %v, want an error with %q", tt.dsn, err, tt.wantErr)
			}
		})
	}
}

func TestWatermarksSQL(t *testing.T) {
	if got, want := rawMarksSQL("1, 5"), `SELECT toUInt8(0), src_partition, toUInt32(toUInt16(day)) AS d, maxIf(src_offset + 1, batch_end = 1) - 1, max(src_offset)
FROM usage_events WHERE key_id = '' AND time_ns = -9223372036854775808 AND src_partition IN (1, 5) GROUP BY src_partition, d`; got != want {
		t.Errorf("rawMarksSQL:\n%s\nwant\n%s", got, want)
	}
	// Each rollup's markers are read through its primary key's first
	// column: minute < 0, or plan and key empty.
	got := rollupMarksSQL("1, 5")
	for _, want := range []string{
		"FROM usage_minute WHERE key_id = '' AND minute < 0 AND src_partition IN (1, 5)",
		"FROM usage_hour WHERE key_id = '' AND minute < 0 AND src_partition IN (1, 5)",
		"FROM usage_day WHERE key_id = '' AND minute < 0 AND src_partition IN (1, 5)",
		"FROM usage_daily WHERE plan_id = '' AND key_id = '' AND src_partition IN (1, 5)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rollupMarksSQL does not hold %q:\n%s", want, got)
		}
	}
}

func TestDailyQuery(t *testing.T) {
	tests := []struct {
		name      string
		f         usage.Filter
		wantWhere string
		wantArgs  []any
		wantOK    bool
	}{
		{"days", usage.Filter{FromDay: 20000, ToDay: 20001}, "day BETWEEN ? AND ?", []any{"2024-10-04", "2024-10-05"}, true},
		{"plan", usage.Filter{FromDay: 20000, ToDay: 20000, PlanID: "pro"}, "day BETWEEN ? AND ? AND plan_id = ?", []any{"2024-10-04", "2024-10-04", "pro"}, true},
		{"plan and key", usage.Filter{FromDay: 0, ToDay: 1, PlanID: "p", KeyID: "k"}, "day BETWEEN ? AND ? AND plan_id = ? AND key_id = ?", []any{"1970-01-01", "1970-01-02", "p", "k"}, true},
		{"a page of keys", usage.Filter{FromDay: 0, ToDay: 1, PlanID: "p", KeyIDs: []string{"k1", `it's`}},
			`day BETWEEN ? AND ? AND plan_id = ? AND key_id IN ('k1', 'it\'s')`, []any{"1970-01-01", "1970-01-02", "p"}, true},
		{"every day, clamped", usage.Filter{FromDay: math.MinInt64, ToDay: math.MaxInt64}, "day BETWEEN ? AND ?", []any{"1970-01-01", "2105-12-31"}, true},
		{"from after to", usage.Filter{FromDay: 5, ToDay: 4}, "", nil, false},
		{"before 1970", usage.Filter{FromDay: math.MinInt64, ToDay: -1}, "", nil, false},
		{"after 2105", usage.Filter{FromDay: maxDay + 1, ToDay: math.MaxInt64}, "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, args, ok := dailyQuery(tt.f)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			if want := dayCountsSQL(tt.wantWhere, tt.wantWhere); q != want {
				t.Errorf("query:\n%s\nwant\n%s", q, want)
			}
			if want := slices.Concat(tt.wantArgs, tt.wantArgs); !slices.Equal(args, want) {
				t.Errorf("args %v, want %v", args, want)
			}
		})
	}
}

func TestDayCountsSQL(t *testing.T) {
	want := `SELECT toUInt16(day), plan_id, key_id, sum(admitted), sum(rejected), sum(adjustment) FROM (
	SELECT day, plan_id, key_id, admitted, rejected, toInt64(0) AS adjustment FROM usage_daily WHERE (plan_id != '' OR key_id != '') AND A
	UNION ALL
	SELECT day, plan_id, key_id, toInt64(0) AS admitted, toInt64(0) AS rejected, delta AS adjustment FROM quota_adjustments WHERE B
)
GROUP BY day, plan_id, key_id
ORDER BY day, plan_id, key_id`
	if got := dayCountsSQL("A", "B"); got != want {
		t.Errorf("dayCountsSQL:\n%s\nwant\n%s", got, want)
	}
}

func TestQuotaUsageQuery(t *testing.T) {
	q, args, ok := quotaUsageQuery([]int{0, 3}, 20000)
	if !ok {
		t.Fatal("not ok")
	}
	const want = `SELECT toUInt16(day), plan_id, key_id, node, sum(admitted), sum(adjustment) FROM (
	SELECT day, plan_id, key_id, node, admitted, toInt64(0) AS adjustment FROM usage_daily
	WHERE day >= ? AND src_partition IN (0, 3) AND admitted != 0
	UNION ALL
	SELECT day, plan_id, key_id, '' AS node, toInt64(0) AS admitted, delta AS adjustment FROM quota_adjustments
	WHERE day >= ? AND key_id IN (SELECT key_id FROM usage_daily WHERE src_partition IN (0, 3))
)
GROUP BY day, plan_id, key_id, node
ORDER BY day, plan_id, key_id, node`
	if q != want {
		t.Errorf("query:\n%s\nwant\n%s", q, want)
	}
	if want := []any{"2024-10-04", "2024-10-04"}; !slices.Equal(args, want) {
		t.Errorf("args %v, want %v", args, want)
	}
	if _, _, ok := quotaUsageQuery(nil, 0); ok {
		t.Error("no partitions: ok")
	}
	if _, args, _ := quotaUsageQuery([]int{0}, -5); args[0] != "1970-01-01" {
		t.Errorf("from day -5: args %v", args)
	}
}

func TestMinutesQuery(t *testing.T) {
	q, args, ok := minutesQuery(20000*1440-1, 20001*1440)
	if !ok {
		t.Fatal("not ok")
	}
	const want = `SELECT minute, key_id, plan_id, api_id, stage, method, resource, status, decision, sum(requests), sum(bytes_in), sum(bytes_out), sum(latency_us_sum)
FROM usage_minute
WHERE day BETWEEN ? AND ? AND minute >= ? AND minute < ?
GROUP BY minute, key_id, plan_id, api_id, stage, method, resource, status, decision
ORDER BY minute, key_id, plan_id, api_id, stage, method, resource, status, decision`
	if q != want {
		t.Errorf("query:\n%s\nwant\n%s", q, want)
	}
	// The last minute of day 19999 to the last of day 20000.
	if want := []any{"2024-10-03", "2024-10-04", int64(20000*1440 - 1), int64(20001 * 1440)}; !slices.Equal(args, want) {
		t.Errorf("args %v, want %v", args, want)
	}
	for _, rng := range [][2]int64{{5, 5}, {6, 5}, {math.MinInt64, 0}} {
		if _, _, ok := minutesQuery(rng[0], rng[1]); ok {
			t.Errorf("minutesQuery(%d, %d): ok", rng[0], rng[1])
		}
	}
}

func TestEventsQuery(t *testing.T) {
	q, args, ok := eventsQuery(day20000, day20000+dayNS, 10)
	if !ok {
		t.Fatal("not ok")
	}
	if !strings.HasSuffix(q, "ORDER BY time_ns, id\nLIMIT 10") || !strings.Contains(q, "WHERE day BETWEEN ? AND ? AND time_ns >= ? AND time_ns < ?") {
		t.Errorf("query:\n%s", q)
	}
	if want := []any{"2024-10-04", "2024-10-04", day20000, day20000 + dayNS}; !slices.Equal(args, want) {
		t.Errorf("args %v, want %v", args, want)
	}
	if _, _, ok := eventsQuery(0, 10, 0); ok {
		t.Error("limit 0: ok")
	}
}

func TestPartitionsBefore(t *testing.T) {
	ids := []string{"20241006", "20241004", "20241005", "all", "2024100", "202410x5"}
	if got, want := partitionsBefore(ids, 20002), []string{"20241004", "20241005"}; !slices.Equal(got, want) {
		t.Errorf("partitionsBefore = %q, want %q", got, want)
	}
	if got := dropPartitionSQL("20241004"); got != "ALTER TABLE usage_events DROP PARTITION ID '20241004'" {
		t.Errorf("dropPartitionSQL = %q", got)
	}
}

func TestGroup(t *testing.T) {
	ev := func(ns int64) schemas.UsageEvent { return schemas.UsageEvent{Time: ns} }
	const oct31 = 20027 * dayNS // 2024-10-31
	b := &Batch{
		Last:    20,
		Offsets: []int64{1, 2, 3, 5, 6, 8, 9},
		// Oct 31, Nov 1, Oct 31 (late), Nov 1, Nov 1, Nov 2, Nov 2
		Events: []schemas.UsageEvent{ev(oct31 + 1), ev(oct31 + dayNS), ev(oct31 + 5), ev(oct31 + dayNS + 1), ev(oct31 + dayNS + 2), ev(oct31 + 2*dayNS), ev(oct31 + 2*dayNS + 7)},
	}
	at := func(done int64, ahead ...Ahead) Watermark {
		w := NoWatermark
		for t := range w.Done {
			w.Done[t] = done
		}
		w.Ahead = ahead
		return w
	}
	oct, nov := month(20027), month(20028)
	tests := []struct {
		name  string
		table int
		wm    Watermark
		want  []group
	}{
		// However the days alternate, one group per partition of the table.
		{"raw: a group per day", TableRaw, NoWatermark, []group{{20027, 20027, []int32{0, 2}}, {20028, 20028, []int32{1, 3, 4}}, {20029, 20029, []int32{5, 6}}}},
		{"rollups: a group per month", TableMinute, NoWatermark, []group{{oct, 20027, []int32{0, 2}}, {nov, 20028, []int32{1, 3, 4, 5, 6}}}},
		{"from the middle", TableDaily, at(5), []group{{nov, 20028, []int32{4, 5, 6}}}},
		{"a day written part way", TableRaw, at(-1, Ahead{TableRaw, 20028, 20}), []group{{20027, 20027, []int32{0, 2}}, {20029, 20029, []int32{5, 6}}}},
		{"another table's partition written part way", TableRaw, at(-1, Ahead{TableMinute, 20028, 20}), []group{{20027, 20027, []int32{0, 2}}, {20028, 20028, []int32{1, 3, 4}}, {20029, 20029, []int32{5, 6}}}},
		{"nothing left", TableRaw, at(9), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := newInsertScratch()
			sc.group(b, tt.table, &tt.wm)
			if len(sc.groups) != len(tt.want) {
				t.Fatalf("group = %+v, want %+v", sc.groups, tt.want)
			}
			for i, g := range sc.groups {
				if w := tt.want[i]; g.part != w.part || month(g.day) != month(w.day) || !slices.Equal(g.index, w.index) {
					t.Errorf("group %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
	for _, tt := range []struct {
		wm   int64
		want int
	}{{-1, 0}, {0, 0}, {1, 1}, {4, 3}, {5, 4}, {9, 7}, {100, 7}} {
		if got := firstAfter(b.Offsets, tt.wm); got != tt.want {
			t.Errorf("firstAfter(%d) = %d, want %d", tt.wm, got, tt.want)
		}
	}
}

func TestMonth(t *testing.T) {
	for _, tt := range []struct {
		day  int64
		want int64
	}{{0, 1970 * 12}, {31, 1970*12 + 1}, {20027, 2024*12 + 9}, {20028, 2024*12 + 10}, {maxDay, 2105*12 + 11}} {
		if got := month(tt.day); got != tt.want {
			t.Errorf("month(%d) = %d, want %d", tt.day, got, tt.want)
		}
	}
}

func TestBatchRawMarksQuery(t *testing.T) {
	ev := func(ns int64) schemas.UsageEvent { return schemas.UsageEvent{Time: ns} }
	b := &Batch{Partition: 4, Last: 30, Offsets: []int64{10, 11, 12},
		Events: []schemas.UsageEvent{ev(day20000 + 61e9), ev(day20000 - 1), ev(day20000 + 5)}}
	q, args, ok := batchRawMarksQuery(b)
	if !ok {
		t.Fatal("not ok")
	}
	const want = `SELECT toUInt8(0), src_partition, toUInt32(toUInt16(day)) AS d, maxIf(src_offset + 1, batch_end = 1) - 1, max(src_offset)
FROM usage_events WHERE key_id = '' AND time_ns = -9223372036854775808 AND src_partition = 4 AND day BETWEEN ? AND ?
GROUP BY src_partition, d`
	if q != want {
		t.Errorf("query:\n%s\nwant\n%s", q, want)
	}
	if want := []any{"2024-10-03", "2024-10-04"}; !slices.Equal(args, want) {
		t.Errorf("args %v, want %v", args, want)
	}
	if _, _, ok := batchRawMarksQuery(&Batch{Last: 3}); ok {
		t.Error("no events: ok")
	}
	if got := quote("a\x00'\\b"); got != `'a\0\'\\b'` {
		t.Errorf("quote = %s", got)
	}
}
