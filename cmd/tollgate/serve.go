package main

import (
	"github.com/spf13/cobra"
)

func newServeCmd() *cobra.Command {
	o := options{gateway: true, admin: true}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the whole pipeline in one process: gateway, metering, admin API",
		Long: `Run the gateway, the usage metering and the admin API in one process,
on embedded storage under --data-dir (catalog.db and usage.db).

--config applies a declarative file to the catalog at start; an invalid
file stops the start and changes nothing.

Unless GOGC is set in the environment, serve lets about 256 MB of
garbage build up between collections: GOGC=400 with a small catalog
(the proxy allocates per request, and fewer collections buy throughput,
see BENCHMARKS.md), less as the catalog grows, so that a million keys
do not cost four times their memory.`,
		Args: cobra.NoArgs,
		RunE: runE(&o),
	}
	f := cmd.Flags()
	o.addCommonFlags(f, "127.0.0.1:8081")
	o.addConfigFlag(f)
	o.addGatewayFlags(f)
	f.StringVar(&o.demoUpstream, "demo-upstream", "", "also run the built-in demo upstream on this address (e.g. 127.0.0.1:9080)")
	f.BoolVar(&o.recreateMissing, "recreate-missing", false, "start on a data folder whose catalog.db or usage.db is missing, making it anew (serve refuses such a folder otherwise, and says what is lost)")
	o.kafka.addFlags(f, "; with it, serve runs every role of a fleet in one process on Kafka (catalog, events, quota states), the usage store staying embedded")
	return cmd
}
