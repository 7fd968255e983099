package cli

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/budget"
	"github.com/agentq/agentq/jobs"
)

func (m *Main) budgetCommand(rf *rootFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "budget [WORKFLOW] [--json] | budget resume WORKFLOW | budget reset WORKFLOW",
		Short: "Show workflows' error budgets; resume or reset one",
		Example: `  agentq budget
  agentq budget research --json
  agentq budget resume research
  agentq budget reset research`,
		Long: `Show each workflow's error budget (workflows.<name>.budget in the config file):
its slo and window, the attempts and failures in the window, the failures the
budget allows and how many remain, the burn rate over the long window (the
budget's window) and the short one (a twelfth of it), and the state: ok,
exhausted, or paused (the workflow's queue is paused in asynq).

A budget is exhausted when the window holds at least min_events attempts and
more failures than (1 - slo) of them. on_exhausted then decides: alert logs it,
pause pauses the workflow's queue until the budget recovers, reject refuses new
enqueues. Snoozes (e.g. an open circuit breaker) are not counted.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("budget takes at most one workflow name; got %d: %s", len(args), shortQuote(strings.Join(args, " ")))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := m.openBudgets(cmd, rf, args)
			if err != nil {
				return err
			}
			defer s.close()
			sts, err := s.b.Statuses(cmd.Context(), args...)
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]budgetJSON, len(sts))
				for i, st := range sts {
					out[i] = toBudgetJSON(st)
				}
				if len(args) == 1 {
					return writeJSON(m.Stdout, out[0])
				}
				return writeJSON(m.Stdout, out)
			}
			if len(sts) == 0 {
				fmt.Fprintln(m.Stdout, "no workflow has an error budget (set workflows.<name>.budget.slo in the config file)")
				return nil
			}
			return writeBudgets(m.Stdout, sts)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var resumeJSON, resetJSON bool
	resume := &cobra.Command{
		Use:     "resume WORKFLOW [--json]",
		Short:   "Resume a workflow's queue paused by its budget; it is not paused again until new failures arrive",
		Example: `  agentq budget resume research`,
		Args:    oneArg("a workflow name", "budget"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := m.openBudgets(cmd, rf, args)
			if err != nil {
				return err
			}
			defer s.close()
			wasPaused, st, err := s.b.Resume(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if resumeJSON {
				return writeJSON(m.Stdout, map[string]any{"workflow": st.Workflow, "queue": st.Queue, "resumed": wasPaused, "budget": toBudgetJSON(st)})
			}
			if wasPaused {
				fmt.Fprintf(m.Stdout, "resumed queue %q of workflow %q.\n", st.Queue, st.Workflow)
			} else {
				fmt.Fprintf(m.Stdout, "queue %q of workflow %q was not paused; nothing to resume.\n", st.Queue, st.Workflow)
			}
			if st.Exhausted {
				fmt.Fprintf(m.Stdout, "Its budget is still exhausted (%s); the budget will not pause the queue again until new failures arrive.\n", budgetSummary(st))
			} else {
				fmt.Fprintf(m.Stdout, "Its budget is ok (%s).\n", budgetSummary(st))
			}
			return nil
		},
	}
	resume.Flags().BoolVar(&resumeJSON, "json", false, `print {"workflow", "queue", "resumed", "budget"}`)
	reset := &cobra.Command{
		Use:     "reset WORKFLOW [--json]",
		Short:   "Clear a workflow's error budget counts, and resume its queue if the budget paused it",
		Example: `  agentq budget reset research`,
		Args:    oneArg("a workflow name", "budget"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := m.openBudgets(cmd, rf, args)
			if err != nil {
				return err
			}
			defer s.close()
			before, resumed, err := s.b.Reset(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if resetJSON {
				return writeJSON(m.Stdout, map[string]any{"workflow": before.Workflow, "queue": before.Queue,
					"cleared_attempts": before.Events, "cleared_failures": before.Failures, "was": before.State, "resumed": resumed})
			}
			fmt.Fprintf(m.Stdout, "reset the error budget of workflow %q: cleared %d attempts and %d failures (it was %s).\n",
				before.Workflow, before.Events, before.Failures, before.State)
			if resumed {
				fmt.Fprintf(m.Stdout, "resumed queue %q, which the budget had paused.\n", before.Queue)
			}
			return nil
		},
	}
	reset.Flags().BoolVar(&resetJSON, "json", false, `print {"workflow", "queue", "cleared_attempts", "cleared_failures", "was", "resumed"}`)
	cmd.AddCommand(resume, reset)
	return cmd
}

// budgetSession is one budget command's connection and budgets.
type budgetSession struct {
	rt *agentq.Runtime
	b  *budget.Budgets
}

func (s *budgetSession) close() { _ = s.rt.Close() }

// openBudgets loads the config, checks the named workflow (exit 2 when it
// is unknown or has no budget) and connects.
func (m *Main) openBudgets(cmd *cobra.Command, rf *rootFlags, args []string) (*budgetSession, error) {
	cfg, err := m.load(cmd, rf)
	if err != nil {
		return nil, err
	}
	for _, name := range args {
		wf, ok := cfg.Workflows[name]
		switch {
		case !ok:
			known := slices.Sorted(maps.Keys(cfg.Workflows))
			if len(known) == 0 {
				known = []string{"none"}
			}
			if cmd.HasSubCommands() {
				// `agentq budget bogus`: a misspelt command, or a workflow.
				return nil, notFoundf("unknown workflow %q (configured: %s) or command of %q (resume, reset)",
					name, strings.Join(known, ", "), cmd.CommandPath())
			}
			return nil, notFoundf("unknown workflow %q (configured: %s)", name, strings.Join(known, ", "))
		case wf.Budget.SLO == 0:
			return nil, usagef("workflow %q has no error budget (set workflows.%s.budget.slo in the config file)", name, name)
		}
	}
	rt, err := m.newRuntime(cfg, rf.configFile, false)
	if err != nil {
		return nil, err
	}
	if err := rt.Ping(cmd.Context()); err != nil {
		_ = rt.Close()
		return nil, err
	}
	return &budgetSession{rt: rt, b: rt.Budgets()}, nil
}

// budgetJSON is a budget as `agentq budget --json` prints it.
type budgetJSON struct {
	Workflow       string  `json:"workflow"`
	Queue          string  `json:"queue"`
	SLO            float64 `json:"slo"`
	Window         string  `json:"window"`
	ShortWindow    string  `json:"short_window"`
	MinEvents      int     `json:"min_events"`
	OnExhausted    string  `json:"on_exhausted"`
	Events         int64   `json:"events"`
	Failures       int64   `json:"failures"`
	Budget         float64 `json:"budget"`
	Remaining      float64 `json:"remaining"`
	RemainingRatio float64 `json:"remaining_ratio"`
	BurnRateLong   float64 `json:"burn_rate_long"`
	BurnRateShort  float64 `json:"burn_rate_short"`
	State          string  `json:"state"`
	Exhausted      bool    `json:"exhausted"`
	Paused         bool    `json:"paused"`
	PausedByBudget bool    `json:"paused_by_budget"`
	Held           bool    `json:"held"`
	Until          string  `json:"until,omitempty"`
}

func toBudgetJSON(st budget.Status) budgetJSON {
	j := budgetJSON{
		Workflow: st.Workflow, Queue: st.Queue, SLO: st.SLO, Window: jobs.FormatDuration(st.Window), ShortWindow: jobs.FormatDuration(st.ShortWindow),
		MinEvents: st.MinEvents, OnExhausted: string(st.OnExhausted), Events: st.Events, Failures: st.Failures,
		Budget: round3(st.Budget), Remaining: round3(st.Remaining), RemainingRatio: round3(st.RemainingRatio),
		BurnRateLong: round3(st.BurnRateLong), BurnRateShort: round3(st.BurnRateShort),
		State: string(st.State), Exhausted: st.Exhausted, Paused: st.Paused, PausedByBudget: st.PausedByBudget, Held: st.Held,
	}
	if !st.Until.IsZero() {
		j.Until = st.Until.UTC().Format(time.RFC3339)
	}
	return j
}

func writeBudgets(w io.Writer, sts []budget.Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKFLOW\tQUEUE\tSLO\tWINDOW\tEVENTS\tFAILURES\tBUDGET\tREMAINING\tBURN LONG\tBURN SHORT\tSTATE")
	for _, st := range sts {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%d\t%d\t%s\t%s (%s%%)\t%s (%s)\t%s (%s)\t%s\n",
			st.Workflow, st.Queue, st.SLO, jobs.FormatDuration(st.Window), st.Events, st.Failures,
			num(st.Budget), num(st.Remaining), num(100*st.RemainingRatio),
			num(st.BurnRateLong), jobs.FormatDuration(st.Window), num(st.BurnRateShort), jobs.FormatDuration(st.ShortWindow), stateText(st))
	}
	return tw.Flush()
}

// stateText is the STATE column: the state and what it means now.
func stateText(st budget.Status) string {
	var parts []string
	switch {
	case st.State == budget.StatePaused && st.PausedByBudget:
		parts = append(parts, "paused by the budget")
	case st.State == budget.StatePaused:
		parts = append(parts, "paused (not by the budget)")
	default:
		parts = append(parts, string(st.State))
	}
	if st.Exhausted && st.State == budget.StatePaused {
		parts = append(parts, "exhausted")
	}
	if st.Held {
		parts = append(parts, "resumed by hand: not paused again until new failures")
	}
	if !st.Until.IsZero() {
		parts = append(parts, "recovers about "+st.Until.UTC().Format(time.RFC3339)+" without new failures")
	}
	if !st.Exhausted && st.Events < int64(st.MinEvents) {
		parts = append(parts, fmt.Sprintf("fewer than %d attempts: not judged", st.MinEvents))
	}
	return strings.Join(parts, ", ")
}

func budgetSummary(st budget.Status) string {
	return fmt.Sprintf("%d failures of %d attempts over the last %s; slo %v allows %s", st.Failures, st.Events, jobs.FormatDuration(st.Window), st.SLO, num(st.Budget))
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func num(f float64) string { return strconv.FormatFloat(round3(f), 'f', -1, 64) }
