// Package kafkatest starts an in-process Kafka-protocol broker (franz-go's
// kfake) for tests; clients reach it over TCP on loopback exactly as they
// would reach a cluster.
package kafkatest

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Start runs a one-broker cluster for the test on a free loopback port and
// returns it with its addresses; it stops when the test ends.
func Start(t testing.TB, opts ...kfake.Opt) (*kfake.Cluster, []string) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}
