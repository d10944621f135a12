package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// readBoth reads the same text as JSON and as YAML.
func readBoth(b []byte) (j, y *File, jerr, yerr error) {
	j = &File{Name: "x.json", lines: map[string][]int{}}
	y = &File{Name: "x.json", lines: map[string][]int{}}
	body, ok := jsonObject(b)
	if !ok {
		panic(fmt.Sprintf("%q is not read as JSON", b))
	}
	return j, y, j.readJSON(body), y.readYAML(b)
}

// sameFile reports how two readings of a file differ, or "".
func sameFile(j, y *File) string {
	// DeepEqual takes -0 for 0, the JSON of the catalogs does not.
	jj, _ := json.Marshal(j.Catalog)
	yj, _ := json.Marshal(y.Catalog)
	switch {
	case !reflect.DeepEqual(j.Catalog, y.Catalog) || !bytes.Equal(jj, yj):
		return fmt.Sprintf("catalog\n json %+v\n yaml %+v", j.Catalog, y.Catalog)
	case !reflect.DeepEqual(j.lines, y.lines):
		return fmt.Sprintf("lines\n json %v\n yaml %v", j.lines, y.lines)
	case j.hasGateway != y.hasGateway:
		return fmt.Sprintf("hasGateway: json %v, yaml %v", j.hasGateway, y.hasGateway)
	}
	return ""
}

// The JSON reading gives what the YAML reading gives for the same text,
// in particular where encoding/json alone would read otherwise.
func TestReadJSONAsYAMLWould(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty object", `{}`},
		{"issue example", mustJSON(t, issueExample)},
		{"example file", mustJSON(t, string(mustRead(t, "../examples/tollgate.yaml")))},
		{"lines", "{\n  \"apis\": [\n    {\"id\": \"a\"},\n\n    {\"id\": \"b\"}\n  ],\n  \"apiKeys\": [{\"name\": \"k\"},\n  {\"name\": \"l\"}]\n}\n"},
		{"carriage returns", "{\r\"apis\": [\r\n{\"id\": \"a\"},\r{\"id\": \"b\"}]}"},
		{"null entries dropped", "{\"usagePlans\": [null, {\"name\": \"b\"},\nnull,\n{\"name\": \"c\", \"apiStages\": [null, {\"apiId\": \"a\"}]}]}"},
		{"null lists and fields", `{"apis": null, "usagePlans": [{"name": "a", "description": null, "throttle": null, "tags": {"x": null}, "apiStages": null}]}`},
		{"null gateway", `{"gateway": null}`},
		{"null duration", `{"gateway": {"upstreamTimeout": null}}`},
		{"duration", `{"gateway": {"upstreamTimeout": "1m30s", "rateLimitHeaders": false, "unknownRouteStatus": 404}}`},
		{"zero duration as a number", `{"gateway": {"upstreamTimeout": 0}}`},
		{"numbers as strings", `{"apiKeys": [{"name": 12, "customerId": -1.50, "value": 1e3, "usagePlans": [7], "tags": {"n": 0}}]}`},
		{"booleans as strings", `{"usagePlans": [{"name": true, "description": false}], "apiKeys": [{"name": "k", "usagePlans": [false]}]}`},
		{"yes as a boolean", `{"apiKeys": [{"name": "k", "enabled": "yes"}, {"name": "l", "enabled": "off"}]}`},
		{"floats as integers", `{"usagePlans": [{"name": "a", "throttle": {"rateLimit": 1, "burstLimit": 2.9}, "quota": {"limit": 1e3, "offset": -0.5, "period": "DAY"}}]}`},
		{"negative zero", `{"usagePlans": [{"name": "a", "throttle": {"rateLimit": -0, "burstLimit": 1}}]}`},
		{"big integer as float", `{"usagePlans": [{"name": "a", "throttle": {"rateLimit": 9007199254740993, "burstLimit": 1}}]}`},
		{"escapes", `{"usagePlans": [{"name": "caf\u00e9 \"q\" \\ \b\f\n\r\t", "tags": {"k\u0065y": "v"}}]}`},
		{"escaped field name", `{"usagePlans": [{"n\u0061me": "a"}]}`},
		{"non-ASCII", `{"usagePlans": [{"name": "Café ☕ 𝄞"}]}`},
		{"methods and throttles", `{"apis": [{"id": "a", "stages": [{"name": "s", "upstream": "http://u", "basePath": "", "throttle": {"rateLimit": 0.5, "burstLimit": 1}}], "resources": [{"path": "/x", "methods": {"GET": {"apiKeyRequired": true}, "POST": null}}]}], "usagePlans": [{"name": "p", "apiStages": [{"apiId": "a", "stage": "s", "throttle": {"/x/GET": {"rateLimit": 1, "burstLimit": 2}}}]}]}`},
		{"empty lists and maps", `{"apis": [], "usagePlans": [{"name": "a", "tags": {}, "apiStages": []}], "apiKeys": []}`},
		{"tabs", "{\t\"apis\":\t[\t{\"id\":\t\"a\"}\t]\t}"},
		{"byte-order mark", "\xef\xbb\xbf{\"apis\": [{\"id\": \"a\"}]}"},
		{"keys split over parts", bigJSONKeys(2*minPart + 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, y, jerr, yerr := readBoth([]byte(tc.in))
			if jerr != nil || yerr != nil {
				t.Fatalf("json: %v\nyaml: %v", jerr, yerr)
			}
			if d := sameFile(j, y); d != "" {
				t.Error(d)
			}
		})
	}
}

// mustJSON renders a YAML file as JSON, indented.
func mustJSON(t testing.TB, y string) string {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(y), &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func bigJSONKeys(n int) string {
	var b strings.Builder
	b.WriteString(`{"apiKeys": [`)
	for i := range n {
		if i > 0 {
			b.WriteString(",\n")
		}
		if i%100 == 7 {
			b.WriteString("null,\n")
		}
		fmt.Fprintf(&b, `{"name": "key-%d", "enabled": true, "usagePlans": ["p"]}`, i)
	}
	b.WriteString("]}")
	return b.String()
}

// Whatever encoding/json or the JSON reading refuses, the message says
// where and what.
func TestReadJSONErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"unknown top-level field", "{\n  \"apis\": [],\n  \"usagePlan\": []\n}", `x.json:3:3: unknown field "usagePlan"`},
		{"unknown field", "{\"apiKeys\": [\n  {\"name\": \"k\"},\n  {\"name\": \"l\", \"valu\": \"x\"}]}", `x.json:3:17: apiKeys[1]: unknown field "valu"`},
		{"unknown nested field", "{\"usagePlans\": [{\"name\": \"p\",\n \"quota\": {\"limit\": 1, \"perod\": \"DAY\"}}]}", `x.json:2:24: usagePlans[0]: unknown field "perod"`},
		{"unknown field deep", `{"apis": [{"id": "a", "resources": [{"path": "/", "methods": {"GET": {"apiKeyRequire": true}}}]}]}`, `apis[0]: unknown field "apiKeyRequire"`},
		{"case differs", `{"apiKeys": [{"Name": "k"}]}`, `unknown field "Name" (field names are case-sensitive: "name")`},
		{"JSON-only field valueHash", `{"apiKeys": [{"name": "k", "valueHash": "ab"}]}`, `unknown field "valueHash"`},
		{"JSON-only field createdDate", `{"usagePlans": [{"name": "p", "createdDate": 1}]}`, `unknown field "createdDate"`},
		{"unknown gateway field", `{"gateway": {"timeout": "1s"}}`, `x.json:1:14: gateway: unknown field "timeout"`},
		{"duplicate top-level field", "{\"apis\": [],\n\"apis\": []}", `x.json:2:1: "apis" is already set on line 1`},
		{"duplicate field", `{"apiKeys": [{"name": "k", "name": "l"}]}`, `x.json:1:28: apiKeys[0]: "name" is set twice`},
		{"duplicate escaped field", `{"apiKeys": [{"name": "k", "n\u0061me": "l"}]}`, `"name" is set twice`},
		{"duplicate map key", `{"apiKeys": [{"name": "k", "tags": {"a": "1", "b": "2", "a": "3"}}]}`, `apiKeys[0]: "a" is set twice`},
		{"duplicate in a big map", `{"apiKeys": [{"name": "k", "tags": {` + jsonTags(40) + `, "t7": "again"}}]}`, `"t7" is set twice`},
		{"trailing object", "{\"apis\": []}\n{\"apis\": []}", `x.json:2:1: not valid JSON: invalid character '{' after top-level value`},
		{"trailing YAML document", "{\"apis\": []}\n---\n", `x.json:2:1: not valid JSON: invalid character '-' after top-level value`},
		{"trailing comma", `{"apis": [],}`, `x.json:1:13: not valid JSON: invalid character '}' looking for beginning of object key string`},
		{"cut short", "{\"apiKeys\": [\n{\"name\": \"k\"},\n{\"name\": ", `x.json:3:9: not valid JSON: unexpected end of JSON input`},
		{"missing comma between entities", "{\"apiKeys\": [{\"name\": \"k\"}\n {\"name\": \"l\"}]}", `x.json:2:2: not valid JSON: invalid character '{' after array element`},
		{"bad literal", `{"apiKeys": [{"name": "k", "enabled": tru}]}`, `not valid JSON: invalid character '}' in literal true`},
		{"bad null entry", `{"apiKeys": [nul]}`, `not valid JSON`},
		{"lone surrogate", `{"apiKeys": [{"name": "a\ud800b"}]}`, `x.json:1:25: apiKeys[0]: \ud800 is half of a UTF-16 surrogate pair`},
		{"line separator", "{\"apiKeys\": [{\"name\": \"a\u2028b\"}]}", `x.json:1:25: the character U+2028 is not allowed`},
		{"delete", "{\"apiKeys\": [{\"name\": \"a\x7f\"}]}", `x.json:1:25: the character U+007F is not allowed`},
		{"string for a boolean", `{"apiKeys": [{"name": "k", "enabled": "sure"}]}`, "x.json:1: apiKeys[0]: yaml: unmarshal errors:\n  line 1: cannot unmarshal !!str `sure` into bool"},
		{"string for a number", "{\"usagePlans\": [\n{\"name\": \"p\", \"quota\": {\"limit\": \"5\"}}]}", `x.json:2: usagePlans[0]: quota.limit: cannot read a JSON string as int64`},
		{"object for a string", `{"apiKeys": [{"name": {"first": "k"}}]}`, `apiKeys[0]: name: cannot read a JSON object as string`},
		{"object for a list", `{"apiKeys": {"name": "k"}}`, `x.json:1: apiKeys: cannot read a JSON object as []catalog.APIKey`},
		{"string for a list", `{"apis": "none"}`, `apis: cannot read a JSON string as []catalog.API`},
		{"integer overflow", `{"usagePlans": [{"name": "p", "quota": {"limit": 99999999999999999999}}]}`, "x.json:1: usagePlans[0]: yaml: unmarshal errors:\n  line 1: cannot unmarshal !!float `9999999...` into int64"},
		{"float out of range", `{"usagePlans": [{"name": "p", "throttle": {"rateLimit": 1e400}}]}`, `usagePlans[0]: throttle.rateLimit: cannot read a JSON number 1e400 as float64`},
		{"bad duration", `{"gateway": {"upstreamTimeout": "soon"}}`, `x.json:1: gateway: "soon" is not a duration`},
		{"number for a duration", `{"gateway": {"upstreamTimeout": 30}}`, `gateway: "30" is not a duration`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFile("x.json", []byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, tc.want)
			}
			// The YAML reading of the same text refuses it too, unless
			// the JSON reading refuses what YAML would misread, or YAML
			// syntax in a file that starts as JSON.
			if strings.Contains(tc.want, "is not allowed") || tc.name == "trailing comma" {
				return
			}
			if _, _, _, yerr := readBoth([]byte(tc.in)); yerr == nil {
				t.Errorf("the YAML reading accepts it")
			}
		})
	}
}

func jsonTags(n int) string {
	var tags []string
	for i := range n {
		tags = append(tags, fmt.Sprintf(`"t%d": "v"`, i))
	}
	return strings.Join(tags, ", ")
}

// What is not JSON is refused before the JSON reading starts, as the
// YAML reading refuses it; a flow mapping with bare keys stays YAML.
func TestParseFileFirstByte(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "x.json: the file is empty"},
		{"white space", " \n \r\n", "x.json: the file is empty"},
		{"byte-order mark alone", "\xef\xbb\xbf", "x.json: the file is empty"},
		{"not UTF-8", "{\"apis\": [{\"id\": \"caf\xe9\"}]}", "x.json:1:22: byte 0xe9 is not UTF-8"},
		{"UTF-16", "\xff\xfe{\x00}\x00", "x.json:1:1: byte 0xff is not UTF-8 (the file looks like UTF-16)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFile("x.json", []byte(tc.in))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	f, err := ParseFile("x.yaml", []byte("{apis: [{id: a}], usagePlans: [{name: p,}]}"))
	if err != nil || len(f.Catalog.UsagePlans) != 1 {
		t.Fatalf("a YAML flow mapping: %v, %+v", err, f)
	}
}

// A file whose lists are decoded in several parts reports the first
// problem in the file, whichever part finds it first.
func TestReadJSONFirstErrorOfParts(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	in := bigJSONKeys(4*minPart + 10)
	late := strings.Replace(in, `"key-4000", "enabled": true`, `"key-4000", "enabled": 1`, 1)
	early := strings.Replace(late, `"key-1500", "enabled": true`, `"key-1500", "enable": true`, 1)
	for _, tc := range []struct{ in, want string }{
		{late, `x.json:4041: apiKeys[4000]: enabled: cannot read a JSON number as bool`},
		{early, `x.json:1516:22: apiKeys[1500]: unknown field "enable"`},
	} {
		_, err := ParseFile("x.json", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %q", err, tc.want)
		}
	}
}

// Random catalogs written as YAML and as JSON read the same, and the
// JSON text read as YAML gives the same File, lines included.
func TestReadJSONRandomCatalogs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	skipped := 0
	for i := range 300 {
		c := randomFileCatalog(rng)
		y, err := yaml.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := yaml.Unmarshal(y, &v); err != nil {
			skipped++ // yaml.v3 writes some odd strings in a way it cannot read back
			continue
		}
		jb, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		js := string(jb)
		if rng.IntN(2) == 0 { // compact too: every entity on line 1
			var buf bytes.Buffer
			json.Compact(&buf, []byte(js))
			js = buf.String()
		}
		fy, err := ParseFile("x", y)
		if err != nil {
			t.Fatalf("catalog %d as YAML: %v\n%s", i, err, y)
		}
		fj, err := ParseFile("x", []byte(js))
		if err != nil {
			t.Fatalf("catalog %d as JSON: %v\n%s", i, err, js)
		}
		if !reflect.DeepEqual(fy.Catalog, fj.Catalog) || fy.hasGateway != fj.hasGateway {
			t.Fatalf("catalog %d:\nYAML %+v\nJSON %+v\n%s", i, fy.Catalog, fj.Catalog, js)
		}
		for _, list := range []string{"apis", "usagePlans", "apiKeys"} {
			if len(fy.lines[list]) != len(fj.lines[list]) {
				t.Fatalf("catalog %d: %s lines %v as YAML, %v as JSON", i, list, fy.lines[list], fj.lines[list])
			}
		}
		j, yj, jerr, yerr := readBoth([]byte(js))
		if jerr != nil || yerr != nil {
			t.Fatalf("catalog %d: json %v, yaml %v", i, jerr, yerr)
		}
		if d := sameFile(j, yj); d != "" {
			t.Fatalf("catalog %d: %s\n%s", i, d, js)
		}
	}
	if skipped > 3 {
		t.Fatalf("%d of 300 catalogs skipped", skipped)
	}
}

// randomFileCatalog returns a catalog as a file holds it: every field a
// file may set, at random, and none it may not.
func randomFileCatalog(rng *rand.Rand) Catalog {
	str := func() string {
		const chars = "abcXYZ019 -_/.:é☕𝄞\"\\\t\n{}[],#&*!|>'%@`"
		var b []rune
		for range rng.IntN(12) {
			b = append(b, []rune(chars)[rng.IntN(utf8.RuneCountInString(chars))])
		}
		if rng.IntN(8) == 0 {
			return []string{"true", "null", "12", "1e3", "yes", "~", "-", "0x10"}[rng.IntN(8)]
		}
		if len(b) > 0 && strings.ContainsRune(" \t\n", b[0]) {
			b[0] = 'x' // yaml.v3 writes leading white space in a way it cannot read back
		}
		return string(b)
	}
	some := func() bool { return rng.IntN(2) == 0 }
	throttle := func() *Throttle {
		if some() {
			return nil
		}
		return &Throttle{RateLimit: []float64{0, 0.5, 10, 1e9, 1234.5678}[rng.IntN(5)], BurstLimit: rng.Int64N(1 << 40)}
	}
	tags := func() map[string]string {
		if some() {
			return nil
		}
		m := map[string]string{}
		for range rng.IntN(4) {
			m[str()] = str()
		}
		return m
	}
	var c Catalog
	if some() {
		c.Gateway = Gateway{Throttle: throttle(), UnknownRouteStatus: []int{0, 403, 404}[rng.IntN(3)], UpstreamTimeout: Duration(rng.Int64N(1e12))}
		if some() {
			on := some()
			c.Gateway.RateLimitHeaders = &on
		}
	}
	for range rng.IntN(3) {
		a := API{ID: str(), Name: str()}
		for range rng.IntN(3) {
			s := Stage{Name: str(), Upstream: str(), Host: str(), Throttle: throttle()}
			if some() {
				p := str()
				s.BasePath = &p
			}
			a.Stages = append(a.Stages, s)
		}
		for range rng.IntN(3) {
			r := Resource{Path: str(), Methods: map[string]Method{}}
			for range rng.IntN(3) {
				r.Methods[str()] = Method{APIKeyRequired: some()}
			}
			a.Resources = append(a.Resources, r)
		}
		c.APIs = append(c.APIs, a)
	}
	for range rng.IntN(4) {
		p := UsagePlan{ID: str(), Name: str(), Description: str(), Throttle: throttle(), Tags: tags()}
		if some() {
			p.Quota = &Quota{Limit: rng.Int64N(1e6), Offset: rng.Int64N(10), Period: []Period{Day, Week, Month, "YEAR", ""}[rng.IntN(5)]}
		}
		for range rng.IntN(3) {
			s := APIStage{APIID: str(), Stage: str()}
			if some() {
				s.Throttle = map[string]Throttle{str(): {RateLimit: 1, BurstLimit: 2}}
			}
			p.APIStages = append(p.APIStages, s)
		}
		c.UsagePlans = append(c.UsagePlans, p)
	}
	for range rng.IntN(5) {
		k := APIKey{ID: str(), Name: str(), Description: str(), Enabled: some(), CustomerID: str(), Tags: tags(), Value: str()}
		for range rng.IntN(3) {
			k.UsagePlans = append(k.UsagePlans, str())
		}
		c.APIKeys = append(c.APIKeys, k)
	}
	return c
}

func mustRead(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzReadJSON reads JSON objects both ways: when both readings accept
// one, they must give the same File, and JSON that the YAML reading
// accepts, the JSON reading must accept too (but for the characters it
// refuses on purpose).
//
//	go test -run '^$' -fuzz FuzzReadJSON -fuzztime 10m ./catalog
func FuzzReadJSON(f *testing.F) {
	f.Add([]byte(mustJSON(f, issueExample)))
	f.Add([]byte(`{"usagePlans": [null, {"name": 1.5e3, "quota": {"limit": 2.5, "period": "DAY"}, "tags": {"a": null}}], "gateway": {"upstreamTimeout": null}}`))
	f.Add([]byte(`{"apiKeys": [{"name": "k", "enabled": "on", "usagePlans": [null, true]}, {"name": "\u00e9\ud83d\ude00"}]}`))
	f.Add([]byte("{\r\n\"apis\": [{\"id\": \"a\", \"stages\": [{\"name\": \"s\", \"basePath\": null}]},\r{\"id\": \"b\"}]}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, ok := jsonObject(b); !ok || checkUTF8(b) != nil {
			return
		}
		j, y, jerr, yerr := readBoth(b)
		switch {
		case jerr == nil && yerr == nil:
			if d := sameFile(j, y); d != "" {
				t.Fatalf("%q: %s", b, d)
			}
		case jerr != nil && yerr == nil && json.Valid(b):
			if i, _ := yamlUnsafeChar(b); i < 0 {
				t.Fatalf("%q: refused as JSON (%v), accepted as YAML", b, jerr)
			}
		}
		if jerr != nil && !strings.HasPrefix(jerr.Error(), "x.json:") {
			t.Fatalf("%q: the error does not name the file: %v", b, jerr)
		}
	})
}

// Both readings know every field of a file: a field added to Catalog
// must be added to readJSON and yamlLines too. jsonCheck tells a
// struct's fields apart by a bit of a uint64.
func TestFileReadersKnowEveryField(t *testing.T) {
	for name := range yamlFields(reflect.TypeFor[Catalog]()) {
		for _, in := range []string{name + ": null\n", `{"` + name + `": null}`} {
			if _, err := ParseFile("x", []byte(in)); err != nil {
				t.Errorf("%q: %v", in, err)
			}
		}
	}
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		switch typ.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map:
			walk(typ.Elem())
		case reflect.Struct:
			if seen[typ] {
				return
			}
			seen[typ] = true
			if typ.NumField() >= 64 {
				t.Errorf("%s has %d fields", typ, typ.NumField())
			}
			for i := range typ.NumField() {
				walk(typ.Field(i).Type)
			}
		}
	}
	walk(reflect.TypeFor[Catalog]())
}
