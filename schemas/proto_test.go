package schemas

import (
	"os"
	"regexp"
	"strconv"
	"testing"
)

// protoFields reads the fields of message msg in tollgate.proto: name →
// (number, type).
func protoFields(t *testing.T, msg string) map[string]struct {
	num int
	typ string
} {
	t.Helper()
	b, err := os.ReadFile("tollgate.proto")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?s)message ` + msg + ` \{(.*?)\n\}`).FindSubmatch(b)
	if block == nil {
		t.Fatalf("tollgate.proto has no message %s", msg)
	}
	out := map[string]struct {
		num int
		typ string
	}{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(repeated\s+)?(\w+)\s+(\w+)\s*=\s*(\d+);`).FindAllSubmatch(block[1], -1) {
		n, _ := strconv.Atoi(string(m[4]))
		out[string(m[3])] = struct {
			num int
			typ string
		}{n, string(m[1]) + string(m[2])}
	}
	return out
}

// wireOf is the wire type a proto type is written with, and whether
// varints are zigzag-encoded.
func wireOf(typ string) (wire int, zigzag bool) {
	switch typ {
	case "sint64":
		return wireVarint, true
	case "uint32", "bool":
		return wireVarint, false
	default: // string, bytes, messages
		return wireBytes, false
	}
}

// field is one field of an encoding: its wire type, its varint or its
// bytes.
type field struct {
	wire int
	v    uint64
	data string
}

// fieldsOf decodes an encoding into its fields by number.
func fieldsOf(t *testing.T, b []byte) map[int]field {
	t.Helper()
	out := map[int]field{}
	if err := walkFields(b, func(num, wire int, v uint64, off, n int) error {
		out[num] = field{wire, v, string(b[off : off+n])}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkContract sets each field of the message alone (set returns the
// varint it should encode to, for varint fields) and checks that the
// encoder writes exactly the number and wire type tollgate.proto gives
// it, and that the .proto has no field the code does not write.
func checkContract(t *testing.T, msg string, zero []byte, setters map[string]func() ([]byte, uint64)) {
	t.Helper()
	proto := protoFields(t, msg)
	base := fieldsOf(t, zero) // what the zero value writes (UsageEvent's id always)
	for name, set := range setters {
		f, ok := proto[name]
		if !ok {
			t.Errorf("%s.%s: written by the code, not in tollgate.proto", msg, name)
			continue
		}
		b, want := set()
		changed := map[int]field{}
		for num, fl := range fieldsOf(t, b) {
			if base[num] != fl {
				changed[num] = fl
			}
		}
		wire, zigzag := wireOf(f.typ)
		w, ok := changed[f.num]
		if !ok || len(changed) != 1 {
			t.Errorf("%s.%s = %d: setting it changed fields %v", msg, name, f.num, changed)
			continue
		}
		if w.wire != wire {
			t.Errorf("%s.%s: wire type %d, tollgate.proto's %s is %d", msg, name, w.wire, f.typ, wire)
		}
		if wire == wireVarint {
			v := want
			if zigzag {
				v = zig(int64(want))
			}
			if w.v != v {
				t.Errorf("%s.%s: varint %d, want %d (%s)", msg, name, w.v, v, f.typ)
			}
		}
	}
	for name := range proto {
		if _, ok := setters[name]; !ok {
			t.Errorf("%s.%s: in tollgate.proto, not written by the code", msg, name)
		}
	}
}

func TestProtoContract(t *testing.T) {
	ev := func(f func(e *UsageEvent)) []byte {
		var e UsageEvent
		f(&e)
		return AppendUsageEvent(nil, &e)
	}
	str := func(f func(e *UsageEvent)) func() ([]byte, uint64) {
		return func() ([]byte, uint64) { return ev(f), 0 }
	}
	checkContract(t, "UsageEvent", ev(func(*UsageEvent) {}), map[string]func() ([]byte, uint64){
		"id":       str(func(e *UsageEvent) { e.ID[0] = 1 }),
		"time":     func() ([]byte, uint64) { return ev(func(e *UsageEvent) { e.Time = -3 }), uint64(^uint64(2)) },
		"api_id":   str(func(e *UsageEvent) { e.APIID = "a" }),
		"stage":    str(func(e *UsageEvent) { e.Stage = "a" }),
		"key_id":   str(func(e *UsageEvent) { e.KeyID = "a" }),
		"plan_id":  str(func(e *UsageEvent) { e.PlanID = "a" }),
		"method":   str(func(e *UsageEvent) { e.Method = "a" }),
		"resource": str(func(e *UsageEvent) { e.Resource = "a" }),
		"status":   func() ([]byte, uint64) { return ev(func(e *UsageEvent) { e.Status = 429 }), 429 },
		"decision": func() ([]byte, uint64) {
			return ev(func(e *UsageEvent) { e.Decision = DecisionThrottled }), uint64(DecisionThrottled)
		},
		"latency_micros":  func() ([]byte, uint64) { return ev(func(e *UsageEvent) { e.LatencyMicros = 7 }), 7 },
		"bytes_in":        func() ([]byte, uint64) { return ev(func(e *UsageEvent) { e.BytesIn = 8 }), 8 },
		"bytes_out":       func() ([]byte, uint64) { return ev(func(e *UsageEvent) { e.BytesOut = 9 }), 9 },
		"node":            str(func(e *UsageEvent) { e.Node = "a" }),
		"count":           func() ([]byte, uint64) { return ev(func(e *UsageEvent) { e.Count = 5 }), 5 },
		"key_fingerprint": str(func(e *UsageEvent) { e.KeyFingerprint = "a" }),
	})
	sig := func(f func(s *QuotaSignal)) []byte {
		var s QuotaSignal
		f(&s)
		return AppendQuotaSignal(nil, &s)
	}
	checkContract(t, "QuotaSignal", sig(func(*QuotaSignal) {}), map[string]func() ([]byte, uint64){
		"plan_id":    func() ([]byte, uint64) { return sig(func(s *QuotaSignal) { s.PlanID = "p" }), 0 },
		"key_id":     func() ([]byte, uint64) { return sig(func(s *QuotaSignal) { s.KeyID = "k" }), 0 },
		"used":       func() ([]byte, uint64) { return sig(func(s *QuotaSignal) { s.Used = 3 }), 3 },
		"limit":      func() ([]byte, uint64) { return sig(func(s *QuotaSignal) { s.Limit = 4 }), 4 },
		"period_end": func() ([]byte, uint64) { return sig(func(s *QuotaSignal) { s.PeriodEnd = 5 }), 5 },
		"as_of":      func() ([]byte, uint64) { return sig(func(s *QuotaSignal) { s.AsOf = 6 }), 6 },
		"exhausted":  func() ([]byte, uint64) { return sig(func(s *QuotaSignal) { s.Exhausted = true }), 1 },
		"nodes":      func() ([]byte, uint64) { return sig(func(s *QuotaSignal) { s.Nodes = []NodeCount{{Node: "n"}} }), 0 },
	})
	nc := func(f func(n *NodeCount)) []byte {
		var n NodeCount
		f(&n)
		b := appendNodeCount(nil, 8, &n)
		// the embedded message's body: after its tag and length
		return b[2:]
	}
	checkContract(t, "NodeCount", nc(func(*NodeCount) {}), map[string]func() ([]byte, uint64){
		"node":    func() ([]byte, uint64) { return nc(func(n *NodeCount) { n.Node = "n" }), 0 },
		"counted": func() ([]byte, uint64) { return nc(func(n *NodeCount) { n.Counted = -2 }), uint64(^uint64(1)) },
	})
	rs := func(f func(s *RateSignal)) []byte {
		var s RateSignal
		f(&s)
		return AppendRateSignal(nil, &s)
	}
	checkContract(t, "RateSignal", rs(func(*RateSignal) {}), map[string]func() ([]byte, uint64){
		"plan_id": func() ([]byte, uint64) { return rs(func(s *RateSignal) { s.PlanID = "p" }), 0 },
		"key_id":  func() ([]byte, uint64) { return rs(func(s *RateSignal) { s.KeyID = "k" }), 0 },
		"as_of":   func() ([]byte, uint64) { return rs(func(s *RateSignal) { s.AsOf = 6 }), 6 },
		"fleet":   func() ([]byte, uint64) { return rs(func(s *RateSignal) { s.Fleet = 3 }), 3 },
		"floor":   func() ([]byte, uint64) { return rs(func(s *RateSignal) { s.Floor = 9 }), 9 },
		"shares":  func() ([]byte, uint64) { return rs(func(s *RateSignal) { s.Shares = []NodeShare{{Node: "n"}} }), 0 },
	})
	ns := func(f func(n *NodeShare)) []byte {
		s := RateSignal{Shares: make([]NodeShare, 1)}
		f(&s.Shares[0])
		return AppendRateSignal(nil, &s)[2:]
	}
	checkContract(t, "NodeShare", ns(func(*NodeShare) {}), map[string]func() ([]byte, uint64){
		"node":  func() ([]byte, uint64) { return ns(func(n *NodeShare) { n.Node = "n" }), 0 },
		"share": func() ([]byte, uint64) { return ns(func(n *NodeShare) { n.Share = 7 }), 7 },
	})
}
