package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/notify"
)

const notifyYAML = `
apis:
  - id: abc123api
    stages: [{name: prod, upstream: "{{UPSTREAM}}"}]
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}}
usagePlans:
  - name: Metered
    throttle: {rateLimit: 1000, burstLimit: 1000}
    quota: {limit: 10, period: DAY}
    apiStages: [{apiId: abc123api, stage: prod}]
apiKeys:
  - {name: acme, value: acmeacmeacmeacme0001, enabled: true, usagePlans: [Metered]}
`

// hookReceiver is a webhook receiver that verifies signatures the
// documented way and keeps what it accepted.
type hookReceiver struct {
	secret string
	now    time.Time // the node's frozen clock signs with it

	mu       sync.Mutex
	got      []notify.Notification
	rejected int
	accepted chan struct{}
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err := notify.Verify(h.secret, r.Header.Get(notify.SignatureHeader), body, h.now, 5*time.Minute); err != nil {
		h.mu.Lock()
		h.rejected++
		h.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var n notify.Notification
	if err := json.Unmarshal(body, &n); err != nil || n.ID != r.Header.Get(notify.IDHeader) {
		http.Error(w, "bad notification", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.got = append(h.got, n)
	h.mu.Unlock()
	h.accepted <- struct{}{}
}

func (h *hookReceiver) received() []notify.Notification {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]notify.Notification(nil), h.got...)
}

// A key crossing 80% then 100% of its quota through tollgate serve: a
// real receiver on loopback (allowed by --webhook-allow-private) gets one
// signed notification per threshold, and requests refused past the quota
// send nothing more.
func TestServeQuotaNotifications(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer up.Close()
	now := frozen
	rcv := &hookReceiver{secret: "whsec-test", now: now, accepted: make(chan struct{}, 100)}
	hooks := httptest.NewServer(rcv)
	defer hooks.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tollgate.yaml")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(notifyYAML, "{{UPSTREAM}}", up.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	o := testServeOptions(data, cfg, &now)
	o.flushEvery = 10 * time.Millisecond // events written, and looked at, soon after their request
	o.webhookAllowPrivate = true
	n := startWith(t, o)
	creds := adminCreds(t, data)
	admin := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+n.addrs.admin+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+creds.Token)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		out, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(out)
	}
	// Created with the CLI, the secret from a file; bad input is refused
	// naming the field.
	secret := filepath.Join(dir, "secret.txt")
	os.WriteFile(secret, []byte("whsec-test\n"), 0o600)
	cli := func(args ...string) (string, error) {
		return runCLI(append(args, "--endpoint", "http://"+n.addrs.admin, "--data-dir", data)...)
	}
	if _, err := cli("webhooks", "create", "--name", "bad", "--url", hooks.URL, "--secret-file", secret, "--thresholds", "80,120"); err == nil ||
		!strings.Contains(err.Error(), "thresholds") {
		t.Fatalf("a threshold of 120: %v, want an error naming thresholds", err)
	}
	if out, err := cli("webhooks", "create", "--name", "billing", "--url", hooks.URL+"/q", "--secret-file", secret); err != nil {
		t.Fatalf("create webhook: %v\n%s", err, out)
	}
	gw := "http://" + n.addrs.gateway + "/prod/items"
	waitNotification := func(what string) {
		t.Helper()
		select {
		case <-rcv.accepted:
		case <-time.After(time.Minute): // a bound on a broken test, not a wait
			t.Fatalf("no notification for %s", what)
		}
	}
	for range 8 {
		if code, body := get(t, gw, "acmeacmeacmeacme0001"); code != 200 {
			t.Fatalf("request under the quota: %d %s", code, body)
		}
	}
	waitNotification("80%")
	for range 2 {
		get(t, gw, "acmeacmeacmeacme0001")
	}
	waitNotification("100%")
	for range 3 {
		if code, _ := get(t, gw, "acmeacmeacmeacme0001"); code != 429 {
			t.Fatalf("past the quota: %d, want 429", code)
		}
	}
	// The receiver accepted both before its answers reached the sender:
	// wait for the sender to record them (else a stop in between leaves
	// one pending, sent again after a restart with its id).
	for deadline := time.Now().Add(time.Minute); ; {
		var page struct{ Items []notify.Delivery }
		code, body := admin("GET", "/v1/webhooks/deliveries?state=delivered", "")
		if code != 200 || json.Unmarshal([]byte(body), &page) != nil {
			t.Fatalf("deliveries: %d %s", code, body)
		}
		if len(page.Items) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries recorded: %s, want 2", body)
		}
		time.Sleep(10 * time.Millisecond) // a network answer: no clock to move
	}
	n.stop(t) // the last events written and looked at; the outbox closed

	got := rcv.received()
	if len(got) != 2 || got[0].Threshold != 80 || got[1].Threshold != 100 || got[0].ID == got[1].ID {
		t.Fatalf("received %+v, want 80%% then 100%%, once each", got)
	}
	for i, want := range []int64{8, 10} {
		nt := got[i]
		if nt.Used != want || nt.Limit != 10 || nt.Event != "quota.threshold" || nt.Period.Kind != "DAY" ||
			!nt.Period.Start.Equal(frozen.Truncate(24*time.Hour)) || nt.KeyName != "acme" {
			t.Errorf("notification %d: %+v", i, nt)
		}
	}
	rcv.mu.Lock()
	if rcv.rejected != 0 {
		t.Errorf("%d requests with a bad signature", rcv.rejected)
	}
	rcv.mu.Unlock()
	// The outbox holds those two, delivered, and nothing else.
	ob, err := notify.OpenOutbox(filepath.Join(data, notifyFile))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	ds, err := ob.List(t.Context(), notify.Filter{State: -1})
	if err != nil || len(ds) != 2 || ds[0].State != "delivered" || ds[1].State != "delivered" {
		t.Fatalf("outbox %+v, %v; want two delivered", ds, err)
	}
}
