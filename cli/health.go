package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentq/agentq"
)

// HealthTimeoutDefault bounds `agentq health`: shorter than the usual
// healthcheck and probe timeouts, so that a check that cannot finish
// reports why instead of being killed.
const HealthTimeoutDefault = 3 * time.Second

func (m *Main) healthCommand(rf *rootFlags) *cobra.Command {
	var (
		o      agentq.HealthOptions
		asJSON bool
		limit  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "health [--worker [--host NAME]] [--dashboard URL]",
		Short: "Check Redis, and a worker or the dashboard, for healthchecks and probes (exit 0 healthy, 1 not)",
		Long: `Check that Redis answers a PING and, with --worker, that a worker runs on this
host: asynq holds a live record (a heartbeat within 10s) of at least one of its
servers, taking tasks. With --dashboard URL, also GET the dashboard's /healthz.
Exit 0 when every check passes, 1 when one fails (each check's line says what
failed), 2 for bad flags or configuration.

A worker is known by its host name (os.Hostname()): in a container, the
container's hostname (Docker: the container id unless hostname is set;
Kubernetes: the pod name). A health check run inside the worker's container or
pod (a compose healthcheck, a Kubernetes exec probe) sees the same name, so it
needs no --host; give --host to check a worker from elsewhere.

Built for container healthchecks and Kubernetes exec probes: the image has no
shell or curl, so run it in exec form:
  ["agentq", "health", "--worker"]`,
		Example: `  agentq health
  agentq health --worker --json
  agentq health --worker --host worker-6f7c9d8b5-x2x4q --timeout 5s
  agentq health --dashboard http://127.0.0.1:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit <= 0 {
				return usagef("--timeout must be positive, got %v", limit)
			}
			if o.Host != "" && !o.Worker {
				return usagef("--host names the worker to check: give --worker too")
			}
			cfg, err := m.load(cmd, rf)
			if err != nil {
				return err
			}
			rt, err := m.newRuntime(cfg, rf.configFile, true)
			if err != nil {
				return err
			}
			defer rt.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), limit)
			defer cancel()
			rep, err := rt.Health(ctx, o)
			if err != nil {
				return usageError{err}
			}
			if asJSON {
				enc := json.NewEncoder(m.Stdout)
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				for _, c := range rep.Checks {
					status := "ok  "
					if !c.OK {
						status = "FAIL"
					}
					fmt.Fprintf(m.Stdout, "%s %s: %s (%dms)\n", status, c.Name, c.Message, c.Millis)
				}
			}
			if !rep.Healthy {
				err := fmt.Errorf("unhealthy: %s", strings.Join(rep.Failed(), ", "))
				if slices.Contains(rep.Failed(), agentq.HealthRedis) {
					return redisError{err} // code redis, as enqueue and dlq list
				}
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Worker, "worker", false, "also check that a worker runs on this host (live asynq server records)")
	f.StringVar(&o.Host, "host", "", "the worker's host name as it records it (default: this host's name; the pod name in Kubernetes)")
	f.StringVar(&o.Dashboard, "dashboard", "", "also GET this dashboard's /healthz, e.g. http://127.0.0.1:8080")
	f.DurationVar(&limit, "timeout", HealthTimeoutDefault, "give up after this long (the check fails)")
	f.BoolVar(&asJSON, "json", false, `print {"healthy": ..., "checks": [{"name", "ok", "message", "ms"}]}`)
	return cmd
}
