package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentq/agentq/internal/bench"
)

func (m *Main) benchCommand(rf *rootFlags) *cobra.Command {
	var (
		opts     bench.Options
		asJSON   bool
		flush    bool
		builtins bool
	)
	cmd := &cobra.Command{
		Use:   "bench [--tasks N] [--json]",
		Short: "Measure raw asynq against agentq's full path on one Redis",
		Long: `Measure, in one run on one Redis, raw asynq against agentq's full path
(enqueue with an idempotency key + the whole middleware chain of agentq worker:
dead-letter capture, metrics, budgets, idempotency ledger, breakers) on
no-op tasks: enqueue and processing tasks/s and their ratio, pickup latency
p50/p99 at a steady rate, and Redis commands per task (INFO commandstats).

bench empties the database between phases and resets the server's command
statistics: point it at an empty database (it refuses a non-empty one unless
--flush is given).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := m.openRedis(cmd, rf, false)
			if err != nil {
				return err
			}
			defer rt.Close()
			rdb, ctx := rt.Redis(), cmd.Context()
			n, err := rdb.DBSize(ctx).Result()
			if err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			if n > 0 && !flush {
				return usagef("bench: the database holds %d keys and bench would delete them; use an empty database (e.g. --redis-url redis://127.0.0.1:6379/15) or pass --flush", n)
			}
			if !asJSON {
				opts.Progress = m.Stderr
			}
			// By default measure the chain `agentq worker` runs, not a
			// lighter one.
			if !builtins {
				w, err := rt.NewWorker(ctx)
				if err != nil {
					return usage(err)
				}
				defer w.Close()
				opts.Middleware = w.Middleware()
			}
			rep, err := bench.Run(ctx, rdb, rt.Registry(), opts)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(m.Stdout, rep)
			}
			return rep.WriteText(m.Stdout)
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Tasks, "tasks", bench.TasksDefault, "tasks per throughput phase")
	f.IntVar(&opts.Rate, "rate", bench.RateDefault, "steady rate of the latency phase, tasks/s")
	f.DurationVar(&opts.LatencyFor, "latency-for", 5*time.Second, "length of the latency phase")
	f.IntVar(&opts.Concurrency, "concurrency", bench.ConcurrencyDefault, "worker concurrency, the same for both")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.BoolVar(&flush, "flush", false, "allow bench to empty a non-empty database")
	f.BoolVar(&builtins, "builtins-only", false, "measure agentq with queue's built-in middleware only (no dead-letter capture, metrics, budgets, ledger, breakers)")
	return cmd
}
