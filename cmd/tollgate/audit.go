package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/catalog"
)

func newAuditCmd() *cobra.Command {
	var dataDir, output string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Print the log of catalog changes: who changed what, when, before and after",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: use text or json", output)
			}
			entries, err := catalog.AuditLogAt(filepath.Join(dataDir, auditFile)).Read()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				for _, e := range entries {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tCHANGE\tKIND\tID\tNAME\tKEY")
			for _, e := range entries {
				change := "updated"
				switch {
				case e.Old == nil:
					change = "created"
				case e.New == nil:
					change = "deleted"
				}
				key := ""
				if e.KeyPrefix != "" {
					key = e.KeyPrefix + "…"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), e.Actor, e.Action, change, e.Kind, e.ID, e.Name, key)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "./tollgate-data", "data folder of tollgate serve")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text, or json (one entry per line, with old and new values)")
	return cmd
}
