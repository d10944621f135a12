package catalog

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

func TestWebhookValidation(t *testing.T) {
	good := Webhook{ID: "w1", Name: "ops", URL: "https://hooks.example.com/q", Secret: "s3cret"}
	tests := []struct {
		name  string
		edit  func(*Webhook)
		field string // "" when valid
	}{
		{"valid", func(*Webhook) {}, ""},
		{"ftp url", func(w *Webhook) { w.URL = "ftp://x.example.com/" }, "url"},
		{"relative url", func(w *Webhook) { w.URL = "/hook" }, "url"},
		{"user info", func(w *Webhook) { w.URL = "https://u:p@x.example.com/" }, "url"},
		{"empty secret", func(w *Webhook) { w.Secret = "" }, "secret"},
		{"threshold 0", func(w *Webhook) { w.Thresholds = []float64{0} }, "thresholds"},
		{"threshold 101", func(w *Webhook) { w.Thresholds = []float64{50, 101} }, "thresholds"},
		{"threshold 100", func(w *Webhook) { w.Thresholds = []float64{100} }, ""},
		{"unknown event", func(w *Webhook) { w.Events = []string{"key.deleted"} }, "events"},
		{"no name", func(w *Webhook) { w.Name = "" }, "name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := good.Clone()
			tc.edit(&w)
			tx := NewState().Begin()
			tx.PutWebhook(w)
			err := tx.Validate(nil)
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("got %v, want valid", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), ": "+tc.field+": ")):
				t.Fatalf("got %v, want an error naming %q", err, tc.field)
			}
		})
	}
}

func TestWebhooksBounded(t *testing.T) {
	tx := NewState().Begin()
	for i := range maxWebhooks {
		tx.PutWebhook(Webhook{ID: fmt.Sprintf("w%03d", i), Name: fmt.Sprintf("n%03d", i), URL: "https://a.example.com/", Secret: "x"})
	}
	if err := tx.Validate(nil); err != nil {
		t.Fatalf("%d webhooks: %v", maxWebhooks, err)
	}
	tx.PutWebhook(Webhook{ID: "x", Name: "one too many", URL: "https://a.example.com/", Secret: "x"})
	if err := tx.Validate(nil); err == nil || !strings.Contains(err.Error(), "at most 100") {
		t.Fatalf("%d webhooks: %v, want refused", maxWebhooks+1, err)
	}
}

func TestWebhookNamesUnique(t *testing.T) {
	tx := NewState().Begin()
	tx.PutWebhook(Webhook{ID: "w1", Name: "ops", URL: "https://a.example.com/", Secret: "x"})
	tx.PutWebhook(Webhook{ID: "w2", Name: "ops", URL: "https://b.example.com/", Secret: "y"})
	if err := tx.Validate(nil); err == nil || !strings.Contains(err.Error(), "name") {
		t.Fatalf("got %v, want a name clash", err)
	}
}

// TestWebhookReplicates follows a webhook through what a fleet and an
// embedded node do with it: the config records of a change, a view
// applying them, the view's snapshot, the audit log (without the secret).
func TestWebhookReplicates(t *testing.T) {
	w := Webhook{ID: "w1", Name: "ops", URL: "https://a.example.com/", Secret: "s3cret", Thresholds: []float64{50, 100}}
	old := NewState()
	tx := old.Begin()
	tx.PutWebhook(w)
	if err := tx.Validate(nil); err != nil {
		t.Fatal(err)
	}
	ch := &Change{Old: old, New: tx.State, Delta: tx.Delta()}
	if !ch.Webhooks {
		t.Fatalf("delta %+v does not name the webhooks", ch.Delta)
	}
	recs, err := ChangeRecordsOf(ch)
	if err != nil || len(recs) != 1 || recs[0].Key() != "webhook/w1" {
		t.Fatalf("records %+v, %v: want one webhook/w1", recs, err)
	}
	v := newSettledView()
	applyRecords(t, v, recs)
	if d := v.TakeDelta(); !d.Webhooks {
		t.Fatalf("view delta %+v does not name the webhooks", d)
	}
	if got := v.State().Webhook("w1"); got == nil || got.Secret != "s3cret" || len(got.Thresholds) != 2 {
		t.Fatalf("view holds %+v", got)
	}
	var buf bytes.Buffer
	if _, err := v.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	v2, err := ReadView(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := v2.State().Webhook("w1"); got == nil || got.URL != w.URL {
		t.Fatalf("snapshot gives %+v", got)
	}
	for _, e := range AuditEntries(ch, time.Now(), "me", "test") {
		if strings.Contains(string(e.New), "s3cret") {
			t.Fatalf("audit entry shows the secret: %s", e.New)
		}
	}
	// A delete is a tombstone.
	tx = ch.New.Begin()
	tx.DeleteWebhook("w1")
	recs, err = ChangeRecordsOf(&Change{Old: ch.New, New: tx.State, Delta: tx.Delta()})
	if err != nil || len(recs) != 1 || !recs[0].Tombstone() {
		t.Fatalf("records %+v, %v: want one tombstone", recs, err)
	}
	applyRecords(t, v, recs)
	if v.State().Webhook("w1") != nil {
		t.Fatal("the webhook survived its tombstone")
	}
}

// applyRecords applies records to v as the config log would.
func applyRecords(t *testing.T, v *View, recs []schemas.ConfigRecord) {
	t.Helper()
	for i, r := range recs {
		var value []byte
		if !r.Tombstone() {
			var err error
			if value, err = schemas.EncodeConfigRecord(&r); err != nil {
				t.Fatal(err)
			}
		}
		if err := v.Apply(int64(i), []byte(r.Key()), value); err != nil {
			t.Fatalf("apply %s: %v", r.Key(), err)
		}
	}
}
