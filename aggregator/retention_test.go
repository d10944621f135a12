package aggregator

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// Retention deletes records a running worker has not read yet (the
// aggregator fell behind by more than the topic keeps): the worker counts
// them as expired, says so, and goes on from the partition's first
// record, where it used to ask for the deleted offset forever.
func TestRetentionOvertakesARunningWorker(t *testing.T) {
	r := newRigN(t, 1)
	rng := rand.New(rand.NewPCG(5, 6))
	r.produce(2000, 0, rng)
	inserting := make(chan struct{})
	release := make(chan struct{})
	first := true
	a := r.start(Config{FlushEvents: 500, hooks: hooks{beforeInsert: func(int) bool {
		if first {
			first = false
			close(inserting)
			<-release
		}
		return false
	}}})
	defer a.stop(t)
	select {
	case <-inserting:
	case <-time.After(30 * time.Second):
		t.Fatal("no insert within 30s")
	}
	// The worker holds its first batch of 500. More records arrive; then
	// retention keeps only the newest bytes of the partition.
	r.produce(2000, 0, rng)
	c := &kafka.Client{Addr: kafka.TCP(r.k.Brokers...), Timeout: 5 * time.Second}
	res, err := c.AlterConfigs(context.Background(), &kafka.AlterConfigsRequest{Resources: []kafka.AlterConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: r.k.Topics().Events,
		Configs: []kafka.AlterConfigRequestConfig{{Name: "retention.bytes", Value: "20000"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Errors {
		if e != nil {
			t.Fatal(e)
		}
	}
	r.cluster.ApplyRetention()
	f := r.k.Fetcher()
	firstKept, end, err := f.Offsets(context.Background(), r.k.Topics().Events, 0)
	if err != nil {
		t.Fatal(err)
	}
	if firstKept <= 2000 {
		t.Fatalf("retention kept offsets %d-%d; the test wants records the worker has not fetched deleted", firstKept, end)
	}
	close(release)
	r.produce(100, 0, rng) // after the gap: the worker must get to them
	r.drained(60 * time.Second)
	st := a.a.Stats()
	if st.Expired == 0 || st.Stored+st.Expired != uint64(len(r.sent)) {
		t.Errorf("stored %d and expired %d of %d records", st.Stored, st.Expired, len(r.sent))
	}
}
