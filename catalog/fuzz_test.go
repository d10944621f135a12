package catalog

import (
	"os"
	"strings"
	"testing"
)

// FuzzParseFile feeds arbitrary bytes to the configuration file reader and
// applies what it accepts to an empty catalog: neither may panic, an
// accepted file must give a catalog that validates, and an error must name
// the file.
//
//	go test -run '^$' -fuzz FuzzParseFile -fuzztime 10m ./catalog
func FuzzParseFile(f *testing.F) {
	f.Add([]byte(issueExample))
	if b, err := os.ReadFile("../examples/tollgate.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("apis: []\n---\napis: []\n"))
	f.Add([]byte("usagePlans:\n  - name: a\n    quota: {limit: 1, period: DAY}\napiKeys:\n  - name: k\n    usagePlans: [a]\n"))
	f.Add([]byte("\xef\xbb\xbfgateway: {unknownRouteStatus: 404}\n"))
	f.Add([]byte(`{"usagePlans": [{"name": "a", "quota": {"limit": 1, "period": "DAY"}}], "apiKeys": [null, {"name": "k", "usagePlans": ["a"]}]}`))
	f.Add([]byte(`{"gateway": {"upstreamTimeout": "1s"}, "apiKeys": [{"name": 12, "enabled": "yes", "value": "\u00e9\/"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := ParseFile("f.yaml", b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		next, _, err := Apply(&Catalog{}, file, now)
		if err != nil {
			if !strings.Contains(err.Error(), "f.yaml") && !strings.Contains(err.Error(), "invalid configuration") {
				t.Fatalf("apply error does not name the file: %v", err)
			}
			return
		}
		if err := Validate(next, nil); err != nil {
			t.Fatalf("an applied file gave a catalog that does not validate: %v", err)
		}
	})
}
