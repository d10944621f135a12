package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/console"
	"github.com/tollgate/tollgate/reportapi"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// stack is the admin listener of an embedded node as serve wires it:
// the catalog manager with its audit log, the SQLite usage store,
// UpdateUsage, the admin API and the console, on loopback.
type stack struct {
	url   string // the admin listener, http://127.0.0.1:port
	token string
	mgr   *catalog.Manager
	store *sqlitestore.Store
	// dbPath is the store's file.
	dbPath string
	audit  *catalog.AuditLog
	clock  *clock
}

// clock is the stack's time: a fixed start that tests move forward.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func newClock(t time.Time) *clock        { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (s *stack) Now() time.Time          { return s.clock.Now() }
func (s *stack) state() *catalog.State   { return s.mgr.State() }
func (s *stack) keyValue(i int) string   { return fmt.Sprintf("consolekey-%06d-abcdefghij", i) }
func keyID(i int) string                 { return fmt.Sprintf("k%06d", i) }

var testCreds = reportapi.Credentials{AccessKeyID: "AKIDCONSOLETEST", SecretAccessKey: "console-test-secret", Token: "console-test-token-0123456789"}

type memSaver struct{}

func (memSaver) Save(*catalog.Change) error { return nil }

// Plans of the stack: "basic" holds every key but the first ten, with a
// daily quota, a throttle and a per-method override; "pro" the first
// ten, with a monthly quota; "spare" none (a move's target).
const (
	basicQuota = 5000
	proQuota   = 1_000_000
)

// newStack serves a stack with keys keys and days days of usage before
// now (a few events an hour per key: admitted, some throttled, some over
// quota), and a few minutes of the last hour.
func newStack(t testing.TB, keys, days int, now time.Time) *stack {
	t.Helper()
	s := &stack{token: testCreds.Token, clock: newClock(now)}
	cat := &catalog.Catalog{
		APIs: []catalog.API{{ID: "api1", Stages: []catalog.Stage{{Name: "prod", Upstream: "http://127.0.0.1:1"}},
			Resources: []catalog.Resource{{Path: "/items", Methods: map[string]catalog.Method{"GET": {APIKeyRequired: true}}}}}},
		UsagePlans: []catalog.UsagePlan{
			{ID: "basic", Name: "Basic", Throttle: &catalog.Throttle{RateLimit: 10, BurstLimit: 20}, Quota: &catalog.Quota{Limit: basicQuota, Period: catalog.Day},
				APIStages: []catalog.APIStage{{APIID: "api1", Stage: "prod", Throttle: map[string]catalog.Throttle{"/items/GET": {RateLimit: 5, BurstLimit: 10}}}}},
			{ID: "pro", Name: "Pro", Throttle: &catalog.Throttle{RateLimit: 100, BurstLimit: 200}, Quota: &catalog.Quota{Limit: proQuota, Period: catalog.Month},
				APIStages: []catalog.APIStage{{APIID: "api1", Stage: "prod"}}},
			{ID: "spare", Name: "Spare", Quota: &catalog.Quota{Limit: 100, Period: catalog.Day}, APIStages: []catalog.APIStage{{APIID: "api1", Stage: "prod"}}},
		},
	}
	for i := range keys {
		plan := "basic"
		if i < 10 {
			plan = "pro"
		}
		cat.APIKeys = append(cat.APIKeys, catalog.APIKey{ID: keyID(i), Name: fmt.Sprintf("customer-%06d", i), CustomerID: fmt.Sprintf("cust-%d", i),
			Enabled: true, ValueHash: catalog.HashKey(s.keyValue(i)), ValuePrefix: s.keyValue(i)[:4], UsagePlans: []string{plan}, CreatedDate: now.Add(-40 * 24 * time.Hour).Unix()})
	}
	dir := t.TempDir()
	var err error
	if s.mgr, err = catalog.NewManager(catalog.StateOf(cat), memSaver{}, nil); err != nil {
		t.Fatal(err)
	}
	s.audit = catalog.AuditLogAt(filepath.Join(dir, "audit.log"))
	s.mgr.SetAudit(s.audit, s.Now)
	s.dbPath = filepath.Join(dir, "usage.db")
	if s.store, err = sqlitestore.Open(s.dbPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.store.Close() })
	fill(t, s.store, keys, days, now)
	h, err := reportapi.New(reportapi.Config{Ready: func() bool { return true }, Credentials: testCreds, Now: s.Now,
		Catalog: s.mgr, Usage: s.store, Minutes: s.store,
		Quotas:   &usage.QuotaUpdate{Catalog: s.mgr, Store: s.store, Audit: s.audit, Now: s.Now},
		Throttle: reportapi.AdminThrottle{RateLimit: 1e6, BurstLimit: 1e6},
		Console: func(c reportapi.Console) (http.Handler, error) {
			return console.New(console.Config{Token: c.Token, Call: c.Call, Audit: s.audit, Now: s.Now})
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// fill writes the stack's usage: per key and day, every fourth hour an
// event of a few admitted requests (more for low key numbers, so the
// ranking is known), one of throttled ones, and on the key's last hour
// of a day one over quota; and per key, requests in the last hour.
func fill(t testing.TB, store *sqlitestore.Store, keys, days int, now time.Time) {
	t.Helper()
	var batch []schemas.UsageEvent
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := store.InsertEvents(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
	}
	add := func(at time.Time, key int, d schemas.Decision, n uint32) {
		plan := "basic"
		if key < 10 {
			plan = "pro"
		}
		status := int32(200)
		if d != schemas.DecisionAllowed {
			status = 429
		}
		ns := at.UnixNano()
		batch = append(batch, schemas.UsageEvent{ID: schemas.NewEventID(ns), Time: ns, APIID: "api1", Stage: "prod", KeyID: keyID(key), PlanID: plan,
			Method: "GET", Resource: "/items", Status: status, Decision: d, Count: n, LatencyMicros: int64(n) * 900, BytesOut: int64(n) * 120})
	}
	// In time order, a batch per hour of data, as a live gateway writes
	// them: each batch rolls up the hours and days that ended before it,
	// so reports read the rollups they would in service.
	today := now.UTC().Truncate(24 * time.Hour)
	for d := days - 1; d >= 0; d-- {
		day := today.AddDate(0, 0, -d)
		for h := 0; h < 24; h += 4 {
			for k := range keys {
				at := day.Add(time.Duration(h)*time.Hour + time.Duration(k%60)*time.Minute)
				if !at.Before(now) {
					continue
				}
				add(at, k, schemas.DecisionAllowed, uint32(1+(keys-k)%50))
				if h == 8 {
					add(at.Add(time.Second), k, schemas.DecisionThrottled, 2)
				}
				if h == 20 && k%7 == 0 {
					add(at.Add(2*time.Second), k, schemas.DecisionQuotaExceeded, 1)
				}
			}
			flush()
		}
	}
	for k := range keys {
		add(now.Add(-time.Duration(1+k%50)*time.Minute), k, schemas.DecisionAllowed, 3)
	}
	flush()
}
