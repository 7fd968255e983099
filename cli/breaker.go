package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/jobs"
)

func (m *Main) breakerCommand(rf *rootFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "breaker list [--json]",
		Short: "Show the circuit breakers: state, failures and next probe",
		Example: `  agentq breaker list
  agentq breaker list --json | jq '.[] | select(.state == "open")'`,
		Long: `Circuit breakers are kept per dependency: the host of an http.call's URL, or a
name a handler gives with breaker.Do. A breaker opens after breakers.failures
consecutive failures, or when at least breakers.min_calls calls in
breakers.rate_window failed at breakers.failure_rate or more (per dependency:
breakers.overrides.<name>). While open, its calls are snoozed: rescheduled
without spending an attempt or the error budget. After breakers.cooldown one
probe goes through; its result closes or re-opens the breaker.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List every breaker that recorded a failure, with its state and next probe",
		Example: `  agentq breaker list
  agentq breaker list --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := m.openRedis(cmd, rf, false)
			if err != nil {
				return err
			}
			defer rt.Close()
			sts, err := rt.Breakers().List(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]breakerJSON, len(sts))
				for i, st := range sts {
					out[i] = toBreakerJSON(st)
				}
				return writeJSON(m.Stdout, out)
			}
			if len(sts) == 0 {
				fmt.Fprintln(m.Stdout, "no breaker has recorded a failure")
				return nil
			}
			tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tCONSECUTIVE\tFAILURE RATE\tCALLS\tOPENED AT\tNEXT PROBE")
			for _, st := range sts {
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s%% (min %d calls)\t%d in %s\t%s\t%s\n",
					st.Name, st.State, st.ConsecutiveFailures, st.Settings.Failures,
					num(100*st.FailureRate), st.Settings.MinCalls, st.Calls, jobs.FormatDuration(st.Settings.RateWindow),
					timeOrDash(st.OpenedAt), timeOrDash(st.NextProbe))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list)
	return cmd
}

// breakerJSON is a breaker as `agentq breaker list --json` prints it.
type breakerJSON struct {
	Name                string  `json:"name"`
	State               string  `json:"state"`
	ConsecutiveFailures int64   `json:"consecutive_failures"`
	Calls               int64   `json:"calls"`
	Failures            int64   `json:"failures"`
	FailureRate         float64 `json:"failure_rate"`
	OpenedAt            string  `json:"opened_at,omitempty"`
	NextProbe           string  `json:"next_probe,omitempty"`
	Threshold           int     `json:"threshold_failures"`
	ThresholdRate       float64 `json:"threshold_failure_rate"`
	RateWindow          string  `json:"rate_window"`
	MinCalls            int     `json:"min_calls"`
	Cooldown            string  `json:"cooldown"`
}

func toBreakerJSON(st breaker.Status) breakerJSON {
	j := breakerJSON{
		Name: st.Name, State: string(st.State), ConsecutiveFailures: st.ConsecutiveFailures,
		Calls: st.Calls, Failures: st.Failures, FailureRate: round3(st.FailureRate),
		Threshold: st.Settings.Failures, ThresholdRate: st.Settings.FailureRate, RateWindow: jobs.FormatDuration(st.Settings.RateWindow),
		MinCalls: st.Settings.MinCalls, Cooldown: jobs.FormatDuration(st.Settings.Cooldown),
	}
	if !st.OpenedAt.IsZero() {
		j.OpenedAt = st.OpenedAt.UTC().Format(time.RFC3339Nano)
	}
	if !st.NextProbe.IsZero() {
		j.NextProbe = st.NextProbe.UTC().Format(time.RFC3339Nano)
	}
	return j
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
