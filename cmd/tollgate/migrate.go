package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/usage/chstore"
)

func newMigrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or check what a fleet needs in its shared services",
	}
	cmd.AddCommand(newMigrateKafkaCmd(), newMigrateClickHouseCmd())
	return cmd
}

func newMigrateClickHouseCmd() *cobra.Command {
	var dsn string
	cmd := &cobra.Command{
		Use:   "clickhouse",
		Short: "Apply the ClickHouse schema migrations the binary carries",
		Long: `Apply, in order, the versioned schema migrations embedded in this binary
(usage events; minute, hour and day rollups; quota adjustments) that the
database does not record yet in tollgate_migrations. Running it again
applies nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dsn == "" {
				return fmt.Errorf("--clickhouse is required (or %s), e.g. clickhouse://127.0.0.1:9000/default", envName("clickhouse"))
			}
			st, err := chstore.Open(cmd.Context(), dsn)
			if err != nil {
				return err
			}
			defer st.Close()
			applied, err := st.Migrate(cmd.Context())
			for _, m := range applied {
				fmt.Fprintf(cmd.OutOrStdout(), "applied %s\n", m)
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "clickhouse schema is up to date")
			return nil
		},
	}
	cmd.Flags().StringVar(&dsn, "clickhouse", "", "ClickHouse DSN, native protocol (clickhouse://HOST:9000/DATABASE)")
	return cmd
}

func newMigrateKafkaCmd() *cobra.Command {
	var k kafkaOptions
	cmd := &cobra.Command{
		Use:   "kafka",
		Short: "Create missing topics and check existing ones",
		Long: `Create the topics a fleet uses (events, events-dead-letter, config, signals, lost-usage under
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
