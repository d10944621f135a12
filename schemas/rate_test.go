package schemas

import (
	"errors"
	"reflect"
	"testing"
)

func TestRateSignalRoundTrip(t *testing.T) {
	for _, s := range []RateSignal{
		{PlanID: "p", KeyID: "k"},
		{PlanID: "plan-1", KeyID: "key/2", AsOf: -5, Fleet: 3, Floor: 1092,
			Shares: []NodeShare{{Node: "", Share: 1}, {Node: "edge-a", Share: ShareOne}, {Node: "edge-b"}}},
	} {
		b := AppendRateSignal(nil, &s)
		var got RateSignal
		if err := DecodeRateSignal(b, &got); err != nil {
			t.Fatalf("%+v: %v", s, err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Errorf("round trip: %+v, want %+v", got, s)
		}
	}
}

func TestRateSignalShareOf(t *testing.T) {
	s := RateSignal{Floor: 10, Shares: []NodeShare{{Node: "a", Share: 100}, {Node: "b", Share: 0}}}
	for node, want := range map[string]uint32{"a": 100, "b": 0, "c": 10} {
		if got := s.ShareOf(node); got != want {
			t.Errorf("ShareOf(%q) = %d, want %d", node, got, want)
		}
	}
}

func TestDecodeRateSignalRejectsMalformed(t *testing.T) {
	over := AppendRateSignal(nil, &RateSignal{PlanID: "p", KeyID: "k", Shares: []NodeShare{{Node: "a", Share: ShareOne + 1}}})
	floor := AppendRateSignal(nil, &RateSignal{PlanID: "p", KeyID: "k", Floor: ShareOne + 1})
	fleet := AppendRateSignal(nil, &RateSignal{PlanID: "p", KeyID: "k", Fleet: 1<<20 + 1})
	noKey := AppendRateSignal(nil, &RateSignal{PlanID: "p"})
	badEntry := appendUint(AppendRateSignal(nil, &RateSignal{PlanID: "p", KeyID: "k"}), 6, 1)
	for name, b := range map[string][]byte{"share": over, "floor": floor, "fleet": fleet, "no key": noKey,
		"entry as varint": badEntry, "truncated": over[:len(over)-1]} {
		var s RateSignal
		if err := DecodeRateSignal(b, &s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}
