package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/internal/history"
	"github.com/tollgate/tollgate/schemas"
)

func newLoadgenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "loadgen",
		Short: "Generate synthetic usage (to size a deployment or benchmark reports)",
	}
	cmd.AddCommand(newLoadgenHistoryCmd())
	return cmd
}

func newLoadgenHistoryCmd() *cobra.Command {
	var (
		k         kafkaOptions
		c         history.Config
		startDay  string
		batch     int
		configOut string
	)
	cmd := &cobra.Command{
		Use:   "history --kafka HOST:PORT --keys N --days D --rate R",
		Short: "Write days of synthetic usage events onto the events topic",
		Long: `Write the usage events that --keys keys, each making --rate requests an
hour, would have sent over --days days from --start, onto the events topic
in the wire format enforcers use (one record per event, keyed by the key
id), in time order. The aggregator (or an embedded loader) then stores them
as it stores live traffic; reports read them like any other usage.

Events name the keys hist-0000000, hist-0000001, ... in one plan and one
API; --config-out writes those as a configuration file (apply it with
'tollgate apply -f' or 'tollgate reportapi --config') so that reports can
filter by key or plan. The same flags make the same events, ids included:
a second run writes copies, which the aggregator drops by id only within
its window of recent ids, so load a history once.

Example: a month of 10,000 keys at one request a minute (446M events):
  tollgate loadgen history --kafka 127.0.0.1:9092 --keys 10000 --days 31 --rate 60 --start 2026-10-01`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			day, err := time.Parse("2006-01-02", startDay)
			if err != nil {
				return fmt.Errorf("--start: %q is not a date such as 2026-10-01", startDay)
			}
			c.Start = day
			if err := c.Check(); err != nil {
				return fmt.Errorf("--%w", err)
			}
			if configOut != "" {
				f, err := os.Create(configOut)
				if err != nil {
					return fmt.Errorf("--config-out: %w", err)
				}
				if err := c.WriteCatalog(f); err != nil {
					f.Close()
					return fmt.Errorf("--config-out: %w", err)
				}
				if err := f.Close(); err != nil {
					return fmt.Errorf("--config-out: %w", err)
				}
			}
			if !k.enabled() {
				if configOut != "" {
					return nil // the configuration file alone
				}
				return fmt.Errorf("--kafka is required (or %s)", envName("kafka"))
			}
			kc, err := k.config()
			if err != nil {
				return err
			}
			p, err := ingest.NewEventProducer(kc)
			if err != nil {
				return err
			}
			defer p.Close()
			total := c.Total()
			began, last := time.Now(), time.Now()
			var written int64
			out := cmd.ErrOrStderr()
			fmt.Fprintf(out, "writing %d events (%d keys, %d days from %s, %g requests per key per hour)\n", total, c.Keys, c.Days, startDay, c.Rate)
			err = c.Generate(batch, func(events []schemas.UsageEvent) error {
				failed, err := p.Produce(cmd.Context(), events)
				written += int64(len(events) - len(failed))
				if err != nil {
					return fmt.Errorf("after %d of %d events: %w", written, total, err)
				}
				if time.Since(last) >= 5*time.Second {
					last = time.Now()
					fmt.Fprintf(out, "%d of %d events (%.0f%%), %.0f events/s\n", written, total, 100*float64(written)/float64(total), float64(written)/time.Since(began).Seconds())
				}
				return nil
			})
			if err != nil {
				return err
			}
			d := time.Since(began)
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d events in %s (%.0f events/s)\n", written, d.Round(time.Millisecond), float64(written)/d.Seconds())
			return nil
		},
	}
	k.addFlags(cmd.Flags(), "")
	f := cmd.Flags()
	f.IntVar(&c.Keys, "keys", 1000, "number of API keys")
	f.IntVar(&c.Days, "days", 1, "days of history")
	f.Float64Var(&c.Rate, "rate", 60, "requests per key per hour, on average")
	f.StringVar(&startDay, "start", time.Now().UTC().AddDate(0, 0, -1).Format("2006-01-02"), "first day of the history (UTC), YYYY-MM-DD")
	f.Uint64Var(&c.Seed, "seed", 1, "seed of the generator: the same flags make the same events")
	f.StringVar(&c.API, "api", "", "API id the events name (default hist-api)")
	f.StringVar(&c.Plan, "plan", "", "usage plan id the events name (default hist-plan)")
	f.IntVar(&batch, "batch", 16384, "events per produce call")
	f.StringVar(&configOut, "config-out", "", "also write a configuration file with the history's API, plan and keys")
	return cmd
}
