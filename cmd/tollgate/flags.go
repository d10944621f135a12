package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/ingest"
)

// envName is the environment variable that sets a flag: TOLLGATE_ and
// the flag's name in upper case, dashes as underscores (--topic-prefix:
// TOLLGATE_TOPIC_PREFIX).
func envName(flag string) string {
	return "TOLLGATE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// flagsFromEnv sets every flag of cmd that the command line left unset
// from its environment variable, if that is set. A flag on the command
// line wins over the environment, the environment over the default (the
// usual order, and what a container image wants: flags in the image,
// site values in the environment).
func flagsFromEnv(cmd *cobra.Command, lookup func(string) (string, bool)) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		v, ok := lookup(envName(f.Name))
		if !ok {
			return
		}
		if err := cmd.Flags().Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q (for --%s): %w", envName(f.Name), v, f.Name, err))
		}
	})
	return errors.Join(errs...)
}

// kafkaOptions are the flags every role of a fleet shares: where the
// cluster is and how its topics are named.
type kafkaOptions struct {
	brokers     []string
	prefix      string
	partitions  int
	replication int
	timeout     time.Duration
}

func (k *kafkaOptions) addFlags(f *pflag.FlagSet, what string) {
	f.StringSliceVar(&k.brokers, "kafka", nil, "Kafka bootstrap brokers, host:port[,host:port...]"+what)
	f.StringVar(&k.prefix, "topic-prefix", "tollgate.", "prefix of tollgate's topic names (events, config, signals, lost-usage); the same on every node of a fleet")
	f.IntVar(&k.partitions, "partitions", 12, "partitions of the events and signals topics `migrate kafka` creates")
	f.IntVar(&k.replication, "replication-factor", 0, "replication factor of the topics `migrate kafka` creates (0: the broker's default)")
	f.DurationVar(&k.timeout, "kafka-timeout", 10*time.Second, "bound on each request to Kafka")
}

func (k *kafkaOptions) enabled() bool { return len(k.brokers) > 0 }

func (k *kafkaOptions) config() (ingest.Kafka, error) {
	c := ingest.Kafka{Brokers: k.brokers, Prefix: k.prefix, Partitions: k.partitions, ReplicationFactor: k.replication, Timeout: k.timeout}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("--kafka: %w", err)
	}
	if k.prefix == "" {
		return c, errors.New("--topic-prefix must not be empty")
	}
	return c, nil
}
