package main

import (
	"github.com/spf13/cobra"
)

func newEnforcerCmd() *cobra.Command {
	o := options{gateway: true}
	cmd := &cobra.Command{
		Use:   "enforcer",
		Short: "Run one gateway of a fleet: catalog from Kafka, usage events to Kafka",
		Long: `Run the gateway as one enforcer of a fleet. It serves from the catalog it
materialises from the config topic (and keeps a snapshot of it, and of the
last quota states, in --data-dir, so that it starts and serves while Kafka
is unreachable), applies the quota states the aggregator signals, and
hands one usage event per request to the events topic (requests refused
before a key was identified: one event per group and minute, with a count).

Emitting an event never blocks a request: events wait in a bounded queue;
while Kafka is unreachable or slow they go to a spill log in --data-dir
(capped by --spill-max-bytes) and are replayed in order once it is back.
On SIGTERM the servers finish their requests, then the queue and the spill
log are handed to Kafka for up to --drain-timeout; what is left stays on
disk for the next start.

Unless GOGC is set in the environment, the collector keeps about 256 MB of
garbage between collections, as serve does (see serve --help).

Every flag can also be set from the environment: TOLLGATE_ and the flag's
name in capitals, dashes as underscores (TOLLGATE_KAFKA, TOLLGATE_LISTEN).`,
		Args: cobra.NoArgs,
		RunE: runE(&o),
	}
	f := cmd.Flags()
	o.kafka.addFlags(f, " (required)")
	o.addCommonFlags(f, "")
	o.addGatewayFlags(f)
	return cmd
}

func newReportAPICmd() *cobra.Command {
	o := options{admin: true}
	cmd := &cobra.Command{
		Use:   "reportapi",
		Short: "Run the admin and report API of a fleet on the Kafka catalog",
		Long: `Run the admin API (the AWS API Gateway subset the aws CLI speaks) and the
report API on the fleet's catalog: a change is written to the config topic
and answered once this node's own view of the topic has applied it, so
that what you write you read back; every enforcer applies it from the
same topic in the same order, and so reaches the same verdict on
conflicts.

--config applies a declarative file to the fleet's catalog at start (this
is how APIs and stages reach the fleet); the same file applied again by
this node is skipped, so restarts keep what the admin API changed since.
GET /healthz answers 200 once the catalog is loaded.

Usage reports read ClickHouse (--clickhouse), where tollgate aggregator
keeps usage; without it, an embedded store in --data-dir that this
process fills from the events topic.

Every flag can also be set from the environment: TOLLGATE_ and the flag's
name in capitals, dashes as underscores.`,
		Args: cobra.NoArgs,
		RunE: runE(&o),
	}
	f := cmd.Flags()
	o.kafka.addFlags(f, " (required)")
	o.addCommonFlags(f, "127.0.0.1:8081")
	o.addConfigFlag(f)
	f.StringVar(&o.clickhouse, "clickhouse", "", "ClickHouse DSN (clickhouse://HOST:9000/DATABASE) where the aggregators keep usage; reports read it. \"\": an embedded store fed from the events topic")
	return cmd
}
