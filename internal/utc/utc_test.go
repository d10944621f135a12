package utc

import (
	"math/rand/v2"
	"testing"
)

func TestFloorDiv(t *testing.T) {
	for _, tt := range []struct{ a, b, want int64 }{
		{7, 2, 3}, {-7, 2, -4}, {7, -2, -4}, {-7, -2, 3}, {6, 3, 2}, {-6, 3, -2}, {0, 5, 0}, {-1, DayNanos, -1},
	} {
		if got := FloorDiv(tt.a, tt.b); got != tt.want {
			t.Errorf("FloorDiv(%d, %d) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
	// The property: b*q <= a < b*(q+1) for b > 0.
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		a, b := r.Int64()-r.Int64(), 1+r.Int64N(1e12)
		if q := FloorDiv(a, b); !(b*q <= a && a-b*q < b) {
			t.Fatalf("FloorDiv(%d, %d) = %d", a, b, q)
		}
	}
}

func TestDay(t *testing.T) {
	if got := Day(20000*DayNanos + 5); got != 20000 {
		t.Errorf("Day = %d", got)
	}
	if got := Day(-1); got != -1 {
		t.Errorf("Day(-1) = %d, want -1 (1969-12-31)", got)
	}
	if got := DayStart(Day(20000*DayNanos + 5)); got != 20000*DayNanos {
		t.Errorf("DayStart = %d", got)
	}
	if got := Minute(-1); got != -1 {
		t.Errorf("Minute(-1) = %d", got)
	}
}
