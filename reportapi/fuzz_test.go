package reportapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
)

// fuzzClock is the time the fuzz seeds are signed at.
var fuzzClock = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// FuzzSigV4 sends any Authorization header, X-Amz-Date and body through
// the authentication middleware: it must never panic, must answer with one
// of the statuses authentication uses, and must hand the handler exactly
// the body that was sent. parseSigV4 must return every part of a header it
// accepts.
func FuzzSigV4(f *testing.F) {
	a := newAuthenticator(testCreds, func() time.Time { return fuzzClock })
	// Signed seeds, checked to pass: the fuzz explores around requests
	// that are let in as well as around refusals.
	for _, body := range []string{"", `{"name":"x"}`} {
		for _, method := range []string{"GET", "POST"} {
			r, _ := http.NewRequest(method, "http://admin.test/apikeys?limit=5", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			if err := Sign(r, []byte(body), testCreds, fuzzClock); err != nil {
				f.Fatal(err)
			}
			w := httptest.NewRecorder()
			a.middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(w, r)
			if w.Code != 200 {
				f.Fatalf("signed %s seed refused: %d %s", method, w.Code, w.Body)
			}
			f.Add(method, r.Header.Get("Authorization"), r.Header.Get("X-Amz-Date"), []byte(body))
		}
	}
	// More seeds, refused: testdata/fuzz/FuzzSigV4.
	f.Fuzz(func(t *testing.T, method, auth, amzDate string, body []byte) {
		if method != "GET" && method != "POST" {
			return
		}
		if s, err := parseSigV4(auth); err == nil && (s.accessKey == "" || s.signedHeaders == "" || s.signature == "") {
			t.Fatalf("parseSigV4 accepted %q with a part missing: %+v", auth, s)
		} else if err != nil && (err.status != 403 || err.errType != "IncompleteSignatureException") {
			t.Fatalf("parseSigV4 error %v", err)
		}
		r := httptest.NewRequest(method, "http://admin.test/apikeys?limit=5", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", auth)
		r.Header.Set("X-Amz-Date", amzDate)
		var got []byte
		reached := false
		h := a.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reached = true
			got, _ = io.ReadAll(r.Body)
		}))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if reached {
			if w.Code != 200 {
				t.Fatalf("handler reached, status %d", w.Code)
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("handler read %q, want the body sent %q", got, body)
			}
			return
		}
		switch w.Code {
		case 403, 400, 413, 429:
		default:
			t.Fatalf("refused with status %d: %s", w.Code, w.Body)
		}
		var m struct{ Message string }
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil || m.Message == "" || w.Header().Get("X-Amzn-Errortype") == "" {
			t.Fatalf("refusal not in AWS's shape: %q", w.Body)
		}
	})
}

// FuzzImportKeys imports any file: the answer is 201 or a 4xx, never a
// server error; an import accounts for every row (a key or a warning),
// refuses everything under failonwarnings if a row fails, and leaves a
// valid catalog.
func FuzzImportKeys(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzImportKeys.
	start := &catalog.Catalog{
		APIs: []catalog.API{{ID: "api1", Stages: []catalog.Stage{{Name: "prod", Upstream: "http://127.0.0.1:1"}},
			Resources: []catalog.Resource{{Path: "/", Methods: map[string]catalog.Method{"GET": {APIKeyRequired: true}}}}}},
		UsagePlans: []catalog.UsagePlan{{ID: "plan000001", Name: "Free", APIStages: []catalog.APIStage{{APIID: "api1", Stage: "prod"}}}},
	}
	f.Fuzz(func(t *testing.T, file []byte, failOnWarnings bool) {
		m, err := catalog.NewManager(catalog.StateOf(start.Clone()), memSaver{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		a := &apiKeys{cat: m, now: func() time.Time { return fuzzClock }}
		target := "/apikeys?mode=import&format=csv"
		if failOnWarnings {
			target += "&failonwarnings=true"
		}
		w := httptest.NewRecorder()
		a.importKeys(w, httptest.NewRequest("POST", target, bytes.NewReader(file)))
		keys := m.State().NumKeys()
		if w.Code != 201 {
			if w.Code != 400 && w.Code != 413 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if keys != 0 {
				t.Fatalf("refused (%d) yet %d keys were created", w.Code, keys)
			}
			return
		}
		var out struct {
			IDs      []string
			Warnings []string
		}
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer %q: %v", w.Body, err)
		}
		parsed, perr := parseKeysCSV(bytes.NewReader(file))
		if perr != nil {
			t.Fatalf("imported a file parseKeysCSV refuses: %v", perr)
		}
		if len(out.IDs)+len(out.Warnings) != len(parsed.rows) || len(out.IDs) != keys {
			t.Fatalf("%d rows gave %d keys (%d in the catalog) and %d warnings", len(parsed.rows), len(out.IDs), keys, len(out.Warnings))
		}
		if failOnWarnings && len(out.Warnings) > 0 {
			t.Fatalf("failonwarnings imported with warnings %q", out.Warnings)
		}
		if err := catalog.Validate(m.State().Catalog(), nil); err != nil {
			t.Fatalf("the import left an invalid catalog: %v", err)
		}
	})
}
