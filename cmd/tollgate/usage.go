package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/catalog/catalogdb"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

func newUsageCmd() *cobra.Command {
	var dataDir, plan, key, from, to, output string
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Print a key's daily usage under a plan, as AWS GetUsage reports it",
		Long: `Print, for each UTC day from --from to --to, the requests a key used under a
plan and the quota remaining in that day's period: [used, remaining], the
shape of AWS's get-usage, for at most 90 days at once (AWS's GetUsage
bound). Reads the data folder of a running or stopped tollgate serve.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// GetUsage's bound: at most 90 days (usage.MaxGetUsageDays).
			fromDay, toDay, err := usage.ParseRange("--from", from, "--to", to)
			if err != nil {
				return err
			}
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: use text or json", output)
			}
			if !hasFile(dataDir, catalogFile) {
				return fmt.Errorf("%s: no %s here (is it the data folder of tollgate serve, started at least once by this version?)", dataDir, catalogFile)
			}
			db, err := catalogdb.Open(filepath.Join(dataDir, catalogFile))
			if err != nil {
				return err
			}
			cat, err := db.Load(cmd.Context())
			db.Close()
			if err != nil {
				return err
			}
			p := cat.PlanByNameOrID(plan)
			if p == nil {
				return fmt.Errorf("--plan %q: no usage plan with that name or id in %s", plan, dataDir)
			}
			k := cat.KeyByNameOrID(key)
			if k == nil {
				return fmt.Errorf("--key %q: no API key with that name or id in %s", key, dataDir)
			}
			store, err := sqlitestore.Open(filepath.Join(dataDir, "usage.db"))
			if err != nil {
				return fmt.Errorf("open usage store: %w", err)
			}
			defer store.Close()
			rows, err := store.Daily(cmd.Context(), usage.Filter{FromDay: usage.PeriodStartDay(p, fromDay), ToDay: toDay, PlanID: p.ID, KeyID: k.ID})
			if err != nil {
				return err
			}
			res := usage.GetUsage{UsagePlanID: p.ID, StartDate: from, EndDate: to,
				Values: map[string][][2]int64{k.ID: usage.Values(p, k.ID, fromDay, toDay, rows)}}
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			fmt.Fprintf(out, "usage plan %q (%s), API key %q (%s)\n", p.Name, p.ID, k.Name, k.ID)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DATE\tUSED\tREMAINING")
			for i, v := range res.Values[k.ID] {
				fmt.Fprintf(tw, "%s\t%d\t%d\n", usage.FormatDay(fromDay+int64(i)), v[0], v[1])
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "./tollgate-data", "data folder of tollgate serve")
	f.StringVar(&plan, "plan", "", "usage plan name or id (required)")
	f.StringVar(&key, "key", "", "API key name or id (required)")
	f.StringVar(&from, "from", "", "first day, YYYY-MM-DD (UTC, required)")
	f.StringVar(&to, "to", "", "last day, YYYY-MM-DD (UTC, required; at most 90 days from --from)")
	f.StringVarP(&output, "output", "o", "text", "text or json (the AWS GetUsage shape)")
	for _, n := range []string{"plan", "key", "from", "to"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}
