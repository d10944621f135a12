package aggregator

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/notify"
	"github.com/tollgate/tollgate/schemas"
)

// Three enforcers admit one key's requests together across 80% and 100%
// of its quota: the aggregator that owns the key's partition counts
// them all and signals the key's total, and the notifier on its signals
// sends one notification per threshold, not one per enforcer (enforcers
// run no notifier: they see only their share).
func TestThreeEnforcersCrossOnce(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]float64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var n notify.Notification
		json.Unmarshal(b, &n)
		mu.Lock()
		got[n.ID] = append(got[n.ID], n.Threshold)
		mu.Unlock()
	}))
	defer srv.Close()

	cat := quotaCatalog(100)
	tx := cat.Begin()
	tx.PutWebhook(catalog.Webhook{ID: "w1", Name: "ops", URL: srv.URL, Secret: "s"})
	cat = tx.State
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	ob, err := notify.OpenOutbox(filepath.Join(t.TempDir(), "notify.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	n, err := notify.New(notify.Config{Outbox: ob, Catalog: func() *catalog.State { return cat },
		Guard: notify.Guard{AllowPrivate: true}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthority()
	ctx := context.Background()
	nodes := []string{"enf-1", "enf-2", "enf-3"}
	for i := range 120 { // one request each, round robin, a signal round every 3
		e := schemas.UsageEvent{Time: now.UnixNano(), PlanID: "day", KeyID: "k1", Node: nodes[i%3], Decision: schemas.DecisionAllowed}
		a.count(0, []schemas.UsageEvent{e}, cat, now.UnixNano())
		if i%3 == 2 {
			if err := n.Signals(ctx, a.changed(now.UnixNano())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := n.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("notifications %v, want one for 80%% and one for 100%%", got)
	}
	for id, ts := range got {
		if len(ts) != 1 {
			t.Fatalf("notification %s received %d times", id, len(ts))
		}
	}
}
