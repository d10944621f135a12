package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

// BenchmarkConfigLogStart: a node's first start on a config log of n
// keys (each in one of four plans), through an in-process Kafka, until
// its catalog is published; then its snapshot, and its cold start from
// that snapshot. The million-key run takes a few minutes and GBs:
//
//	go test -run '^$' -bench 'ConfigLogStart/keys=1M' -benchtime 1x ./ingest/
//
// Metrics: first-start-s (open, fetch and apply the log, publish),
// snapshot-write-s, snapshot-MB, cold-start-s (open with the snapshot:
// read, index, publish). The in-process broker shares the process (its
// copy of the log is garbage the collector scans): a node fetching from
// a real cluster does a little better.
func BenchmarkConfigLogStart(b *testing.B) {
	for _, size := range []struct {
		name string
		keys int
	}{{"keys=10k", 10_000}, {"keys=1M", 1_000_000}} {
		b.Run(size.name, func(b *testing.B) {
			k, _ := migrated(b, "bench.")
			writeBenchCatalog(b, k, size.keys)
			runtime.GC()
			b.ResetTimer()
			for range b.N {
				snap := filepath.Join(b.TempDir(), "catalog-snapshot")
				start := time.Now()
				var published *catalog.Change
				l, err := OpenConfigLog(ConfigLogConfig{Kafka: k, Snapshot: snap, Publish: func(ch *catalog.Change) error {
					published = ch
					return nil
				}})
				if err != nil {
					b.Fatal(err)
				}
				n := startConfigNode(b, l)
				select {
				case <-l.Loaded():
				case <-time.After(10 * time.Minute):
					b.Fatal("not loaded after 10 minutes")
				}
				b.ReportMetric(time.Since(start).Seconds(), "first-start-s")
				if published == nil || published.New.NumKeys() != size.keys || !published.Full {
					b.Fatalf("published %+v", published)
				}
				start = time.Now()
				n.stop() // writes the snapshot
				b.ReportMetric(time.Since(start).Seconds(), "snapshot-write-s")
				fi, err := os.Stat(snap)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(fi.Size())/1e6, "snapshot-MB")
				published = nil
				runtime.GC()
				start = time.Now()
				if _, err := OpenConfigLog(ConfigLogConfig{Kafka: k, Snapshot: snap, Publish: func(ch *catalog.Change) error {
					published = ch
					return nil
				}}); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(time.Since(start).Seconds(), "cold-start-s")
				if published == nil || published.New.NumKeys() != size.keys {
					b.Fatalf("cold start published %+v", published)
				}
			}
		})
	}
}

// writeBenchCatalog writes a catalog of n keys to the config topic, as
// the admin API writes one: an API, four plans, keys and memberships.
func writeBenchCatalog(b *testing.B, k Kafka, n int) {
	b.Helper()
	l, err := OpenConfigLog(ConfigLogConfig{Kafka: k})
	if err != nil {
		b.Fatal(err)
	}
	var recs []kafka.Record
	add := func(kind, id string, e any) {
		ent, err := json.Marshal(e)
		if err != nil {
			b.Fatal(err)
		}
		r := schemas.ConfigRecord{Kind: kind, ID: id, Entity: ent}
		v, err := schemas.EncodeConfigRecord(&r)
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, kafka.Record{Key: kafka.NewBytes([]byte(r.Key())), Value: kafka.NewBytes(v)})
	}
	flush := func() {
		if _, err := l.produce(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
		recs = recs[:0]
	}
	api := catalog.API{ID: "api0000001", Name: "shop", Stages: []catalog.Stage{{Name: "prod", Upstream: "http://shop.internal"}},
		Resources: []catalog.Resource{{Path: "/items", Methods: map[string]catalog.Method{"GET": {APIKeyRequired: true}}}}}
	add(schemas.KindAPI, api.ID, api)
	plans := []string{"free000001", "basic00001", "premium001", "enterpris1"}
	for _, id := range plans {
		add(schemas.KindUsagePlan, id, catalog.UsagePlan{ID: id, Name: id, Throttle: &catalog.Throttle{RateLimit: 10, BurstLimit: 20},
			APIStages: []catalog.APIStage{{APIID: api.ID, Stage: "prod"}}, CreatedDate: 1_700_000_000})
	}
	for i := range n {
		id := fmt.Sprintf("k%09d", i)
		value := fmt.Sprintf("value-%034d", i)
		key := catalog.APIKey{ID: id, Name: fmt.Sprintf("customer-key-%07d", i), Enabled: true, ValueHash: catalog.HashKey(value),
			ValuePrefix: value[:4], CreatedDate: 1_700_000_000 + int64(i)}
		add(schemas.KindAPIKey, id, key)
		p := plans[i%len(plans)]
		add(schemas.KindUsagePlanKey, p+"/"+id, map[string]string{"usagePlanId": p, "keyId": id})
		if len(recs) >= 20_000 {
			flush()
		}
	}
	flush()
}
