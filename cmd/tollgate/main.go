// Command tollgate is the API gateway with usage plans and API keys, one
// binary for every role and for its clients:
//
//	serve           the gateway, the metering and the admin API in one process,
//	                on embedded storage (with --kafka: on a fleet's topics)
//	enforcer        one gateway of a fleet on Kafka
//	reportapi       the admin and report API of a fleet
//	aggregator      the fleet's usage into ClickHouse, and its quota authority
//	migrate         kafka: create and check the topics; clickhouse: the schema
//	keys, plans     the catalog, through the admin API
//	apply           a configuration file, through the admin API
//	usage           GetUsage from a serve data folder; its subcommands
//	                (get, export, top, billing, update) through the admin API
//	audit           the catalog's change log in a data folder
//	loadgen         history: synthetic usage onto the events topic
//	demo-upstream   the upstream that echoes requests, for trying it out
//
// This package only wires the other packages together: one options type
// whose flags are each declared once (options.go; each also from
// TOLLGATE_<FLAG>), the data folder (its lock, its consistency check),
// the admin credentials, the collector's setting, and one assembly of a
// process for every role (run.go: openEmbedded for serve, openFleet for a
// node of a fleet, then the same listeners and the same shutdown). What
// each role runs, and how a request and a usage event pass through them,
// is in the repository's ARCHITECTURE.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal starts a graceful stop, a second one
		// ends the process at once.
		<-ctx.Done()
		stop()
	}()
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tollgate:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "tollgate",
		Short:         "API gateway with usage plans and API keys, metered",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Every flag of every command may come from TOLLGATE_<FLAG>.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return flagsFromEnv(cmd, os.LookupEnv)
		},
	}
	usage := newUsageCmd()
	addUsageSubcommands(usage)
	root.AddCommand(newServeCmd(), usage, newAuditCmd(), newKeysCmd(), newPlansCmd(), newWebhooksCmd(), newApplyCmd(), newMigrateCmd(), newEnforcerCmd(), newReportAPICmd(), newAggregatorCmd(), newDemoUpstreamCmd(), newLoadgenCmd())
	return root
}
