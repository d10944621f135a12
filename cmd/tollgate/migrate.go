package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/ingest"
)

func newMigrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or check what a fleet needs in its shared services",
	}
	cmd.AddCommand(newMigrateKafkaCmd())
	return cmd
}

func newMigrateKafkaCmd() *cobra.Command {
	var k kafkaOptions
	cmd := &cobra.Command{
		Use:   "kafka",
		Short: "Create missing topics and check existing ones",
		Long: `Create the topics a fleet uses (events, config, signals, lost-usage under
--topic-prefix) with their partitions and cleanup policies, and check the
ones that exist. A compacted topic created with another cleanup policy, or
a config topic with more than one partition, is an error that names the
command that fixes it; fewer partitions than --partitions is a note
(adding partitions moves keys between them, so it is left to you).
Running it again changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !k.enabled() {
				return fmt.Errorf("--kafka is required (or %s)", envName("kafka"))
			}
			cfg, err := k.config()
			if err != nil {
				return err
			}
			rep, err := ingest.Migrate(cmd.Context(), cfg)
			if rep != nil {
				out := cmd.OutOrStdout()
				for _, t := range rep.Created {
					fmt.Fprintf(out, "created topic %s\n", t)
				}
				for _, n := range rep.Notes {
					fmt.Fprintf(out, "note: %s\n", n)
				}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kafka topics under %q are ready\n", cfg.Prefix)
			return nil
		},
	}
	k.addFlags(cmd.Flags(), "")
	return cmd
}
