package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// receiver is a webhook receiver over loopback that checks signatures
// the documented way (Verify) and records what it accepted, by id.
type receiver struct {
	*httptest.Server
	secret string
	clk    *clock

	mu       sync.Mutex
	status   int           // answer while set; 0: accept
	hold     chan struct{} // while not nil, requests wait for it to close, then are handled
	got      []Notification
	rejected int // requests whose signature did not verify

	arrived  chan struct{} // a request arrived (its body read)
	accepted chan struct{} // a notification was accepted
}

func newReceiver(t *testing.T, secret string, clk *clock) *receiver {
	r := &receiver{secret: secret, clk: clk, arrived: make(chan struct{}, 1000), accepted: make(chan struct{}, 1000)}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

// holdRequests makes requests wait until the returned release is called
// (at the latest when the test ends, before the server closes).
func (r *receiver) holdRequests(t *testing.T) (release func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	r.hold = ch
	r.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			r.mu.Lock()
			r.hold = nil
			r.mu.Unlock()
			close(ch)
		})
	}
	t.Cleanup(release)
	return release
}

// wait waits for an event of the receiver; the bound only keeps a broken
// test from hanging, it is no part of what is tested.
func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("no %s within a minute", what)
	}
}

func (r *receiver) rejections() int { r.mu.Lock(); defer r.mu.Unlock(); return r.rejected }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	hold, status := r.hold, r.status
	r.mu.Unlock()
	r.arrived <- struct{}{}
	if hold != nil {
		// Even once the sender gave up waiting: the receiver then has a
		// notification whose answer the sender never saw.
		<-hold
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	if err := Verify(r.secret, req.Header.Get(SignatureHeader), body, r.clk.Now(), 5*time.Minute); err != nil {
		r.mu.Lock()
		r.rejected++
		r.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var n Notification
	if err := json.Unmarshal(body, &n); err != nil || n.ID != req.Header.Get(IDHeader) {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.got = append(r.got, n)
	r.mu.Unlock()
	r.accepted <- struct{}{}
}

func (r *receiver) set(status int) { r.mu.Lock(); r.status = status; r.mu.Unlock() }

func (r *receiver) received() []Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Notification(nil), r.got...)
}

// ids returns the distinct ids received and the count of each.
func (r *receiver) ids() map[string]int {
	out := map[string]int{}
	for _, n := range r.received() {
		out[n.ID]++
	}
	return out
}

var day0 = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)

// testCatalog has a key in a plan with a daily quota of 100, and the
// given webhooks.
func testCatalog(hooks ...catalog.Webhook) func() *catalog.State {
	st := catalog.StateOf(&catalog.Catalog{
		UsagePlans: []catalog.UsagePlan{{ID: "p1", Name: "gold", Quota: &catalog.Quota{Limit: 100, Period: catalog.Day}}},
		APIKeys:    []catalog.APIKey{{ID: "k1", Name: "acme", Enabled: true, ValueHash: "h1", UsagePlans: []string{"p1"}}},
	})
	tx := st.Begin()
	for _, w := range hooks {
		tx.PutWebhook(w)
	}
	st = tx.State
	return func() *catalog.State { return st }
}

func dayEnd() int64 { return day0.Truncate(24 * time.Hour).Add(24 * time.Hour).UnixNano() }

func usageAt(used int64) Usage {
	return Usage{PlanID: "p1", KeyID: "k1", Used: used, Limit: 100, PeriodEnd: dayEnd()}
}

// newNotifier returns a notifier on an outbox in dir.
func newNotifier(t *testing.T, dir string, clk *clock, cat func() *catalog.State, edit func(*Config)) (*Notifier, *Outbox) {
	t.Helper()
	ob, err := OpenOutbox(filepath.Join(dir, "notify.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	// The attempts' timeout is long: a loaded machine must not fail a
	// test; the tests of timeouts set their own.
	cfg := Config{Outbox: ob, Catalog: cat, Guard: Guard{AllowPrivate: true}, Now: clk.Now, Timeout: time.Minute}
	if edit != nil {
		edit(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n, ob
}

func hook(id, url, secret string) catalog.Webhook {
	return catalog.Webhook{ID: id, Name: id, URL: url, Secret: secret}
}

func runOnce(t *testing.T, n *Notifier) int {
	t.Helper()
	got, err := n.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestSignVerify(t *testing.T) {
	body := []byte(`{"id":"x"}`)
	at := time.Unix(1700000000, 0)
	h := Sign("s1", at, body)
	tests := []struct {
		name   string
		secret string
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"good", "s1", h, body, at, nil},
		{"wrong secret", "s2", h, body, at, ErrBadSignature},
		{"body changed", "s1", h, []byte(`{"id":"y"}`), at, ErrBadSignature},
		{"timestamp changed", "s1", "t=1700000001" + h[len("t=1700000000"):], body, at, ErrBadSignature},
		{"no header", "s1", "", body, at, ErrBadSignature},
		{"replayed late", "s1", h, body, at.Add(time.Hour), ErrStale},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Verify(tc.secret, tc.header, tc.body, tc.now, 5*time.Minute); !errors.Is(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// A receiver that checks signatures with another secret refuses every
// attempt: the notification stays pending, retried.
func TestWrongSignatureRejected(t *testing.T) {
	clk := &clock{t: day0}
	rcv := newReceiver(t, "the receiver's secret", clk)
	n, _ := newNotifier(t, t.TempDir(), clk, testCatalog(hook("w1", rcv.URL, "another secret")), nil)
	if err := n.Quota(context.Background(), []Usage{usageAt(80)}); err != nil {
		t.Fatal(err)
	}
	if got := runOnce(t, n); got != 0 {
		t.Fatalf("delivered %d, want 0", got)
	}
	if rcv.rejections() != 1 || len(rcv.received()) != 0 {
		t.Fatalf("receiver rejected %d, accepted %d; want 1 and 0", rcv.rejections(), len(rcv.received()))
	}
	if st := n.Stats(); st.Failures != 1 || st.Pending != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Crossing 80% then 100% sends one notification each, however often the
// key is seen above them; the next period sends again.
func TestOncePerCrossingPerPeriod(t *testing.T) {
	clk := &clock{t: day0}
	rcv := newReceiver(t, "s", clk)
	n, _ := newNotifier(t, t.TempDir(), clk, testCatalog(hook("w1", rcv.URL, "s")), nil)
	ctx := context.Background()
	for used := int64(70); used <= 105; used++ {
		if err := n.Quota(ctx, []Usage{usageAt(used)}); err != nil {
			t.Fatal(err)
		}
		runOnce(t, n)
	}
	got := rcv.received()
	if len(got) != 2 || got[0].Threshold != 80 || got[0].Used != 80 || got[1].Threshold != 100 || got[1].Used != 100 {
		t.Fatalf("received %+v, want 80%% at 80 and 100%% at 100", got)
	}
	if got[0].KeyID != "k1" || got[0].KeyName != "acme" || got[0].PlanID != "p1" || got[0].Limit != 100 ||
		got[0].Period.Kind != "DAY" || !got[0].Period.Start.Equal(day0.Truncate(24*time.Hour)) {
		t.Fatalf("notification %+v", got[0])
	}
	clk.Add(24 * time.Hour)
	next := usageAt(85)
	next.PeriodEnd += int64(24 * time.Hour)
	n.Quota(ctx, []Usage{next})
	runOnce(t, n)
	if got := rcv.received(); len(got) != 3 || got[2].ID == got[0].ID {
		t.Fatalf("the next day's crossing: received %+v", got)
	}
}

// A receiver down for a while: each attempt fails and the next waits
// twice as long; once the receiver is back, the next attempt delivers.
func TestReceiverDownThenUp(t *testing.T) {
	clk := &clock{t: day0}
	rcv := newReceiver(t, "s", clk)
	rcv.set(http.StatusServiceUnavailable)
	n, ob := newNotifier(t, t.TempDir(), clk, testCatalog(hook("w1", rcv.URL, "s")), nil)
	n.Quota(context.Background(), []Usage{usageAt(80)})
	waits := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	for i, w := range waits {
		runOnce(t, n)
		if st := n.Stats(); st.Attempts != int64(i+1) {
			t.Fatalf("after attempt %d: %+v", i+1, st)
		}
		clk.Add(w - time.Millisecond)
		runOnce(t, n) // not due yet
		if st := n.Stats(); st.Attempts != int64(i+1) {
			t.Fatalf("attempted before the backoff of %v ended: %+v", w, st)
		}
		clk.Add(time.Millisecond)
	}
	rcv.set(0)
	if got := runOnce(t, n); got != 1 {
		t.Fatalf("delivered %d once the receiver is up, want 1", got)
	}
	ds, err := ob.List(context.Background(), Filter{State: -1})
	if err != nil || len(ds) != 1 || ds[0].State != "delivered" || ds[0].Attempts != 5 || len(ds[0].Body) != 0 {
		t.Fatalf("deliveries %+v, %v; want one delivered after 5 attempts, its body no longer kept", ds, err)
	}
	if st := n.Stats(); st.Delivered != 1 || st.Failures != 4 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Attempts end after MaxAge: the notification is given up, listed as
// failed.
func TestGiveUpAfter24h(t *testing.T) {
	clk := &clock{t: day0}
	rcv := newReceiver(t, "s", clk)
	rcv.set(http.StatusInternalServerError)
	n, ob := newNotifier(t, t.TempDir(), clk, testCatalog(hook("w1", rcv.URL, "s")), nil)
	n.Quota(context.Background(), []Usage{usageAt(100)})
	attempts := 0
	for clk.Now().Sub(day0) < 25*time.Hour {
		runOnce(t, n)
		clk.Add(time.Minute)
		attempts++
	}
	ds, _ := ob.List(context.Background(), Filter{State: Failed})
	if len(ds) != 2 { // 80% and 100%
		t.Fatalf("failed deliveries %+v, want 2", ds)
	}
	if st := n.Stats(); st.GivenUp != 2 || st.Pending != 0 || st.Attempts > 2*40 {
		t.Fatalf("stats %+v (backoff should keep attempts to a few dozen a day)", st)
	}
}

// A slow receiver holds up nobody else: while it holds an attempt, the
// other webhook's notification is delivered.
func TestSlowReceiver(t *testing.T) {
	clk := &clock{t: day0}
	slow := newReceiver(t, "s", clk)
	release := slow.holdRequests(t)
	fast := newReceiver(t, "s", clk)
	n, _ := newNotifier(t, t.TempDir(), clk, testCatalog(hook("slow", slow.URL, "s"), hook("fast", fast.URL, "s")), nil)
	n.Quota(context.Background(), []Usage{usageAt(80)})
	done := make(chan int, 1)
	go func() {
		got, _ := n.RunOnce(context.Background())
		done <- got
	}()
	wait(t, slow.arrived, "request at the slow receiver")
	wait(t, fast.accepted, "notification at the fast receiver while the slow one holds its request")
	release()
	select {
	case got := <-done:
		if got != 2 {
			t.Fatalf("delivered %d, want 2", got)
		}
	case <-time.After(time.Minute):
		t.Fatal("the run did not end once the slow receiver answered")
	}
}

// An attempt ends at Timeout however long the receiver takes: it failed,
// and is retried after the backoff. (The receiver never answers: the
// outcome does not depend on the machine's speed.)
func TestAttemptTimeout(t *testing.T) {
	clk := &clock{t: day0}
	rcv := newReceiver(t, "s", clk)
	rcv.holdRequests(t)
	cat := testCatalog(catalog.Webhook{ID: "w1", Name: "w1", URL: rcv.URL, Secret: "s", Thresholds: []float64{80}})
	n, ob := newNotifier(t, t.TempDir(), clk, cat, func(c *Config) { c.Timeout = 300 * time.Millisecond })
	n.Quota(context.Background(), []Usage{usageAt(80)})
	if got := runOnce(t, n); got != 0 {
		t.Fatalf("delivered %d to a receiver that never answers", got)
	}
	ds, err := ob.List(context.Background(), Filter{State: -1})
	if err != nil || len(ds) != 1 || ds[0].State != "pending" || ds[0].Attempts != 1 || !ds[0].NextAttempt.Equal(day0.Add(time.Second)) {
		t.Fatalf("deliveries %+v, %v; want one pending, retried in 1s", ds, err)
	}
}

// A receiver that fails holds back its webhook's other notifications
// (one attempt finds it failing, not one per notification), while the
// other webhook's go; those it held past MaxAge are given up without
// more attempts.
func TestFailingReceiverHeldBack(t *testing.T) {
	clk := &clock{t: day0}
	dead := newReceiver(t, "s", clk)
	dead.set(http.StatusServiceUnavailable)
	ok := newReceiver(t, "s", clk)
	n, ob := newNotifier(t, t.TempDir(), clk, testCatalog(hook("dead", dead.URL, "s"), hook("ok", ok.URL, "s")),
		func(c *Config) { c.Concurrency = 1 })
	var us []Usage
	for i := range 20 {
		u := usageAt(100)
		u.KeyID = fmt.Sprintf("k%02d", i)
		us = append(us, u)
	}
	ctx := context.Background()
	if err := n.Quota(ctx, us); err != nil {
		t.Fatal(err)
	}
	if st := n.Stats(); st.Noticed != 80 {
		t.Fatalf("noticed %d, want 80 (20 keys, 2 thresholds, 2 webhooks)", st.Noticed)
	}
	runOnce(t, n)
	runOnce(t, n) // the same instant: the dead receiver is held back
	if got := len(ok.received()); got != 40 {
		t.Fatalf("the working receiver got %d, want 40", got)
	}
	if st := n.Stats(); st.Attempts != 41 || st.Failures != 1 {
		t.Fatalf("stats %+v: want 41 attempts, one of them to the failing receiver", st)
	}
	clk.Add(25 * time.Hour)
	runOnce(t, n) // one attempt, past MaxAge: given up, and the webhook held
	runOnce(t, n) // the others, given up without an attempt
	if st := n.Stats(); st.Attempts != 42 || st.GivenUp != 40 || st.Pending != 0 {
		t.Fatalf("stats %+v: want 42 attempts, 40 given up, none pending", st)
	}
	if ds, err := ob.List(ctx, Filter{State: Failed, Limit: 500}); err != nil || len(ds) != 40 {
		t.Fatalf("failed deliveries %d, %v; want 40", len(ds), err)
	}
}

// Deliveries noticed together share their created time: paging goes by
// created time and id, and lists each once.
func TestListPages(t *testing.T) {
	clk := &clock{t: day0}
	n, ob := newNotifier(t, t.TempDir(), clk, testCatalog(hook("w1", "http://127.0.0.1:9/", "s")), nil)
	var us []Usage
	for i := range 5 {
		u := usageAt(100)
		u.KeyID = fmt.Sprintf("k%d", i)
		us = append(us, u)
	}
	if err := n.Quota(context.Background(), us); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	f := Filter{State: -1, Limit: 3}
	for page := 0; ; page++ {
		ds, err := ob.List(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if seen[d.ID] {
				t.Fatalf("page %d lists %s again", page, d.ID)
			}
			seen[d.ID] = true
		}
		if len(ds) < f.Limit {
			break
		}
		f.Before, f.BeforeID = ds[len(ds)-1].Created, ds[len(ds)-1].ID
	}
	if len(seen) != 10 {
		t.Fatalf("listed %d deliveries, want 10", len(seen))
	}
}

// The sender killed mid-retry and started again on the same data folder
// delivers what was pending, with its id; a crossing noticed again after
// the restart is not a second notification. A receiver that accepted an
// attempt whose answer the sender never saw (killed between the send and
// the record of the delivery) gets it again, with the same id: the only
// duplicates.
func TestKilledMidRetry(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: day0}
	rcv := newReceiver(t, "s", clk)
	cat := testCatalog(catalog.Webhook{ID: "w1", Name: "w1", URL: rcv.URL, Secret: "s", Thresholds: []float64{80}})
	n1, ob1 := newNotifier(t, dir, clk, cat, nil)
	ctx := context.Background()
	n1.Quota(ctx, []Usage{usageAt(80)})
	rcv.set(http.StatusBadGateway)
	runOnce(t, n1) // fails: the receiver is down; retried in 1s
	clk.Add(time.Second)
	rcv.set(0)
	release := rcv.holdRequests(t)
	killed, kill := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { n1.RunOnce(killed); close(done) }()
	wait(t, rcv.arrived, "request at the receiver") // the failed attempt's
	wait(t, rcv.arrived, "second attempt at the receiver")
	kill() // the sender dies before it sees the answer
	<-done
	release()
	wait(t, rcv.accepted, "the receiver accepting the notification whose answer was lost")
	ob1.Close()

	n2, ob2 := newNotifier(t, dir, clk, cat, nil)
	if st := n2.Stats(); st.Pending != 1 {
		t.Fatalf("after the restart: %+v, want 1 pending", st)
	}
	if ds, _ := ob2.List(ctx, Filter{State: -1}); len(ds) != 1 || ds[0].Attempts != 1 {
		t.Fatalf("after the restart: %+v, want one notification with the failed attempt recorded", ds)
	}
	n2.Quota(ctx, []Usage{usageAt(81)}) // the same crossing, seen again
	if st := n2.Stats(); st.Noticed != 0 {
		t.Fatalf("the crossing was noticed again after the restart: %+v", st)
	}
	if got := runOnce(t, n2); got != 1 {
		t.Fatalf("delivered %d after the restart, want 1", got)
	}
	ids := rcv.ids()
	if len(ids) != 1 {
		t.Fatalf("received ids %v, want one id", ids)
	}
	for _, c := range ids {
		if c != 2 {
			t.Fatalf("received ids %v, want the one id twice (the lost answer, then after the restart)", ids)
		}
	}
}

// Throttling is one notification per key, plan and hour; a key disabled
// one per change.
func TestThrottledAndDisabled(t *testing.T) {
	clk := &clock{t: day0}
	rcv := newReceiver(t, "s", clk)
	cat := testCatalog(hook("w1", rcv.URL, "s"))
	n, _ := newNotifier(t, t.TempDir(), clk, cat, nil)
	ctx := context.Background()
	ev := func(d schemas.Decision, at time.Time) schemas.UsageEvent {
		return schemas.UsageEvent{Time: at.UnixNano(), KeyID: "k1", PlanID: "p1", Decision: d, Status: 429}
	}
	n.Events(ctx, []schemas.UsageEvent{ev(schemas.DecisionAllowed, day0), ev(schemas.DecisionThrottled, day0), ev(schemas.DecisionThrottled, day0.Add(time.Minute))})
	n.Events(ctx, []schemas.UsageEvent{ev(schemas.DecisionThrottled, day0.Add(2*time.Minute))})
	n.Events(ctx, []schemas.UsageEvent{ev(schemas.DecisionThrottled, day0.Add(time.Hour))})
	old := cat()
	tx := old.Begin()
	k := *old.Key("k1")
	k.Enabled, k.LastUpdatedDate = false, day0.Unix()
	tx.PutKey(k)
	n.CatalogChanged(ctx, &catalog.Change{Old: old, New: tx.State, Delta: tx.Delta()})
	runOnce(t, n)
	var throttled, disabled int
	for _, nt := range rcv.received() {
		switch nt.Event {
		case catalog.EventKeyThrottled:
			throttled++
		case catalog.EventKeyDisabled:
			disabled++
		}
	}
	if throttled != 2 || disabled != 1 {
		t.Fatalf("throttled %d (want 2: two hours), disabled %d (want 1)", throttled, disabled)
	}
}

// In serve, the written events say which keys to look at: an admitted
// request, or one refused for the quota (the crossing of the request
// that used the last of it was not written: the node stopped between
// the two), is looked up in the gateway's counters.
func TestWrittenLooksAtKeysAtTheirLimit(t *testing.T) {
	clk := &clock{t: day0}
	n, _ := newNotifier(t, t.TempDir(), clk, testCatalog(hook("w1", "http://127.0.0.1:9/", "s")), func(c *Config) {
		c.Usage = func(planID, keyID string) (Usage, bool) { return usageAt(100), planID == "p1" && keyID == "k1" }
	})
	ev := schemas.UsageEvent{Time: day0.UnixNano(), KeyID: "k1", PlanID: "p1", Decision: schemas.DecisionForbidden}
	if err := n.Written(context.Background(), []schemas.UsageEvent{ev}); err != nil {
		t.Fatal(err)
	}
	if st := n.Stats(); st.Noticed != 0 {
		t.Fatalf("a forbidden request noticed %d", st.Noticed)
	}
	ev.Decision = schemas.DecisionQuotaExceeded
	if err := n.Written(context.Background(), []schemas.UsageEvent{ev}); err != nil {
		t.Fatal(err)
	}
	if st := n.Stats(); st.Noticed != 2 {
		t.Fatalf("a request refused for the quota noticed %d, want 2 (80%% and 100%%)", st.Noticed)
	}
}

func TestGuard(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		guard Guard
		url   string
		ok    bool
	}{
		{"metadata", Guard{AllowPrivate: true}, "http://169.254.169.254/latest/meta-data", false},
		{"link-local v6", Guard{AllowPrivate: true}, "http://[fe80::1]/", false},
		{"metadata through NAT64", Guard{AllowPrivate: true}, "http://[64:ff9b::a9fe:a9fe]/", false},
		{"loopback through NAT64", Guard{}, "http://[64:ff9b::7f00:1]/", false},
		{"private through 6to4", Guard{}, "http://[2002:0a00:0001::1]/", false},
		{"public through NAT64", Guard{}, "http://[64:ff9b::5db8:d70e]/", true},
		{"loopback refused", Guard{}, "http://127.0.0.1:9/", false},
		{"private refused", Guard{}, "https://10.1.2.3/", false},
		{"loopback allowed", Guard{AllowPrivate: true}, "http://127.0.0.1:9/", true},
		{"public", Guard{}, "https://93.184.215.14/", true},
		{"not http", Guard{}, "gopher://93.184.215.14/", false},
		{"unresolvable", Guard{}, "https://no-such-host.invalid/", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if msg := tc.guard.CheckURL(ctx, tc.url); (msg == "") != tc.ok {
				t.Fatalf("CheckURL(%s) = %q, want ok=%v", tc.url, msg, tc.ok)
			}
		})
	}
	// The dialler refuses too: a URL that passed no check cannot reach
	// a refused address.
	rcv := newReceiver(t, "s", &clock{t: day0})
	c := Guard{}.Client(time.Second)
	if _, err := c.Post(rcv.URL, "application/json", nil); !errors.Is(err, ErrRefusedAddress) {
		t.Fatalf("post to loopback without AllowPrivate: %v, want ErrRefusedAddress", err)
	}
}
