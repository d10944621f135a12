package schemas

import (
	"encoding/hex"
	"errors"
	"testing"
)

func TestQuotaSignalGoldenAndRoundTrip(t *testing.T) {
	s := QuotaSignal{PlanID: "p1", KeyID: "k1", Used: 100, Limit: 100, PeriodEnd: 1_795_824_000_000_000_000, AsOf: 1, Exhausted: true}
	b := AppendQuotaSignal(nil, &s)
	// 0a02 "p1" | 1202 "k1" | 18 c801 used zigzag(100) | 20 c801 limit |
	// 28 period_end zigzag | 30 02 as_of zigzag(1) | 38 01 exhausted.
	const want = "0a027031" + "12026b31" + "18c801" + "20c801" + "288080f8f1b99a86ec31" + "3002" + "3801"
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("encoding changed:\n got %s\nwant %s", got, want)
	}
	var got QuotaSignal
	if err := DecodeQuotaSignal(b, &got); err != nil || got != s {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if got.Remaining() != 0 {
		t.Errorf("remaining = %d", got.Remaining())
	}
	for name, bad := range map[string][]byte{"empty": nil, "no key": b[:4], "truncated": b[:len(b)-1], "field 0": {0x00, 0x01}} {
		if err := DecodeQuotaSignal(bad, &got); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecodeQuotaSignal(f *testing.F) {
	s := QuotaSignal{PlanID: "p1", KeyID: "k1", Used: 3, Limit: 10}
	f.Add(AppendQuotaSignal(nil, &s))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got QuotaSignal
		if DecodeQuotaSignal(b, &got) != nil {
			return
		}
		var again QuotaSignal
		if err := DecodeQuotaSignal(AppendQuotaSignal(nil, &got), &again); err != nil || again != got {
			t.Fatalf("re-encoding %+v gave %+v, %v", got, again, err)
		}
	})
}
