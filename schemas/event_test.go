package schemas

import (
	"testing"
	"time"
)

func TestNewEventID(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC).UnixNano()
	seen := map[EventID]bool{}
	for i := 0; i < 10000; i++ {
		id := NewEventID(at)
		if id[6]>>4 != 7 {
			t.Fatalf("version nibble %x, want 7", id[6]>>4)
		}
		if id[8]>>6 != 2 {
			t.Fatalf("variant bits %b, want 10", id[8]>>6)
		}
		if id.UnixMilli() != at/1e6 {
			t.Fatalf("embedded time %d, want %d", id.UnixMilli(), at/1e6)
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
	// Later milliseconds sort later.
	a, b := NewEventID(at), NewEventID(at+int64(time.Millisecond))
	if a.String() >= b.String() {
		t.Errorf("%s does not sort before %s", a, b)
	}
}

func TestEventIDStringRoundTrip(t *testing.T) {
	id := NewEventID(time.Now().UnixNano())
	s := id.String()
	if len(s) != 36 || s[14] != '7' {
		t.Fatalf("String() = %q", s)
	}
	got, ok := ParseEventID(s)
	if !ok || got != id {
		t.Fatalf("ParseEventID(%q) = %v, %v", s, got, ok)
	}
	for _, bad := range []string{"", "not-a-uuid", s[:35], s[:8] + "x" + s[9:], "zz" + s[2:]} {
		if _, ok := ParseEventID(bad); ok {
			t.Errorf("ParseEventID(%q) accepted", bad)
		}
	}
}

func TestDecisionNames(t *testing.T) {
	for d := DecisionUnknown; d <= DecisionBadRequest; d++ {
		if got := ParseDecision(d.String()); got != d {
			t.Errorf("ParseDecision(%q) = %v, want %v", d.String(), got, d)
		}
	}
	if Decision(200).String() != "unknown" || ParseDecision("nope") != DecisionUnknown {
		t.Error("out-of-range decisions are not unknown")
	}
}

func TestDay(t *testing.T) {
	e := UsageEvent{Time: time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC).UnixNano()}
	if e.Day() != -1 {
		t.Errorf("Day() before 1970 = %d, want -1", e.Day())
	}
}

// Count 0 is one request: every event and record from before the field
// existed keeps its meaning.
func TestRequests(t *testing.T) {
	for _, tt := range []struct {
		name  string
		count uint32
		want  int64
	}{
		{"unset is one request", 0, 1},
		{"one", 1, 1},
		{"aggregated", 1234, 1234},
		{"largest", 1<<32 - 1, 1<<32 - 1},
	} {
		e := UsageEvent{Count: tt.count}
		if got := e.Requests(); got != tt.want {
			t.Errorf("%s: Requests() = %d, want %d", tt.name, got, tt.want)
		}
	}
}
