package catalog

import (
	"strings"
	"testing"
)

// Each entity's line is where it starts in the file, counted in the
// Catalog's lists: a null entry, which the decoder drops, takes no index.
func TestParseFileLines(t *testing.T) {
	y := `gateway:
apis:
  - id: a
usagePlans:
  -
  - name: p
  - ~
  - &q
    name: q
apiKeys:
  - {name: k}
  - *q
`
	f, err := ParseFile("x.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if !f.hasGateway {
		t.Error("an empty gateway block is a gateway block")
	}
	for place, want := range map[string]int{
		"apis[0]": 3, "usagePlans[0]": 6, "usagePlans[1]": 8, "usagePlans[2]": 0,
		"apiKeys[0]": 11, "apiKeys[1]": 12, "apiKeys[2]": 0, "apiKeys[-1]": 0, "apiKeys": 0, "nothing[0]": 0,
	} {
		if got := f.Line(place); got != want {
			t.Errorf("Line(%q) = %d, want %d", place, got, want)
		}
	}
	if len(f.Catalog.UsagePlans) != 2 || f.Catalog.UsagePlans[1].Name != "q" {
		t.Fatalf("plans %+v", f.Catalog.UsagePlans)
	}
	// The same as JSON.
	j := `{"gateway": null, "apis": [{"id": "a"}],
"usagePlans": [
  null,
  {"name": "p"}, null,
  {"name": "q"}]}`
	f, err = ParseFile("x.json", []byte(j))
	if err != nil {
		t.Fatal(err)
	}
	if got := []int{f.Line("apis[0]"), f.Line("usagePlans[0]"), f.Line("usagePlans[1]")}; got[0] != 1 || got[1] != 4 || got[2] != 5 || !f.hasGateway {
		t.Errorf("lines %v, hasGateway %v", got, f.hasGateway)
	}
}

// A field the YAML reading refuses is refused with its line, however the
// file is written.
func TestParseFileYAMLKnownFields(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"apiKeys:\n  - name: k\n    valueHash: ab\n", "line 3: field valueHash not found in type catalog.APIKey"},
		{"usagePlans:\n  - name: p\n    quota: {limit: 1, perod: DAY}\n", "line 3: field perod not found in type catalog.Quota"},
		{"usagePlan: []\n", "line 1: field usagePlan not found in type catalog.Catalog"},
		{"apis: []\napis: []\n", `line 2: mapping key "apis" already defined at line 1`},
		{"base: &b {name: p}\nusagePlans: [*b]\n", "field base not found"},
	} {
		_, err := ParseFile("x.yaml", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "x.yaml: ") {
			t.Errorf("%q: got %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}
