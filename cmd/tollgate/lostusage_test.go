package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/poll"
)

// Usage an enforcer drops reaches the report API: an enforcer with a
// tiny spill cap serves through a broker outage, drops events at the
// cap and reports them on the lost-usage topic once the broker is back;
// the aggregator stores them in ClickHouse, and /v1/usage/lost on a
// report API with --clickhouse shows exactly what the topic holds.
func TestFleetLostUsageIsReported(t *testing.T) {
	if testing.Short() {
		t.Skip("a 4s outage")
	}
	dsn := migratedClickHouse(t)
	f := newFleet(t)
	ao := f.options(false, true)
	ao.config, ao.clickhouse = f.config, dsn
	admin := f.start(ao)
	startAggregator(t, f, dsn)
	eo := f.options(true, false)
	eo.spillMax = 64 << 10 // a few hundred events
	e := f.start(eo)
	const key = "widgetwidgetwidget0001"
	e.waitStatus(t, key, 200, 10*time.Second)

	l := &load{statusN: map[int]int{}}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { l.run([]*fleetNode{e}, key, 6, stop); close(done) }()
	f.proxy.Blackhole(t)
	time.Sleep(4 * time.Second) // wall time: the spill log must fill
	f.proxy.Restore(t)
	close(stop)
	<-done
	e.stop(t) // hands the spill log and the lost counts to Kafka

	k, _ := f.kafka.config()
	var topic int64
	for _, n := range lostUsage(t, k) {
		topic += n
	}
	if topic == 0 {
		t.Fatalf("no lost usage reported after %d requests with a %d-byte spill cap", l.served, eo.spillMax)
	}
	day := time.Now().UTC().Truncate(24 * time.Hour)
	url := fmt.Sprintf("http://%s/v1/usage/lost?from=%s&to=%s", admin.addrs.admin,
		day.Add(-24*time.Hour).Format(time.RFC3339), day.Add(48*time.Hour).Format(time.RFC3339))
	var got struct {
		Requests int64
		Rows     []struct {
			KeyID    string `json:"key_id"`
			Node     string `json:"node"`
			Reason   string `json:"reason"`
			Requests int64  `json:"requests"`
		}
	}
	poll.UntilOK(t, 30*time.Second, 50*time.Millisecond, "/v1/usage/lost shows what the topic holds", func() error {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+adminCreds(t, admin.data).Token)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer r.Body.Close()
		if r.StatusCode != 200 {
			return fmt.Errorf("/v1/usage/lost: %d", r.StatusCode)
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			return err
		}
		if got.Requests != topic {
			return fmt.Errorf("/v1/usage/lost reports %d requests lost, the topic %d", got.Requests, topic)
		}
		return nil
	})
	t.Logf("served %d requests; %d reported lost, rows %+v", l.served, topic, got.Rows)
	for _, row := range got.Rows {
		if row.Node != e.nodeName() || row.KeyID == "" || row.Reason != "spill-full" {
			t.Errorf("row %+v: want spill-full losses of the key, by enforcer %s only", row, e.nodeName())
		}
	}
}
