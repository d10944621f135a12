// Command tollgate is the API gateway with usage plans and API keys: the
// gateway itself (serve) and the client commands that read what it keeps.
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
	root.AddCommand(newServeCmd(), usage, newAuditCmd(), newKeysCmd(), newPlansCmd(), newApplyCmd(), newMigrateCmd(), newEnforcerCmd(), newReportAPICmd(), newAggregatorCmd(), newDemoUpstreamCmd(), newLoadgenCmd())
	return root
}
