package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/internal/dev"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

func (m *Main) workerCommand(rf *rootFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker [--concurrency N] [--queues q1=6,q2=1] [--loops K]",
		Short: "Run tasks until SIGINT/SIGTERM, then shut down gracefully",
		Example: `  agentq worker
  agentq worker --concurrency 32 --queues critical=6,default=1
  AGENTQ_REDIS_URL=redis://redis:6379/0 agentq worker --metrics-addr 0.0.0.0:9090`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := m.open(cmd, rf, false)
			if err != nil {
				return err
			}
			defer rt.Close()
			workerGC()
			ctx := cmd.Context()
			if ok, err := waitRedis(ctx, rt); !ok {
				return err
			}
			w, err := rt.NewWorker(ctx)
			if err != nil {
				return usage(err)
			}
			return w.Run(ctx)
		},
	}
	cmd.Flags().Int("concurrency", 0, fmt.Sprintf("tasks run at once (worker.concurrency, default %d)", config.Default().Worker.Concurrency))
	cmd.Flags().Int("loops", 0, "dequeue loops sharing the concurrency (worker.loops, default sized to the machine: twice GOMAXPROCS, 2 to 8, at most --concurrency and 64)")
	cmd.Flags().String("queues", "", "queues with priorities, e.g. critical=6,default=1 (worker.queues)")
	cmd.Flags().String("metrics-addr", "", "serve Prometheus /metrics on host:port, e.g. 127.0.0.1:9090 (worker.metrics_addr)")
	return cmd
}

func (m *Main) dashboardCommand(rf *rootFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dashboard [--addr 127.0.0.1:8080] [--read-only]",
		Short: "Serve the asynqmon dashboard and /healthz",
		Example: `  agentq dashboard
  agentq dashboard --addr 127.0.0.1:9000 --read-only`,
		Long: `Serve asynqmon (queues, tasks, retries, archive) and /healthz. The dashboard
binds loopback by default and refuses a non-loopback address unless basic auth
(dashboard.basic_auth_user/basic_auth_password) or a bearer token
(dashboard.bearer_token) is configured.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := m.open(cmd, rf, false)
			if err != nil {
				return err
			}
			defer rt.Close()
			if err := rt.CheckDashboard(); err != nil {
				return usage(err)
			}
			ctx := cmd.Context()
			if ok, err := waitRedis(ctx, rt); !ok {
				return err
			}
			return m.serveDashboard(ctx, rt, nil)
		},
	}
	cmd.Flags().String("addr", "", "listen address (dashboard.addr, default "+config.Default().Dashboard.Addr+")")
	cmd.Flags().Bool("read-only", false, "view only: no pausing, deleting or running tasks (dashboard.read_only)")
	return cmd
}

// serveDashboard serves until ctx ends; started, if non-nil, receives the
// URL once listening, else it is printed.
func (m *Main) serveDashboard(ctx context.Context, rt *agentq.Runtime, started func(url string)) error {
	if started == nil {
		started = func(url string) { fmt.Fprintf(m.Stderr, "dashboard: %s (healthz: %shealthz)\n", url, url) }
	}
	return usage(rt.ServeDashboard(ctx, started))
}

func (m *Main) devCommand(rf *rootFlags) *cobra.Command {
	var exitAfter bool
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything in one process: embedded Redis, worker, dashboard and demos",
		Example: `  agentq dev
  agentq dev --exit
  AGENTQ_REDIS_URL=redis://127.0.0.1:6379/0 agentq dev --addr 127.0.0.1:9000`,
		Long: `Start an embedded Redis-compatible server (in memory), a worker, the dashboard
and a short demo against a local flaky tool server: some calls succeed after
retries, one fails permanently and is dead-lettered. Then a run demo: a
three-step agent run (two llm.chat steps against a local fake model server,
whose first answer is a 429, and an http.call step) shown as run show shows
it, with tokens and cost. With redis.url or AGENTQ_REDIS_URL set, that Redis
is used instead of the embedded one, the demo keeps to queue ` + DevQueue + `, and
when dev ends it removes what is its own there: its dead letters, and the keys
it created that are its by name (its queue's, its runs', its idempotency keys'
ledger entries, its servers' breakers); it removes only its members of shared
sets (the runs index, breaker names, the queue list) and never deletes a shared
key such as the dead-letter counter and index. When the dashboard address is taken,
dev says so and uses a free port. With --exit, dev ends after the demos,
with the dashboard and (embedded) Redis it started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := m.load(cmd, rf)
			if err != nil {
				return err
			}
			return m.invoked().runDev(cmd.Context(), cfg, rf.configFile, exitAfter)
		},
	}
	cmd.Flags().BoolVar(&exitAfter, "exit", false, "exit after the demo instead of serving the dashboard until interrupted")
	cmd.Flags().String("addr", "", "dashboard listen address (dashboard.addr)")
	return cmd
}

// DevQueue is the queue `agentq dev` uses on a configured Redis.
const DevQueue = "agentq-dev"

// devQueueFree refuses a dev on a configured Redis where a live worker
// (another agentq dev) already serves DevQueue: their demos would share the
// queue and the workflow's budget, and the first to end would remove keys
// the other still uses. Two devs starting within one heartbeat of each
// other are not caught. A failed lookup lets dev go on.
func devQueueFree(ctx context.Context, rt *agentq.Runtime) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	served, err := rt.ServedQueues(ctx)
	if err != nil || !served[DevQueue] {
		return nil
	}
	return fmt.Errorf("a worker already serves queue %s on this Redis (another %s dev?): stop it first, or give this one a Redis database of its own (e.g. --redis-url redis://host:6379/15)", DevQueue, rt.Name())
}

// invoked returns m named as the user invoked the program (os.Args[0],
// "./agentq" or a full path included), so that the commands dev prints
// work when pasted. Main.Name and `go run` keep their names.
func (m *Main) invoked() *Main {
	words := m.program(os.Args, debug.ReadBuildInfo)
	if m.Name != "" || len(os.Args) == 0 || os.Args[0] == "" || len(words) != 1 {
		return m
	}
	c := *m
	c.Name = os.Args[0]
	return &c
}

func (m *Main) runDev(ctx context.Context, cfg config.Config, configFile string, exitAfter bool) error {
	out := m.Stdout
	embedded := cfg.Redis.URL == "" && len(cfg.Redis.ClusterAddrs) == 0
	if embedded {
		e, err := dev.StartEmbedded()
		if err != nil {
			return err
		}
		defer e.Close()
		cfg.Redis.URL = e.URL()
		fmt.Fprintf(out, "redis: embedded at %s — its data lives in memory and is gone when %s dev stops\n", e.Addr(), m.options(configFile).Name)
	} else {
		fmt.Fprintf(out, "redis: %s\n", queue.MaskURL(cfg.RedisURLOrDefault()))
	}
	if cfg.Log.Level == "info" || cfg.Log.Level == "" {
		// Keep the demo's screen readable: per-attempt lines at warn and up.
		cfg.Log.Level = "warn"
	}
	// On a Redis of its own the demo uses the normal queue. On a configured
	// (maybe shared) Redis it keeps to a queue of its own, and so does its
	// worker, so that agentq dev never runs anybody else's tasks.
	demoQueue := cfg.Enqueue.Queue
	if !embedded {
		demoQueue = DevQueue
		cfg.Worker.Queues = map[string]int{DevQueue: 1}
	}
	if addr := dev.DashboardAddr(cfg.Dashboard.Addr); addr != cfg.Dashboard.Addr {
		fmt.Fprintf(out, "dashboard: %s is busy; using %s instead\n", cfg.Dashboard.Addr, addr)
		cfg.Dashboard.Addr = addr
	}
	// The run demo's model server and tool server start before the runtime,
	// which is built with the fake's provider and models and the demo's
	// workflow (in code).
	llm, err := dev.StartFakeLLM()
	if err != nil {
		return err
	}
	defer llm.Close()
	cfg.LLM = llm.AddTo(cfg.LLM)
	ts := dev.NewToolServer()
	defer ts.Close()
	wfs := map[string]runs.Workflow{dev.RunWorkflow: dev.ArticleWorkflow(demoQueue, ts)}
	// With --exit, what dev started (and on a configured Redis, its dead
	// letters) is gone when it ends: print no replay command for later.
	rt, err := m.newRuntimeWith(cfg, configFile, false, wfs, func(o *agentq.Options) { o.NoReplayHint = exitAfter })
	if err != nil {
		return err
	}
	defer rt.Close()
	if err := rt.CheckDashboard(); err != nil {
		return usage(err)
	}
	if err := rt.Ping(ctx); err != nil {
		return err
	}
	if !embedded {
		if err := devQueueFree(ctx, rt); err != nil {
			return err
		}
	}
	w, err := rt.NewWorker(ctx)
	if err != nil {
		return usage(err)
	}
	var own *dev.Owned
	if !embedded {
		// Record the keys the demo creates, with the worker's hooks inside
		// (go-redis runs the hook added first outermost), and what dev owns
		// by name (its queue, runs, idempotency keys, its servers' breakers,
		// its workflow's budget); once the worker has stopped (deferred
		// calls run last first), remove the keys both created and owned.
		created := dev.NewCreated()
		own = dev.NewOwned(DevQueue)
		own.AddBreakers(dev.BreakerName(ts.URL()), dev.BreakerName(llm.URL()))
		own.AddWorkflows(dev.RunWorkflow)
		rt.Redis().AddHook(created.Hook())
		defer m.removeDemoKeys(rt, created, own, cfg, time.Now())
	}
	defer w.Close()
	if err := w.Start(); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	urlCh := make(chan string, 1)
	dashErr := make(chan error, 1)
	go func() {
		dashErr <- m.serveDashboard(ctx, rt, func(u string) { urlCh <- u })
	}()
	var url string
	select {
	case url = <-urlCh:
	case err := <-dashErr:
		return err // the dashboard's errors name it
	}
	if !exitAfter {
		fmt.Fprintf(out, "dashboard: %s\n", url)
	}

	fmt.Fprintf(out, "tool server: %s (flaky on purpose)\n", ts.URL())
	fmt.Fprintf(out, "model server: %s (fake, OpenAI-compatible; models %s and %s)\n\nrunning the demo...\n", llm.URL(), dev.SmallModel, dev.LargeModel)
	steps, err := dev.Demo(ctx, rt.Client(), rt.Redis(), ts, demoQueue, 60*time.Second, own)
	dev.WriteDemo(out, steps)
	if err != nil {
		return err
	}
	if !exitAfter {
		fmt.Fprintf(out, "\nThe dead-lettered step is in the dashboard's Archived tab: %squeues/%s?status=archived\n", url, demoQueue)
		fmt.Fprintf(out, "and in the dead-letter store: %s dlq list\n", rt.CommandLine())
	}
	if err := m.devRunDemo(ctx, rt, ts, wfs[dev.RunWorkflow], own, embedded, exitAfter); err != nil {
		return err
	}
	if exitAfter {
		gone := "its dashboard has stopped and its own keys are removed (shared keys are left)"
		if embedded {
			gone = "its dashboard and embedded Redis have stopped"
		}
		fmt.Fprintf(out, "\ndev --exit: %s; run %s dev without --exit to explore the demo in the dashboard.\n", gone, rt.Name())
		return nil
	}
	fmt.Fprintf(out, "Serving the dashboard at %s — press Ctrl-C to stop.\n", url)
	select {
	case <-ctx.Done():
	case err := <-dashErr:
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return nil
}

// devRunDemo runs the demo workflow once and prints it as run show does.
func (m *Main) devRunDemo(ctx context.Context, rt *agentq.Runtime, ts *dev.ToolServer, wf runs.Workflow, own *dev.Owned, embedded, exitAfter bool) error {
	out := m.Stdout
	rn, err := rt.Runs()
	if err != nil {
		return usage(err)
	}
	fmt.Fprintf(out, "\nrunning the run demo (%s: research and draft with llm.chat, publish with http.call; the fake model's first answer is a 429, tokens and cost add up)...\n", dev.RunWorkflow)
	r, err := dev.RunDemo(ctx, rn, wf, "idempotent retries for AI agents", 60*time.Second, own)
	if r != nil {
		s := &runSession{rt: rt, runs: rn, redact: rt.OutputRedactor()}
		if exitAfter {
			fmt.Fprintf(out, "\nrun %s, as run show prints it:\n", r.ID)
		} else {
			fmt.Fprintf(out, "\n$ %s run show %s\n", rt.CommandLine(), r.ID)
		}
		if werr := writeRun(out, s.present(r)); werr != nil && err == nil {
			err = werr
		}
		if body := ts.Published(r.ID); body != "" {
			fmt.Fprintf(out, "\npublished: %s\n", printable(clip(body, 160)))
		}
	}
	if err != nil {
		return err
	}
	if r.Status != runs.StatusSucceeded {
		return fmt.Errorf("run demo: run %s ended %s: %s", r.ID, r.Status, r.Reason)
	}
	if exitAfter {
		return nil
	}
	later := " (while dev runs: dev removes its keys when it ends)"
	if embedded {
		later = " (only while dev runs: the embedded Redis keeps it in memory)"
	}
	fmt.Fprintf(out, "\nShow the run again with: %s run show %s%s\n", rt.CommandLine(), r.ID, later)
	return nil
}

// removeDemoKeys removes, after its worker stopped, what dev left on a
// configured Redis and owns (dev.Cleanup), and says what it removed and
// which shared keys it created but left.
func (m *Main) removeDemoKeys(rt *agentq.Runtime, created *dev.Created, own *dev.Owned, cfg config.Config, since time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rm, err := dev.Cleanup(ctx, rt.Redis(), rt.DeadLetters(), created, own, since)
	where := queue.MaskURL(cfg.RedisURLOrDefault())
	if err != nil {
		fmt.Fprintf(m.Stderr, "%s: warning: removed %d of the demo's keys from %s: %v\n", m.name(), rm.Keys, where, err)
		return
	}
	fmt.Fprintf(m.Stdout, "removed the %d keys the demo created and owns, and %d of its entries in shared sets, from %s\n", rm.Keys, rm.Members, where)
	if len(rm.Shared) > 0 {
		fmt.Fprintf(m.Stdout, "left %d shared keys other processes may use: %s\n", len(rm.Shared), strings.Join(rm.Shared, ", "))
	}
}

// WorkerGCPercent is the garbage collector's target `agentq worker` runs
// with when GOGC is not set: a worker's live heap is small, so Go's default
// (100) collects it very often; collecting half as often bought about 5%
// throughput on 2 vCPUs (agentq bench, the binary row) for a heap at most
// three times the live data instead of two. GOGC in the environment wins.
const WorkerGCPercent = 200

func workerGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(WorkerGCPercent)
	}
}
