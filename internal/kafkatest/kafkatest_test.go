package kafkatest

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/internal/poll"
)

func TestProxyCarriesEveryConnectionAndFails(t *testing.T) {
	cluster, px, brokers := StartBehindProxy(t)
	if err := cluster.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: time.Second}
	md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range md.Brokers {
		if addr := net.JoinHostPort(b.Host, strconv.Itoa(b.Port)); addr != brokers[0] {
			t.Fatalf("broker advertises %s, want the proxy %s", addr, brokers[0])
		}
	}
	produce := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		res, err := c.Produce(ctx, &kafka.ProduceRequest{Topic: "t", RequiredAcks: kafka.RequireAll,
			Records: kafka.NewRecordReader(kafka.Record{Value: kafka.NewBytes([]byte("v"))})})
		if err == nil {
			err = res.Error
		}
		return err
	}
	if err := produce(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	px.Blackhole(t)
	if err := produce(300 * time.Millisecond); err == nil {
		t.Fatal("produced through a blackholed proxy")
	}
	px.Restore(t)
	poll.UntilOK(t, 10*time.Second, 10*time.Millisecond, "a produce succeeds once the network is restored", func() error { return produce(time.Second) })
}
