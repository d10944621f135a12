package chstore

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/aggregator/aggstore"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

func lostRec(offset, day int64, key, plan, node, reason string, count, admitted int64) aggstore.LostRecord {
	return aggstore.LostRecord{Offset: offset, Day: day, Lost: schemas.LostUsage{Type: schemas.EventTypeLostUsage,
		Node: node, KeyID: key, PlanID: plan, APIID: "api", Stage: "prod", Count: count, Admitted: admitted,
		From: day * 86400e9, To: day*86400e9 + 1e9, Reason: reason}}
}

// Records of the lost-usage topic are read back summed per day, key,
// plan, node and reason; a record written again (a retried insert, a
// second aggregator) counts once, before and after ClickHouse merges the
// copies; dead-letter markers count as read and show in no report.
func TestLostUsage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t)
	const day = 20000
	recs := []aggstore.LostRecord{
		lostRec(0, day, "k1", "p1", "n1", schemas.LostSpillFull, 10, 7),
		lostRec(1, day, "k1", "p1", "n1", schemas.LostSpillFull, 5, 5),
		lostRec(2, day, "k2", "p1", "n2", schemas.LostSpillFull, 3, 0),
		lostRec(3, day+1, "", "", "n1", schemas.LostQueueFull, 40, 0),
		{Offset: 4, Day: day + 1}, // dead-lettered: a marker
	}
	if err := s.InsertLost(ctx, recs); err != nil {
		t.Fatal(err)
	}
	// The same records again, in two inserts of their own shape: as a
	// retry, and as a second aggregator reading the topic.
	if err := s.InsertLost(ctx, recs[:2]); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertLost(ctx, recs); err != nil {
		t.Fatal(err)
	}
	want := []usage.LostRow{
		{Day: day, KeyID: "k1", PlanID: "p1", Node: "n1", Reason: schemas.LostSpillFull, Requests: 15, Admitted: 12},
		{Day: day, KeyID: "k2", PlanID: "p1", Node: "n2", Reason: schemas.LostSpillFull, Requests: 3},
		{Day: day + 1, Node: "n1", Reason: schemas.LostQueueFull, Requests: 40},
	}
	check := func(name string, from, to int64, key, plan string, want []usage.LostRow) {
		t.Helper()
		got, err := s.Lost(ctx, from, to, key, plan)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: Lost(%d, %d, %q, %q) = %+v, want %+v", name, from, to, key, plan, got, want)
		}
	}
	check("before merges", day, day+1, "", "", want)
	if err := s.conn.Exec(ctx, "OPTIMIZE TABLE lost_usage FINAL"); err != nil {
		t.Fatal(err)
	}
	var rows uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM lost_usage").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != uint64(len(recs)) {
		t.Errorf("lost_usage holds %d rows after OPTIMIZE FINAL, want %d (one per record)", rows, len(recs))
	}
	check("after merges", day, day+1, "", "", want)
	check("one day", day+1, day+1, "", "", want[2:])
	check("one key", day, day+1, "k1", "", want[:1])
	check("one plan", day, day+1, "", "p1", want[:2])
	check("key and plan", day, day+1, "k2", "p1", want[1:2])
	check("no such key", day, day+1, "k9", "", nil)
	check("days before", 0, day-1, "", "", nil)
	check("beyond the Date range", -1000, 1<<40, "", "", want)

	offs, err := s.LostOffsets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int]int64{0: 5}; !maps.Equal(offs, want) {
		t.Errorf("LostOffsets = %v, want %v (past the marker)", offs, want)
	}
	more := lostRec(7, day, "k3", "p2", "n1", schemas.LostSpillFull, 1, 1)
	more.Partition = 3
	if err := s.InsertLost(ctx, []aggstore.LostRecord{more}); err != nil {
		t.Fatal(err)
	}
	if offs, err = s.LostOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	if want := map[int]int64{0: 5, 3: 8}; !maps.Equal(offs, want) {
		t.Errorf("LostOffsets = %v, want %v", offs, want)
	}
}

// A store with no lost usage has no offsets; records it cannot hold
// fail the insert whole, as invalid, and nothing of it is stored.
func TestLostUsageRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t)
	offs, err := s.LostOffsets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(offs) != 0 {
		t.Errorf("LostOffsets of an empty table = %v, want none", offs)
	}
	for _, bad := range []aggstore.LostRecord{
		lostRec(1, maxDay+1, "k", "p", "n", schemas.LostSpillFull, 1, 0),
		lostRec(1, -1, "k", "p", "n", schemas.LostSpillFull, 1, 0),
		{Partition: 70000, Offset: 1, Day: 1},
		lostRec(1, 1, "k", "p", "n", schemas.LostSpillFull, -1, 0),
	} {
		err := s.InsertLost(ctx, []aggstore.LostRecord{lostRec(0, 20000, "k", "p", "n", schemas.LostSpillFull, 1, 0), bad})
		if !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("InsertLost with %+v: %v, want ErrInvalidBatch", bad, err)
		}
	}
	if offs, err = s.LostOffsets(ctx); err != nil || len(offs) != 0 {
		t.Errorf("after refused inserts: LostOffsets = %v, %v; want none stored", offs, err)
	}
}

func TestLostQuery(t *testing.T) {
	q, args, ok := lostQuery(20000, 20001, "k1", "")
	if !ok {
		t.Fatal("not ok")
	}
	for _, want := range []string{"GROUP BY src_partition, src_offset", "requests > 0", "key_id = ?", "ORDER BY d, k, p, n, r"} {
		if !strings.Contains(q, want) {
			t.Errorf("query lacks %q:\n%s", want, q)
		}
	}
	if strings.Contains(q, "plan_id = ?") || strings.Contains(q, "FINAL") {
		t.Errorf("query filters a plan it was not given, or reads FINAL:\n%s", q)
	}
	if want := []any{"2024-10-04", "2024-10-05", "k1"}; !slices.Equal(args, want) {
		t.Errorf("args = %v, want %v", args, want)
	}
	if _, _, ok := lostQuery(maxDay+1, maxDay+5, "", ""); ok {
		t.Error("a range past the Date's days: ok")
	}
}
