package enforcer

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
)

func TestBucketBurstThenSteadyRate(t *testing.T) {
	b := newBucket(10, 20) // 10 req/s, burst 20
	var tat atomic.Int64
	now := testEpoch.UnixNano()
	for i := 0; i < 20; i++ {
		if ok, left, _ := b.take(&tat, now); !ok || left != int64(19-i) {
			t.Fatalf("burst request %d: ok=%v left=%d, want ok left=%d", i, ok, left, 19-i)
		}
	}
	ok, _, wait := b.take(&tat, now)
	if ok || wait != int64(100*time.Millisecond) {
		t.Fatalf("request 21: ok=%v wait=%v, want refused with 100ms to wait", ok, time.Duration(wait))
	}
	// One token per 100ms from then on, never two.
	for i := 1; i <= 50; i++ {
		at := now + int64(i)*int64(100*time.Millisecond)
		if ok, _, _ := b.take(&tat, at-1); ok {
			t.Fatalf("step %d: admitted 1ns before the token", i)
		}
		if ok, _, _ := b.take(&tat, at); !ok {
			t.Fatalf("step %d: refused when a token was due", i)
		}
		if ok, _, _ := b.take(&tat, at); ok {
			t.Fatalf("step %d: admitted twice on one token", i)
		}
	}
	// Idle long enough and the bucket is full again, not fuller.
	later := now + int64(time.Hour)
	n := 0
	for {
		if ok, _, _ := b.take(&tat, later); !ok {
			break
		}
		n++
	}
	if n != 20 {
		t.Fatalf("after idling: %d admitted, want the burst of 20", n)
	}
}

func TestBucketFractionalRate(t *testing.T) {
	b := newBucket(0.5, 1) // one request every 2s
	var tat atomic.Int64
	now := testEpoch.UnixNano()
	if ok, _, _ := b.take(&tat, now); !ok {
		t.Fatal("first request refused")
	}
	if ok, _, wait := b.take(&tat, now+int64(time.Second)); ok || wait != int64(time.Second) {
		t.Fatalf("after 1s: ok=%v wait=%v, want refused, 1s to wait", ok, time.Duration(wait))
	}
	if ok, _, _ := b.take(&tat, now+int64(2*time.Second)); !ok {
		t.Fatal("after 2s: refused")
	}
}

func TestBucketZeroBlocksAndNilUnlimited(t *testing.T) {
	var tat atomic.Int64
	z := newBucket(0, 0)
	if ok, _, wait := z.take(&tat, 1); ok || wait != -1 {
		t.Errorf("0/0 bucket: ok=%v wait=%d, want always refused", ok, wait)
	}
	u := unlimitedBucket
	for i := 0; i < 1000; i++ {
		if ok, _, _ := u.take(&tat, 1); !ok {
			t.Fatal("unlimited bucket refused")
		}
	}
}

func TestBucketRefund(t *testing.T) {
	b := newBucket(1, 2)
	var tat atomic.Int64
	now := testEpoch.UnixNano()
	b.take(&tat, now)
	b.take(&tat, now)
	b.refund(&tat)
	if ok, _, _ := b.take(&tat, now); !ok {
		t.Error("refunded token not available")
	}
	if ok, _, _ := b.take(&tat, now); ok {
		t.Error("more tokens than the burst after a refund")
	}
}

// Many goroutines on one bucket admit exactly the burst at one instant.
func TestBucketConcurrentExact(t *testing.T) {
	b := newBucket(1, 1000)
	var tat atomic.Int64
	var admitted atomic.Int64
	var wg sync.WaitGroup
	now := testEpoch.UnixNano()
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				if ok, _, _ := b.take(&tat, now); ok {
					admitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != 1000 {
		t.Fatalf("admitted %d of 8000 at one instant, want exactly the burst 1000", admitted.Load())
	}
}

func TestQuotaPeriods(t *testing.T) {
	tests := []struct {
		name      string
		period    catalog.Period
		limit     int64
		offset    int64
		created   string
		first     string // fill the quota here
		stillSame string // still the same period: refused
		next      string // first instant of the next period: admitted again
	}{
		{"day at UTC midnight", catalog.Day, 3, 0, "2026-11-01T00:00:00Z", "2026-11-27T10:00:00Z", "2026-11-27T23:59:59.999999999Z", "2026-11-28T00:00:00Z"},
		{"week on Monday", catalog.Week, 3, 0, "2026-11-01T00:00:00Z", "2026-11-27T10:00:00Z", "2026-11-29T23:59:59Z", "2026-11-30T00:00:00Z"},
		{"month end", catalog.Month, 3, 0, "2026-10-01T00:00:00Z", "2026-11-27T10:00:00Z", "2026-11-30T23:59:59Z", "2026-12-01T00:00:00Z"},
		{"leap February", catalog.Month, 3, 0, "2026-10-01T00:00:00Z", "2028-02-01T00:00:00Z", "2028-02-29T23:59:59Z", "2028-03-01T00:00:00Z"},
		{"offset in first period", catalog.Day, 5, 2, "2026-11-27T08:00:00Z", "2026-11-27T10:00:00Z", "2026-11-27T23:00:00Z", "2026-11-28T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newQuota(&catalog.Quota{Limit: tt.limit, Offset: tt.offset, Period: tt.period}, ts(tt.created)/1e9)
			var c atomic.Uint64
			want := tt.limit - tt.offset
			for i := int64(0); i < want; i++ {
				ok, _, rem, _ := q.take(&c, ts(tt.first))
				if !ok || rem != want-i-1 {
					t.Fatalf("request %d: ok=%v remaining=%d, want ok, %d", i, ok, rem, want-i-1)
				}
			}
			ok, _, _, end := q.take(&c, ts(tt.stillSame))
			if ok {
				t.Fatal("admitted past the limit in the same period")
			}
			if end != ts(tt.next) {
				t.Errorf("period end = %s, want %s", time.Unix(0, end).UTC(), tt.next)
			}
			for i := int64(0); i < tt.limit; i++ {
				if ok, _, _, _ := q.take(&c, ts(tt.next)); !ok {
					t.Fatalf("next period request %d refused; the full limit %d applies after the first period", i, tt.limit)
				}
			}
			if ok, _, _, _ := q.take(&c, ts(tt.next)); ok {
				t.Fatal("next period admitted past the limit")
			}
		})
	}
}

func TestQuotaRaise(t *testing.T) {
	q := newQuota(&catalog.Quota{Limit: 10, Period: catalog.Day}, 0)
	var c atomic.Uint64
	now := testEpoch.UnixNano()
	q.take(&c, now)
	q.raise(&c, now, 8)
	if got := q.used(&c, now); got != 8 {
		t.Fatalf("used after raise = %d, want 8", got)
	}
	q.raise(&c, now, 3) // never lowers
	if got := q.used(&c, now); got != 8 {
		t.Fatalf("used after a lower raise = %d, want 8", got)
	}
}

func ts(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixNano()
}

// A request stamped just before midnight that reaches the counter after
// one stamped just after counts in the new day: it neither wipes the new
// day's count nor reopens the exhausted old day.
func TestQuotaNeverMovesBack(t *testing.T) {
	q := newQuota(&catalog.Quota{Limit: 1, Period: catalog.Day}, 0)
	var c atomic.Uint64
	before, after := ts("2026-11-27T23:59:59.999Z"), ts("2026-11-28T00:00:00Z")
	if ok, _, _, _ := q.take(&c, before); !ok {
		t.Fatal("first request of the old day refused")
	}
	if ok, _, _, _ := q.take(&c, after); !ok {
		t.Fatal("first request of the new day refused")
	}
	ok, _, _, end := q.take(&c, before) // late: stamped in the old day
	if ok {
		t.Fatal("late old-day request admitted: the counter moved back")
	}
	if end != ts("2026-11-29T00:00:00Z") {
		t.Errorf("its period end = %s, want the new day's", time.Unix(0, end).UTC())
	}
	if ok, _, _, _ := q.take(&c, after); ok {
		t.Fatal("new day admitted a second request after a late one")
	}
	q.raise(&c, before, 0)
	if got := q.used(&c, after); got != 1 {
		t.Errorf("raise with an old clock changed the new day's count to %d", got)
	}
}

// The local count starts over with each period and drops a count of a
// period older than the one it holds.
func TestCountLocal(t *testing.T) {
	q := newQuota(&catalog.Quota{Limit: 10, Period: catalog.Day}, 0)
	var c atomic.Uint64
	day1, day2 := ts("2026-11-27T12:00:00Z"), ts("2026-11-28T12:00:00Z")
	i1, i2 := q.span(day1).idx, q.span(day2).idx
	q.countLocal(&c, i1, -1)
	q.countLocal(&c, i1, -1)
	if got := q.used(&c, day1); got != 2 {
		t.Fatalf("day 1: %d, want 2", got)
	}
	q.countLocal(&c, i2, -1)
	q.countLocal(&c, i1, -1) // late
	if got := q.used(&c, day2); got != 1 {
		t.Errorf("day 2: %d, want 1 (a new day starts over; a late count of day 1 is dropped)", got)
	}
}

// A plan whose quota period changes kind keeps its counters (they carry
// over catalog changes), and a counter of another kind of period holds
// nothing for the new one: a day's index, far larger than a month's,
// must not be taken for a later month.
func TestQuotaPeriodKindChange(t *testing.T) {
	now := ts("2026-11-27T12:00:00Z")
	day := newQuota(&catalog.Quota{Limit: 3, Period: catalog.Day}, 0)
	var c, local atomic.Uint64
	for range 3 {
		ok, idx, _, _ := day.take(&c, now)
		if !ok {
			t.Fatal("day quota refused")
		}
		day.countLocal(&local, idx, -1)
	}
	month := newQuota(&catalog.Quota{Limit: 5, Period: catalog.Month}, 0)
	if got := month.used(&c, now); got != 0 {
		t.Errorf("month used %d of a day's counter, want 0", got)
	}
	ok, idx, remaining, end := month.take(&c, now)
	if !ok || remaining != 4 || end != ts("2026-12-01T00:00:00Z") {
		t.Errorf("month take = %v, %d left, end %s; want admitted, 4 left, end of November", ok, remaining, time.Unix(0, end).UTC())
	}
	month.countLocal(&local, idx, -1)
	if got := month.used(&local, now); got != 1 {
		t.Errorf("month local count %d, want 1", got)
	}
	// And back: the month's counter holds nothing for the day.
	if got := day.used(&c, now); got != 0 {
		t.Errorf("day used %d of a month's counter, want 0", got)
	}
}
