package chstore

import (
	"context"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// TestRollupsRollUp: after merges, each rollup holds one row per bucket
// and dimensions (and a marker per month and topic partition), however
// many batches wrote them. 40 keys × an hour at about 4 requests per
// key and minute, written in batches of 100 events (~100 batches), so
// that each (minute, dimensions) row comes from several batches.
func TestRollupsRollUp(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	r := mrand.New(mrand.NewPCG(21, 22))
	const keys, minutes = 40, 60
	var events []schemas.UsageEvent
	for m := range minutes {
		for range keys * 4 {
			k := r.IntN(keys)
			ts := day20000 + int64(m)*60e9 + r.Int64N(60e9)
			events = append(events, schemas.UsageEvent{ID: schemas.NewEventID(ts), Time: ts, APIID: "api1", Stage: "prod",
				KeyID: "key-" + strconv.Itoa(k), PlanID: "plan-" + strconv.Itoa(k%3), Method: "GET", Resource: "/items",
				Status: 200, Decision: schemas.DecisionAllowed, BytesOut: 10, Node: "edge-" + strconv.Itoa(k%2)})
		}
	}
	slices.SortFunc(events, func(a, b schemas.UsageEvent) int { return int(a.Time - b.Time) })
	// Two topic partitions, a key's events in one (as the enforcers'
	// producers key them): a marker each.
	var parts [2][]record
	for i := range events {
		k, _ := strconv.Atoi(events[i].KeyID[len("key-"):])
		parts[k%2] = append(parts[k%2], record{offset: int64(len(parts[k%2])), event: &events[i]})
	}
	for p, recs := range parts {
		insertAll(t, s, p, recs, 100)
	}
	batches := (len(parts[0])+99)/100 + (len(parts[1])+99)/100

	// What the rollups must come to: distinct buckets × dimensions.
	distinct := func(width int64) int {
		seen := map[[2]int64]bool{}
		for _, e := range events {
			m := e.Time / 60e9
			k, _ := strconv.Atoi(e.KeyID[len("key-"):])
			seen[[2]int64{m - m%width, int64(k)}] = true
		}
		return len(seen)
	}
	days := map[[2]string]bool{} // usage_daily: (day, plan, key, node); one day here
	for _, e := range events {
		days[[2]string{e.KeyID, e.Node}] = true
	}
	for _, table := range []string{"usage_minute", "usage_hour", "usage_day", "usage_key_day", "usage_daily"} {
		mergeAll(t, s, table)
	}
	for _, tt := range []struct {
		table         string
		data, markers string
		want          int
	}{
		{"usage_minute", "minute >= 0", "minute < 0", distinct(1)},
		{"usage_hour", "minute >= 0", "minute < 0", distinct(60)},
		{"usage_day", "minute >= 0", "minute < 0", distinct(1440)},
		{"usage_key_day", "minute >= 0", "minute < 0", distinct(1440)}, // one method, resource and status per key here
		{"usage_daily", "key_id != ''", "key_id = ''", len(days)},
	} {
		var rows, markers uint64
		if err := s.conn.QueryRow(ctx, "SELECT countIf("+tt.data+"), countIf("+tt.markers+") FROM "+tt.table).Scan(&rows, &markers); err != nil {
			t.Fatal(err)
		}
		if int(rows) != tt.want || markers != 2 {
			t.Errorf("%s after merges: %d rows and %d markers, want %d rows (one per bucket and dimensions) and 2 markers (%d events in %d batches)",
				tt.table, rows, markers, tt.want, len(events), batches)
		}
	}
	if got, want := distinct(1), len(events)/3; got > want {
		t.Fatalf("the test's traffic makes %d minute rows of %d events: too few requests per row to show merging", got, len(events))
	}
	sameAsOracle(t, s, oracle(t, events))
}

// TestMigrateRollups: a database written by the program before the
// rollups rolled up (migrations 1-5, rows tagged src_offset, one per
// event at this rate) is migrated: its rollups' sums are kept, its
// watermarks carried over, and InsertBatch goes on from them. A copy cut
// short runs again whole.
func TestMigrateRollups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, cut := range []bool{false, true} {
		t.Run("cut="+strconv.FormatBool(cut), func(t *testing.T) {
			s, err := Open(ctx, testDatabase(t))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := migrateWith(ctx, s.conn, migrations[:5]); err != nil {
				t.Fatal(err)
			}
			r := mrand.New(mrand.NewPCG(23, 24))
			events := genEvents(r, 3000, day20000-3600e9, 60e9, "") // two days, over midnight
			recs := topic(r, events)
			old, rest := recs[:2000], recs[2000:]
			// What the old program wrote: raw rows, and rollup rows tagged
			// with the last offset of their batch (batches of 100 records).
			const oldInsertRaw = `INSERT INTO usage_events (day, key_id, time_ns, id, plan_id, api_id, stage, method, resource, status, decision, latency_us, bytes_in, bytes_out, requests, node, kafka_offset, src_partition, src_offset)`
			c := &columns{}
			for _, rec := range old {
				if e := rec.event; e != nil {
					c.day = append(c.day, dayTime(e.Day()))
					c.i64[0] = append(c.i64[0], e.Time)
					c.id = append(c.id, e.ID[:])
					for j, v := range []string{e.KeyID, e.PlanID, e.APIID, e.Stage, e.Method, e.Resource, e.Node} {
						c.str[j] = append(c.str[j], v)
					}
					c.status = append(c.status, e.Status)
					c.decision = append(c.decision, uint8(e.Decision))
					c.i64[1] = append(c.i64[1], e.LatencyMicros)
					c.i64[2] = append(c.i64[2], e.BytesIn)
					c.i64[3] = append(c.i64[3], e.BytesOut)
					c.requests = append(c.requests, uint32(e.Requests()))
					c.i64[4] = append(c.i64[4], rec.offset)
					c.partition = append(c.partition, 0)
					c.offset = append(c.offset, min(rec.offset/100*100+99, old[len(old)-1].offset))
				}
			}
			if err := s.send(ctx, oldInsertRaw, []any{c.day, c.str[0], c.i64[0], c.id, c.str[1], c.str[2], c.str[3], c.str[4], c.str[5],
				c.status, c.decision, c.i64[1], c.i64[2], c.i64[3], c.requests, c.str[6], c.i64[4], c.partition, c.offset}); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				`INSERT INTO usage_minute (day, minute, key_id, plan_id, api_id, stage, method, resource, status, decision, src_partition, src_offset, requests, bytes_in, bytes_out, latency_us_sum)
SELECT day, intDiv(time_ns, 60000000000), key_id, plan_id, api_id, stage, method, resource, status, decision, src_partition, src_offset, requests, bytes_in, bytes_out, latency_us FROM usage_events`,
				`INSERT INTO usage_daily (day, plan_id, key_id, node, src_partition, src_offset, admitted, rejected)
SELECT day, plan_id, key_id, node, src_partition, src_offset, if(decision = 1, requests, 0), if(decision = 1, 0, requests) FROM usage_events WHERE plan_id != '' OR key_id != ''`,
			} {
				if err := s.conn.Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			if cut {
				// Migrations up to 10, then part of 11's copy.
				if _, err := migrateWith(ctx, s.conn, migrations[:10]); err != nil {
					t.Fatal(err)
				}
				for _, q := range append([]string{migrations[10].sql}, migrations[10].then[:6]...) {
					if err := s.conn.Exec(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
			}
			applied, err := s.Migrate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := migrationNames(6)
			if cut {
				want = migrationNames(11)
			}
			if !slices.Equal(applied, want) {
				t.Errorf("Migrate applied %q, want %q", applied, want)
			}
			last := old[len(old)-1].offset
			wm := watermark(t, s, 0)
			if !wm.Equal(doneAt(last, last)) {
				t.Errorf("after the migration: Watermarks %+v, want every table at %d", wm, last)
			}
			var oldEvents []schemas.UsageEvent
			for _, rec := range old {
				if rec.event != nil {
					oldEvents = append(oldEvents, *rec.event)
				}
			}
			sameAsOracle(t, s, oracle(t, oldEvents))
			insertAll(t, s, 0, rest, 300)
			sameAsOracle(t, s, oracle(t, events))
		})
	}
}

// mergeAll merges every partition of table into one part. OPTIMIZE ...
// FINAL does nothing when a background merge holds some of the parts
// (the batches' tables are written at once, so many parts arrive
// together): it is repeated until each partition is one part.
func mergeAll(t *testing.T, s *Store, table string) {
	t.Helper()
	ctx := context.Background()
	for range 100 {
		if err := s.conn.Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
			t.Fatal(err)
		}
		var split uint64
		if err := s.conn.QueryRow(ctx, `SELECT count() FROM (SELECT partition FROM system.parts
WHERE database = currentDatabase() AND table = ? AND active GROUP BY partition HAVING count() > 1)`, table).Scan(&split); err != nil {
			t.Fatal(err)
		}
		if split == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond) // a background merge is running on the server
	}
	t.Fatalf("%s: partitions still in several parts after 100 OPTIMIZEs", table)
}
