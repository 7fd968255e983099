package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/internal/dev"
	"github.com/agentq/agentq/queue"
)

func (m *Main) workerCommand(rf *rootFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker [--concurrency N] [--queues q1=6,q2=1]",
		Short: "Run tasks until SIGINT/SIGTERM, then shut down gracefully",
		Args:  cobra.NoArgs,
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
	cmd.Flags().Int("loops", 0, "dequeue loops sharing the concurrency (worker.loops, default sized to the machine: twice GOMAXPROCS, 2 to 8, at most --concurrency)")
	cmd.Flags().String("queues", "", "queues with priorities, e.g. critical=6,default=1 (worker.queues)")
	cmd.Flags().String("metrics-addr", "", "serve Prometheus /metrics on host:port, e.g. 127.0.0.1:9090 (worker.metrics_addr)")
	return cmd
}

func (m *Main) dashboardCommand(rf *rootFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dashboard [--addr 127.0.0.1:8080] [--read-only]",
		Short: "Serve the asynqmon dashboard and /healthz",
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
		Short: "Run everything in one process: embedded Redis, worker, dashboard and a demo",
		Long: `Start an embedded Redis-compatible server (in memory), a worker, the dashboard
and a short demo against a local flaky tool server: some calls succeed after
retries, one fails permanently and is dead-lettered. With redis.url or
AGENTQ_REDIS_URL set, that Redis is used instead of the embedded one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := m.load(cmd, rf)
			if err != nil {
				return err
			}
			return m.runDev(cmd.Context(), cfg, rf.configFile, exitAfter)
		},
	}
	cmd.Flags().BoolVar(&exitAfter, "exit", false, "exit after the demo instead of serving the dashboard until interrupted")
	cmd.Flags().String("addr", "", "dashboard listen address (dashboard.addr)")
	return cmd
}

// DevQueue is the queue `agentq dev` uses on a configured Redis.
const DevQueue = "agentq-dev"

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
		fmt.Fprintf(out, "redis: embedded at %s — its data lives in memory and is gone when %s dev stops\n", e.Addr(), m.name())
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
	cfg.Dashboard.Addr = dev.DashboardAddr(cfg.Dashboard.Addr)
	rt, err := m.newRuntime(cfg, configFile, false)
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
	w, err := rt.NewWorker(ctx)
	if err != nil {
		return usage(err)
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
	fmt.Fprintf(out, "dashboard: %s\n", url)

	ts := dev.NewToolServer()
	defer ts.Close()
	fmt.Fprintf(out, "tool server: %s (flaky on purpose)\n\nrunning the demo...\n", ts.URL())
	steps, err := dev.Demo(ctx, rt.Client(), rt.Redis(), ts, demoQueue, 60*time.Second)
	dev.WriteDemo(out, steps)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nThe dead-lettered step is in the dashboard's Archived tab: %squeues/%s?status=archived\n", url, demoQueue)
	fmt.Fprintf(out, "and in the dead-letter store: %s dlq list\n", rt.CommandLine())
	if exitAfter {
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
