package ingest

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/kafkatest"
)

func TestMigrateCreatesAndChecksTopics(t *testing.T) {
	cluster, brokers := kafkatest.Start(t)
	k := Kafka{Brokers: brokers, Prefix: "t1.", Partitions: 4}
	ctx := context.Background()
	rep, err := Migrate(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"t1.events", "t1.config", "t1.signals", "t1.lost-usage", "t1.events-dead-letter"}
	if !slices.Equal(rep.Created, want) {
		t.Fatalf("created %v, want %v", rep.Created, want)
	}
	for name, parts := range map[string]int{"t1.events": 4, "t1.config": 1, "t1.signals": 4} {
		if got := len(cluster.PartitionInfos(name)); got != parts {
			t.Errorf("%s: %d partitions, want %d", name, got, parts)
		}
	}
	if p := cluster.TopicInfo("t1.config").Configs["cleanup.policy"]; p == nil || *p != "compact" {
		t.Errorf("config topic cleanup.policy = %v, want compact", p)
	}
	// Again: nothing to do, nothing wrong.
	rep, err = Migrate(ctx, k)
	if err != nil || len(rep.Created) != 0 || len(rep.Notes) != 0 {
		t.Fatalf("second migrate: %+v, %v", rep, err)
	}
	// More partitions configured than the events topic has: a note, not an error.
	k.Partitions = 8
	if rep, err = Migrate(ctx, k); err != nil || len(rep.Notes) != 2 {
		t.Fatalf("partitions changed: %+v, %v", rep, err)
	}
}

func TestMigrateRefusesWrongTopics(t *testing.T) {
	cluster, brokers := kafkatest.Start(t)
	// A compacted topic created by hand as delete, a config topic with
	// three partitions.
	if err := cluster.CreateTopic("t2.signals", 12, map[string]string{"cleanup.policy": "delete"}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.CreateTopic("t2.config", 3, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	_, err := Migrate(context.Background(), Kafka{Brokers: brokers, Prefix: "t2."})
	if err == nil {
		t.Fatal("migrate accepted a deleting signals topic and a 3-partition config topic")
	}
	for _, want := range []string{
		"topic t2.signals has cleanup.policy=delete but must be compacted",
		"--entity-name t2.signals --add-config cleanup.policy=compact",
		"topic t2.config has 3 partitions, must have exactly 1",
		"topic t2.config has min.compaction.lag.ms=0, must be at least 3600000",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestKafkaValidate(t *testing.T) {
	err := (&Kafka{Brokers: []string{"localhost"}, Partitions: -1}).Validate()
	if err == nil || !strings.Contains(err.Error(), `"localhost" has no port`) || !strings.Contains(err.Error(), "must not be negative") {
		t.Fatalf("err = %v", err)
	}
	if err := (&Kafka{}).Validate(); err == nil || !strings.Contains(err.Error(), "at least one broker") {
		t.Fatalf("err = %v", err)
	}
}
