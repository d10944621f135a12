package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tollgate/tollgate/internal/benchkit"
	"github.com/tollgate/tollgate/internal/history"
	"github.com/tollgate/tollgate/schemas"
)

// Names of tollgate's defaults: --topic-prefix and the aggregator's --group.
const (
	eventsTopic     = "tollgate.events"
	deadLetterTopic = "tollgate.events-dead-letter"
	aggregatorGroup = "tollgate-aggregator"
)

// broker is the Kafka-protocol broker of the run (kfake, in this
// process), with tollgate's topics.
type broker struct {
	cluster *kfake.Cluster
	addr    string
}

// startBroker starts kfake, makes the topics with `tollgate migrate
// kafka`, and bounds the events topic to retentionBytes per partition (0:
// unbounded). kfake applies retention every 5 s.
func startBroker(ctx context.Context, tollgate string, partitions int, retentionBytes int64) (*broker, error) {
	cluster, addr, err := benchkit.StartBroker(ctx, tollgate, partitions, kfake.BrokerConfigs(map[string]string{
		// How often kfake compacts and applies retention (default 1 h).
		"log.cleaner.backoff.ms": "5000",
	}))
	if err != nil {
		return nil, err
	}
	b := &broker{cluster: cluster, addr: addr}
	if retentionBytes > 0 {
		if err := b.setRetention(ctx, eventsTopic, retentionBytes); err != nil {
			cluster.Close()
			return nil, err
		}
	}
	return b, nil
}

// setRetention sets the topic's retention.bytes, through the protocol as
// kafka-configs.sh would (kfake has no call for it), and checks it took.
// The topic's own setting, not the broker's log.retention.bytes: that one
// would bound the compacted config topic as well, which must keep every
// key.
func (b *broker) setRetention(ctx context.Context, topic string, bytes int64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeTopic
	res.ResourceName = topic
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Op, c.Value = "retention.bytes", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr(strconv.FormatInt(bytes, 10))
	res.Configs = append(res.Configs, c)
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("set %s's retention.bytes: %w", topic, err)
	}
	for _, r := range resp.Resources {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			return fmt.Errorf("set %s's retention.bytes: %w", topic, err)
		}
	}
	info := b.cluster.TopicInfo(topic)
	if info == nil || info.Configs["retention.bytes"] == nil || *info.Configs["retention.bytes"] != strconv.FormatInt(bytes, 10) {
		return fmt.Errorf("set %s's retention.bytes: the broker does not show it", topic)
	}
	return nil
}

func (b *broker) close() { b.cluster.Close() }

// partitions is the state of every partition of the events topic.
func (b *broker) partitions() []*kfake.PartitionInfo { return b.cluster.PartitionInfos(eventsTopic) }

// ends returns the end offset (high watermark) of each partition.
func (b *broker) ends() map[int]int64 {
	out := map[int]int64{}
	for _, p := range b.partitions() {
		out[int(p.Partition)] = p.HighWatermark
	}
	return out
}

// committed returns the aggregators' committed offset of each partition
// that has one.
func (b *broker) committed() map[int]int64 {
	out := map[int]int64{}
	g := b.cluster.GroupInfo(aggregatorGroup)
	if g == nil {
		return out
	}
	for p, c := range g.Commits[eventsTopic] {
		out[int(p)] = c.Offset
	}
	return out
}

// deadLetters is how many records the dead-letter topic holds.
func (b *broker) deadLetters() int64 {
	var n int64
	for _, p := range b.cluster.PartitionInfos(deadLetterTopic) {
		n += p.HighWatermark
	}
	return n
}

// retentionFor sizes the events topic's retention.bytes: days days of
// the history's records in its fullest partition. The partition of each
// key is the producer's (murmur2 of the key id, as ingest.EventProducer
// and Java clients partition); a record's size is its value (the event's
// protobuf), key and the record's framing, averaged over the history's
// first events; a tenth and 1 MiB more cover batch headers and the
// spread of sizes.
func retentionFor(h history.Config, partitions int, days float64) (int64, error) {
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	var bal kafka.Murmur2Balancer
	perPart := make([]float64, partitions)
	perKeyDay := h.Rate * 24
	for k := range h.Keys {
		perPart[bal.Balance(kafka.Message{Key: []byte(history.KeyID(k))}, ids...)] += perKeyDay
	}
	var sample, bytes int
	errEnough := errors.New("enough")
	sampler := h
	sampler.Days = 1
	err := sampler.Generate(4096, func(events []schemas.UsageEvent) error {
		var buf []byte
		for i := range events {
			buf = schemas.AppendUsageEvent(buf[:0], &events[i])
			bytes += len(buf) + len(events[i].KeyID) + recordFraming
			sample++
		}
		if sample >= 20000 {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return 0, err
	}
	if sample == 0 {
		return 0, errors.New("size the retention: the history has no events")
	}
	fullest := 0.0
	for _, n := range perPart {
		fullest = max(fullest, n)
	}
	perRecord := float64(bytes) / float64(sample)
	return int64(math.Ceil(days*fullest*perRecord*1.1)) + 1<<20, nil
}

// recordFraming is a record's bytes in a batch besides its key and value:
// length, attributes, timestamp and offset deltas, key and value
// lengths, header count (varints).
const recordFraming = 16

// caughtUp reports whether the aggregators' group has committed every
// partition of the events topic up to its end: the cheap sign that the
// aggregator has stored everything, which Watermarks then confirms.
func (b *broker) caughtUp() bool {
	ends, comm := b.ends(), b.committed()
	for p, end := range ends {
		if end > 0 && comm[p] < end {
			return false
		}
	}
	return true
}

// lag is the records written but not yet committed by the aggregators.
func (b *broker) lag() int64 {
	ends, comm := b.ends(), b.committed()
	var n int64
	for p, end := range ends {
		n += end - max(comm[p], 0)
	}
	return n
}

// held is the bytes the events topic holds, in all and in its fullest
// partition, and how many records retention has deleted.
func (b *broker) held() (all, fullest, trimmed int64) {
	for _, p := range b.partitions() {
		all += p.NumBytes
		fullest = max(fullest, p.NumBytes)
		trimmed += p.LogStartOffset
	}
	return all, fullest, trimmed
}
