package benchkit

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// StartBroker starts a Kafka-protocol broker in this process (franz-go's
// kfake, one broker, with opts) and makes tollgate's topics on it with
// `tollgate migrate kafka --partitions partitions`, tollgate being the
// binary at that path. It returns the broker and its address for
// --kafka; the caller closes the broker, after the processes using it
// have stopped.
func StartBroker(ctx context.Context, tollgate string, partitions int, opts ...kfake.Opt) (*kfake.Cluster, string, error) {
	cluster, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		return nil, "", fmt.Errorf("start the Kafka broker: %w", err)
	}
	addr := strings.Join(cluster.ListenAddrs(), ",")
	if _, err := Run(ctx, tollgate, "migrate", "kafka", "--kafka", addr, "--partitions", strconv.Itoa(partitions)); err != nil {
		cluster.Close()
		return nil, "", err
	}
	return cluster, addr, nil
}

// Run runs the binary at path with args to its end and returns its
// output (stdout and stderr). An error names the binary and its
// subcommand ("tollgate migrate kafka") and holds the output.
func Run(ctx context.Context, path string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		name := []string{filepath.Base(path)}
		for _, a := range args {
			if strings.HasPrefix(a, "-") {
				break
			}
			name = append(name, a)
		}
		return out, fmt.Errorf("%s: %w: %s", strings.Join(name, " "), err, out)
	}
	return out, nil
}
