package schemas

import (
	"errors"
	"strings"
	"testing"
)

func TestLostUsageGoldenAndRoundTrip(t *testing.T) {
	l := LostUsage{Node: "edge-1", KeyID: "k1", PlanID: "p1", APIID: "a1", Stage: "prod", Count: 7, Admitted: 5, From: 1_700_000_000_000_000_000, To: 1_700_000_001_000_000_000}
	b, err := EncodeLostUsage(&l)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"type":"tollgate.lost_usage.v1","node":"edge-1","keyId":"k1","planId":"p1","apiId":"a1","stage":"prod","count":7,"admitted":5,"from":1700000000000000000,"to":1700000001000000000}`
	if string(b) != want {
		t.Errorf("encoding changed:\n got %s\nwant %s", b, want)
	}
	var got LostUsage
	want2 := l
	want2.Type = EventTypeLostUsage
	if err := DecodeLostUsage(b, &got); err != nil || got != want2 {
		t.Fatalf("round trip: %+v, %v", got, err)
	}

	// Empty optional fields are left out; keyId stays (requests without a
	// key are lost too).
	b, _ = EncodeLostUsage(&LostUsage{Count: 1, From: 3, To: 3})
	const wantMin = `{"type":"tollgate.lost_usage.v1","keyId":"","count":1,"admitted":0,"from":3,"to":3}`
	if string(b) != wantMin {
		t.Errorf("minimal encoding:\n got %s\nwant %s", b, wantMin)
	}
}

func TestDecodeLostUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"not json", `{`, "unexpected end"},
		{"wrong type", `{"type":"tollgate.lost_usage.v9","keyId":"k","count":1,"from":1,"to":1}`, `type "tollgate.lost_usage.v9"`},
		{"no type", `{"keyId":"k","count":1,"from":1,"to":1}`, `type ""`},
		{"zero count", `{"type":"tollgate.lost_usage.v1","keyId":"k","count":0,"from":1,"to":1}`, "count 0"},
		{"negative count", `{"type":"tollgate.lost_usage.v1","keyId":"k","count":-2,"from":1,"to":1}`, "count -2"},
		{"admitted over count", `{"type":"tollgate.lost_usage.v1","keyId":"k","count":2,"admitted":3,"from":1,"to":1}`, "admitted 3"},
		{"negative admitted", `{"type":"tollgate.lost_usage.v1","keyId":"k","count":2,"admitted":-1,"from":1,"to":1}`, "admitted -1"},
		{"from after to", `{"type":"tollgate.lost_usage.v1","keyId":"k","count":1,"from":2,"to":1}`, "from 2 after to 1"},
		{"count not a number", `{"type":"tollgate.lost_usage.v1","keyId":"k","count":"1","from":1,"to":1}`, "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got LostUsage
			err := DecodeLostUsage([]byte(tc.in), &got)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

func FuzzDecodeLostUsage(f *testing.F) {
	f.Add([]byte(`{"type":"tollgate.lost_usage.v1","node":"n","keyId":"k1","count":7,"admitted":5,"from":1,"to":2}`))
	f.Add([]byte(`{"type":"tollgate.lost_usage.v1","keyId":"","count":1,"admitted":0,"from":3,"to":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got LostUsage
		if DecodeLostUsage(b, &got) != nil {
			return
		}
		enc, err := EncodeLostUsage(&got)
		if err != nil {
			t.Fatal(err)
		}
		var again LostUsage
		if err := DecodeLostUsage(enc, &again); err != nil || again != got {
			t.Fatalf("re-encoding %+v gave %+v, %v", got, again, err)
		}
	})
}
