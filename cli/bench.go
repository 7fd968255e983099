package cli

import (
	"cmp"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/internal/bench"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// binarySelf is the --binary value that names the running program.
const binarySelf = "self"

// workerLoopsFlag is the name of `agentq worker`'s dequeue-loops flag, passed
// to the binary row's child when the worker command has it.
const workerLoopsFlag = "loops"

func (m *Main) benchCommand(rf *rootFlags) *cobra.Command {
	var (
		opts     bench.Options
		asJSON   bool
		flush    bool
		builtins bool
	)
	cmd := &cobra.Command{
		Use:   "bench [--tasks N] [--reps N] [--loops K] [--runs=false] [--binary PATH|self] [--json]",
		Short: "Measure raw asynq against agentq's full path on one Redis",
		Example: `  agentq bench --redis-url redis://127.0.0.1:6379/15
  agentq bench --tasks 5000 --reps 1 --runs=false --json
  agentq bench --binary self --flush`,
		Long: `Measure, in one run on one Redis at one concurrency, raw asynq against
agentq's full path (enqueue with an idempotency key, the whole chain of agentq
worker: dead-letter capture, metrics, budgets, idempotency ledger, breakers,
the per-attempt log line) on no-op tasks. Rows: enqueue plain, keyed and
batched; processing with 1 loop and K loops; raw asynq's own K-server
ceiling; "runs, 3 steps": steps/s of --tasks/3 runs of a three-noop-step
workflow through the run engine against as many plain noop tasks, and the
round trips per step (--runs=false leaves it out); with --binary, the agentq
worker binary as a child process. Each
row pairs a raw asynq run with an agentq run, --reps times, alternating which
goes first, and reports tasks/s, the ratio (median, min-max), Redis round
trips per task (a go-redis hook; a pipeline is one) and commands per task
(INFO commandstats), next to the targets (processing >= 1.0x, keyed enqueue
>= 0.8x, at most one extra round trip per task). Then pickup latency p50/p99
at a steady rate.

bench empties the database between phases and resets the server's command
statistics: point it at an empty database (it refuses a non-empty one unless
--flush is given).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, name := range []string{"tasks", "reps", "rate", "concurrency"} {
				// 0 would mean "the default" to bench.Options: given on the
				// command line it is a mistake, as a negative number is.
				if n, err := cmd.Flags().GetInt(name); err == nil && cmd.Flags().Changed(name) && n < 1 {
					return usagef("bench: --%s must be at least 1, got %d", name, n)
				}
			}
			if err := opts.Validate(); err != nil {
				return usageError{err}
			}
			if opts.Binary != "" && opts.Binary != binarySelf {
				// Checked before any row runs, not after minutes of them.
				if st, err := os.Stat(opts.Binary); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
					return usagef("bench: --binary %s is not an executable file", opts.Binary)
				}
			}
			// The runtime knows the runs row's workflow, so the row measures
			// the worker's own chain and run engine.
			rt, err := m.openRedisWith(cmd, rf, false, map[string]runs.Workflow{bench.RunsWorkflowName: bench.RunsWorkflow()},
				func(cfg *config.Config) {
					// The bench's worker serves the bench only: no metrics
					// listener, no scheduled runs of the configured workflows.
					cfg.Worker.MetricsAddr = ""
					for name, wf := range cfg.Workflows {
						wf.Schedule = config.Schedule{}
						cfg.Workflows[name] = wf
					}
				})
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
				return usagef("bench: the database holds %d keys and bench would delete them; use an empty database (e.g. --redis-url %s) or pass --flush", n, queue.MaskURL(otherDB(rt.Config().RedisURLOrDefault(), 15)))
			}
			// K follows the configuration's worker.loops, as the worker's
			// own loops do, unless --loops says otherwise.
			if l := rt.Config().Worker.Loops; l > 0 && !cmd.Flags().Changed("loops") {
				opts.Loops = min(l, cmp.Or(opts.Concurrency, bench.ConcurrencyDefault))
			}
			if !asJSON {
				opts.Progress = m.Stderr
			}
			if opts.Binary != "" {
				if err := m.benchBinary(&opts, rt.Config().RedisURLOrDefault(), rf); err != nil {
					return err
				}
			}
			// By default measure what `agentq worker` runs, not a lighter
			// chain.
			if !builtins {
				w, err := rt.NewWorker(ctx)
				if err != nil {
					return usage(err)
				}
				defer w.Close()
				opts.Middleware, opts.Observers = w.Middleware(), w.Observers()
				if opts.Engine, err = rt.Runs(); err != nil {
					return err
				}
				opts.WorkerConfig = benchWorkerConfig(w.QueueConfig())
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
	f.IntVar(&opts.Tasks, "tasks", bench.TasksDefault, "tasks per throughput run")
	f.IntVar(&opts.Reps, "reps", bench.RepsDefault, "pairs of runs (raw asynq, agentq) per row; the ratio is their median")
	f.IntVar(&opts.Loops, "loops", 0, "K, the dequeue loops of the K-loop rows (default the worker's: twice GOMAXPROCS, 2 to 8, at most --concurrency)")
	f.IntVar(&opts.Rate, "rate", bench.RateDefault, "steady rate of the latency phase, tasks/s")
	f.DurationVar(&opts.LatencyFor, "latency-for", 5*time.Second, "length of the latency phase")
	f.IntVar(&opts.Concurrency, "concurrency", bench.ConcurrencyDefault, "worker concurrency, the same for both")
	f.BoolVar(&opts.Runs, "runs", true, `add the row "runs, 3 steps": three-step runs of noop steps through the run engine against plain noop tasks`)
	f.StringVar(&opts.Binary, "binary", "", `also drive the "worker" command of this agentq binary as a child process ("self": this program)`)
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.BoolVar(&flush, "flush", false, "allow bench to empty a non-empty database")
	f.BoolVar(&builtins, "builtins-only", false, "measure agentq in-process with queue's built-in middleware only (no dead-letter capture, metrics, budgets, ledger, breakers); the binary row always runs the full chain")
	return cmd
}

// benchBinary resolves --binary and points the child at the configuration
// and Redis this command uses: the same --config file and environment, and
// the effective Redis URL in AGENTQ_REDIS_URL (not in its arguments, which
// other users of the machine can read).
func (m *Main) benchBinary(opts *bench.Options, redisURL string, rf *rootFlags) error {
	if opts.Binary == binarySelf {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench --binary self: %w", err)
		}
		opts.Binary = exe
	}
	cfgFile := rf.configFile
	if cfgFile == "" {
		// The child runs in a directory of its own: give it the
		// agentq.yaml this command found in the current directory.
		if st, err := os.Stat(config.FileName); err == nil && st.Mode().IsRegular() {
			cfgFile = config.FileName
		}
	}
	if cfgFile != "" {
		abs, err := filepath.Abs(cfgFile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		opts.BinaryArgs = append(opts.BinaryArgs, "--config", abs)
	}
	env := m.Environ
	if env == nil {
		env = os.Environ()
	}
	opts.BinaryEnv = append(slices.Clone(env), "AGENTQ_REDIS_URL="+redisURL)
	// The worker command of this build takes its dequeue loops by flag
	// once it has one.
	if m.workerCommand(rf).Flags().Lookup(workerLoopsFlag) != nil {
		opts.BinaryLoopsFlag = "--" + workerLoopsFlag
	}
	return nil
}

// benchWorkerConfig makes the bench's agentq worker the one `agentq worker`
// builds from the configuration (poll interval, retry policy, redaction,
// lease sweeper, completion fold...), keeping the bench's concurrency and
// queues (it enqueues to the default queue), its discarding logger, its
// middleware and observers (the worker's and the bench's probe) and the
// row's dequeue loops.
func benchWorkerConfig(w queue.WorkerConfig) func(cfg *queue.WorkerConfig, loops int) {
	return func(cfg *queue.WorkerConfig, loops int) {
		c := w
		c.Concurrency, c.Queues, c.Logger, c.Middleware, c.Observers = cfg.Concurrency, cfg.Queues, cfg.Logger, cfg.Middleware, cfg.Observers
		c.Loops = loops
		*cfg = c
	}
}

// otherDB returns redis URL u with its database set to db, for a hint; u
// itself when it names no single server's database.
func otherDB(u string, db int) string {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "redis" && p.Scheme != "rediss") || p.Query().Has("addr") {
		return u
	}
	p.Path = "/" + strconv.Itoa(db)
	return p.String()
}
