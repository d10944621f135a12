package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Kafka says where the cluster is and how tollgate's topics are named and
// shaped. Every role of a fleet must use the same values.
type Kafka struct {
	// Brokers are bootstrap addresses, host:port. Required.
	Brokers []string
	// Prefix starts every topic name. Default "tollgate.".
	Prefix string
	// Partitions of the events and signals topics. Default 12. Events
	// are keyed by API key id, so a key's events stay in one partition.
	Partitions int
	// ReplicationFactor of new topics. Default 0: the broker's
	// default.replication.factor.
	ReplicationFactor int
	// Timeout bounds each request to the cluster. Default 10s.
	Timeout time.Duration
}

// Validate reports every problem with the configuration.
func (k *Kafka) Validate() error {
	var errs []error
	if len(k.Brokers) == 0 {
		errs = append(errs, errors.New("kafka: at least one broker address (host:port) is required"))
	}
	for _, b := range k.Brokers {
		if _, port, ok := strings.Cut(b, ":"); !ok || port == "" {
			errs = append(errs, fmt.Errorf("kafka: broker address %q has no port (want host:port)", b))
		}
	}
	if k.Partitions < 0 || k.ReplicationFactor < 0 || k.Timeout < 0 {
		errs = append(errs, errors.New("kafka: partitions, replication factor and timeout must not be negative"))
	}
	return errors.Join(errs...)
}

func (k Kafka) withDefaults() Kafka {
	if k.Prefix == "" {
		k.Prefix = "tollgate."
	}
	if k.Partitions == 0 {
		k.Partitions = 12
	}
	if k.Timeout == 0 {
		k.Timeout = 10 * time.Second
	}
	return k
}

// Topics are the names of tollgate's topics.
type Topics struct {
	// Events: one usage event per request (or per group and minute of
	// requests rejected before a key was identified), keyed by API key id.
	Events string
	// Config: the catalog as a compacted log, one record per entity.
	Config string
	// Signals: compacted, the latest quota state per plan and key.
	Signals string
	// LostUsage: counts of events an enforcer had to drop, for
	// reconciliation.
	LostUsage string
	// DeadLetter: records of the events topic the aggregator could not
	// take (undecodable, absurd values), as they were, for inspection.
	DeadLetter string
}

// Topics returns the topic names under the configured prefix.
func (k Kafka) Topics() Topics {
	p := k.withDefaults().Prefix
	return Topics{Events: p + "events", Config: p + "config", Signals: p + "signals", LostUsage: p + "lost-usage",
		DeadLetter: p + "events-dead-letter"}
}

func (k Kafka) client() *kafka.Client {
	k = k.withDefaults()
	return &kafka.Client{Addr: kafka.TCP(k.Brokers...), Timeout: k.Timeout, Transport: newFreshTransport(k.Timeout)}
}

// freshTransport is a kafka.Transport that is replaced by a new one after
// a request fails in transit. kafka-go's Transport refreshes its metadata
// on a connection of its own; when a network drops packets instead of
// refusing connections, that refresh can be left waiting after the
// network came back, and every request waits on it (seen with a
// blackholed broker: producers stuck for minutes after it returned). A
// new Transport starts from fresh connections. Errors the broker answers
// with are inside responses and keep the Transport.
type freshTransport struct {
	dialTimeout time.Duration
	mu          sync.Mutex
	tr          *kafka.Transport
}

var _ kafka.RoundTripper = (*freshTransport)(nil)

func newFreshTransport(dialTimeout time.Duration) *freshTransport {
	f := &freshTransport{dialTimeout: dialTimeout}
	f.tr = f.build()
	return f
}

func (f *freshTransport) build() *kafka.Transport {
	return &kafka.Transport{DialTimeout: f.dialTimeout}
}

func (f *freshTransport) current() *kafka.Transport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tr
}

// RoundTrip sends req on the current Transport.
func (f *freshTransport) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	tr := f.current()
	res, err := tr.RoundTrip(ctx, addr, req)
	if err != nil && ctx.Err() == nil || errors.Is(err, context.DeadlineExceeded) {
		f.mu.Lock()
		if f.tr == tr { // the first of concurrent failures replaces it
			f.tr = f.build()
			defer tr.CloseIdleConnections()
		}
		f.mu.Unlock()
	}
	return res, err
}

// close closes the idle connections of the current Transport.
func (f *freshTransport) close() { f.current().CloseIdleConnections() }

// Retention settings of the compacted topics, in milliseconds.
const (
	// Records younger than this are never compacted: the writer of a
	// config record that lost a conflict deletes or restores its entity
	// well within it, so compaction never reorders a loser in front of
	// the record that beat it (see catalog.View).
	minCompactionLagMs = 60 * 60 * 1000
	// Tombstones are kept this long: a node that was away longer
	// replays the config topic from the start (see ConfigLog).
	tombstoneRetentionMs = 7 * 24 * 60 * 60 * 1000
)

// TombstoneRetention is how long deletes stay on the config topic.
const TombstoneRetention = tombstoneRetentionMs * time.Millisecond

type topicSpec struct {
	name       string
	partitions int
	// exact: the partition count is part of the design (the config log
	// has one partition: one order for every node).
	exact   bool
	compact bool
	configs map[string]string
}

func (k Kafka) specs() []topicSpec {
	k = k.withDefaults()
	t := k.Topics()
	compacted := map[string]string{
		"cleanup.policy":        "compact",
		"min.compaction.lag.ms": strconv.Itoa(minCompactionLagMs),
		"delete.retention.ms":   strconv.Itoa(tombstoneRetentionMs),
	}
	return []topicSpec{
		{name: t.Events, partitions: k.Partitions, configs: map[string]string{"cleanup.policy": "delete"}},
		{name: t.Config, partitions: 1, exact: true, compact: true, configs: compacted},
		{name: t.Signals, partitions: k.Partitions, compact: true, configs: compacted},
		{name: t.LostUsage, partitions: 1, configs: map[string]string{"cleanup.policy": "delete"}},
		{name: t.DeadLetter, partitions: 1, configs: map[string]string{"cleanup.policy": "delete"}},
	}
}

// MigrateReport says what Migrate did and found.
type MigrateReport struct {
	Created []string
	// Notes are differences that are allowed (an events topic with
	// other partitions than configured).
	Notes []string
}

// Migrate creates the topics that are missing, with their partitions and
// cleanup policies, and checks the ones that exist: a topic that must be
// compacted but deletes, or a config topic with more than one partition,
// is an error naming the fix. Running it again changes nothing.
func Migrate(ctx context.Context, k Kafka) (*MigrateReport, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	k = k.withDefaults()
	c := k.client()
	specs := k.specs()
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.name
	}
	meta, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return nil, fmt.Errorf("migrate kafka: read metadata from %s: %w", strings.Join(k.Brokers, ","), err)
	}
	existing := map[string]int{}
	for _, t := range meta.Topics {
		if t.Error == nil {
			existing[t.Name] = len(t.Partitions)
		}
	}
	rep := &MigrateReport{}
	var create []kafka.TopicConfig
	for _, s := range specs {
		if _, ok := existing[s.name]; ok {
			continue
		}
		tc := kafka.TopicConfig{Topic: s.name, NumPartitions: s.partitions, ReplicationFactor: k.ReplicationFactor}
		if tc.ReplicationFactor == 0 {
			tc.ReplicationFactor = -1
		}
		for name, v := range s.configs {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: name, ConfigValue: v})
		}
		create = append(create, tc)
	}
	if len(create) > 0 {
		res, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: create})
		if err != nil {
			return nil, fmt.Errorf("migrate kafka: create topics: %w", err)
		}
		for _, tc := range create {
			switch err := res.Errors[tc.Topic]; {
			case err == nil:
				rep.Created = append(rep.Created, tc.Topic)
				existing[tc.Topic] = tc.NumPartitions
			case errors.Is(err, kafka.TopicAlreadyExists):
				// Another migrate got there first; checked below.
			default:
				return rep, fmt.Errorf("migrate kafka: create topic %s: %w", tc.Topic, err)
			}
		}
	}
	var problems []error
	for _, s := range specs {
		n, ok := existing[s.name]
		switch {
		case !ok:
			// Created concurrently by someone else: read it again.
			m, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{s.name}})
			if err != nil || len(m.Topics) != 1 || m.Topics[0].Error != nil {
				problems = append(problems, fmt.Errorf("topic %s: not found after creating it", s.name))
				continue
			}
			n = len(m.Topics[0].Partitions)
		}
		if n != s.partitions {
			if s.exact {
				problems = append(problems, fmt.Errorf("topic %s has %d partitions, must have exactly %d (every node must read one order); delete it and run migrate again", s.name, n, s.partitions))
			} else {
				rep.Notes = append(rep.Notes, fmt.Sprintf("topic %s has %d partitions (configured: %d); kept as it is", s.name, n, s.partitions))
			}
		}
	}
	res, err := c.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: describeResources(specs)})
	if err != nil {
		return rep, fmt.Errorf("migrate kafka: describe topic configs: %w", err)
	}
	for _, r := range res.Resources {
		if r.Error != nil {
			problems = append(problems, fmt.Errorf("topic %s: describe configs: %w", r.ResourceName, r.Error))
			continue
		}
		// Kafka's defaults, where the topic does not set them.
		policy, lag, retention := "delete", int64(0), int64(24*60*60*1000)
		for _, e := range r.ConfigEntries {
			switch e.ConfigName {
			case "cleanup.policy":
				policy = e.ConfigValue
			case "min.compaction.lag.ms":
				lag, _ = strconv.ParseInt(e.ConfigValue, 10, 64)
			case "delete.retention.ms":
				retention, _ = strconv.ParseInt(e.ConfigValue, 10, 64)
			}
		}
		for _, s := range specs {
			if s.name != r.ResourceName {
				continue
			}
			fix := fmt.Sprintf("kafka-configs.sh --bootstrap-server %s --alter --entity-type topics --entity-name %s --add-config cleanup.policy=compact,min.compaction.lag.ms=%d,delete.retention.ms=%d",
				k.Brokers[0], s.name, minCompactionLagMs, tombstoneRetentionMs)
			switch {
			case s.compact && !strings.Contains(policy, "compact"):
				problems = append(problems, fmt.Errorf("topic %s has cleanup.policy=%s but must be compacted (it holds the latest state per key); fix: %s", s.name, policy, fix))
			case s.compact && lag < minCompactionLagMs:
				problems = append(problems, fmt.Errorf("topic %s has min.compaction.lag.ms=%d, must be at least %d (writers repair rejected records before compaction may reorder them); fix: %s", s.name, lag, minCompactionLagMs, fix))
			case s.compact && retention < tombstoneRetentionMs:
				problems = append(problems, fmt.Errorf("topic %s has delete.retention.ms=%d, must be at least %d (a node away for less than that must still see deletes); fix: %s", s.name, retention, tombstoneRetentionMs, fix))
			}
			if !s.compact && strings.Contains(policy, "compact") {
				problems = append(problems, fmt.Errorf("topic %s has cleanup.policy=%s but must delete by age (compaction would keep one event per key); fix: kafka-configs.sh --bootstrap-server %s --alter --entity-type topics --entity-name %s --add-config cleanup.policy=delete",
					s.name, policy, k.Brokers[0], s.name))
			}
		}
	}
	return rep, errors.Join(problems...)
}

func describeResources(specs []topicSpec) []kafka.DescribeConfigRequestResource {
	out := make([]kafka.DescribeConfigRequestResource, len(specs))
	for i, s := range specs {
		out[i] = kafka.DescribeConfigRequestResource{ResourceType: kafka.ResourceTypeTopic, ResourceName: s.name,
			ConfigNames: []string{"cleanup.policy", "min.compaction.lag.ms", "delete.retention.ms"}}
	}
	return out
}
