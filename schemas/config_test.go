package schemas

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestConfigRecordGoldenAndRoundTrip(t *testing.T) {
	r := ConfigRecord{Kind: KindAPIKey, ID: "abc123", Entity: json.RawMessage(`{"id":"abc123","name":"k","valueHash":"00"}`)}
	b, err := EncodeConfigRecord(&r)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"type":"tollgate.config.v1","kind":"apiKey","id":"abc123","entity":{"id":"abc123","name":"k","valueHash":"00"}}`
	if string(b) != want {
		t.Errorf("encoding changed:\n got %s\nwant %s", b, want)
	}
	var got ConfigRecord
	if err := DecodeConfigRecord(b, &got); err != nil || got.Key() != "apiKey/abc123" || got.Tombstone() || string(got.Entity) != string(r.Entity) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	tomb, _ := EncodeConfigRecord(&ConfigRecord{Kind: KindUsagePlan, ID: "p1"})
	if string(tomb) != `{"type":"tollgate.config.v1","kind":"usagePlan","id":"p1","entity":null}` {
		t.Errorf("tombstone = %s", tomb)
	}
	if err := DecodeConfigRecord(tomb, &got); err != nil || !got.Tombstone() {
		t.Errorf("tombstone round trip: %+v, %v", got, err)
	}
	for name, bad := range map[string]string{
		"not json":     `{`,
		"wrong type":   `{"type":"tollgate.config.v9","kind":"apiKey","id":"x","entity":null}`,
		"unknown kind": `{"type":"tollgate.config.v1","kind":"user","id":"x","entity":null}`,
		"no id":        `{"type":"tollgate.config.v1","kind":"apiKey","entity":null}`,
		"entity array": `{"type":"tollgate.config.v1","kind":"apiKey","id":"x","entity":[1]}`,
	} {
		if err := DecodeConfigRecord([]byte(bad), &got); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecodeConfigRecord(f *testing.F) {
	f.Add([]byte(`{"type":"tollgate.config.v1","kind":"apiKey","id":"abc123","entity":{"id":"abc123"}}`))
	f.Add([]byte(`{"type":"tollgate.config.v1","kind":"usagePlan","id":"p1","entity":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got ConfigRecord
		if DecodeConfigRecord(b, &got) != nil {
			return
		}
		enc, err := EncodeConfigRecord(&got)
		if err != nil {
			t.Fatal(err)
		}
		var again ConfigRecord
		if err := DecodeConfigRecord(enc, &again); err != nil || again.Key() != got.Key() || again.Tombstone() != got.Tombstone() {
			t.Fatalf("re-encoding %+v gave %+v, %v", got, again, err)
		}
	})
}
