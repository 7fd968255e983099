package agentq

import (
	"context"
	"maps"
	"net/http"
	"slices"

	"github.com/agentq/agentq/budget"
	"github.com/agentq/agentq/internal/dashboard"
	"github.com/agentq/agentq/internal/metrics"
	"github.com/agentq/agentq/queue"
)

// CheckDashboard checks the dashboard settings without serving: a
// non-loopback dashboard.addr needs basic auth or a bearer token.
func (r *Runtime) CheckDashboard() error {
	if err := dashboardConfig(r.cfg).Validate(); err != nil {
		return &ConfigError{err}
	}
	return nil
}

// ServeDashboard serves asynqmon (queues, tasks, retries, archive),
// /healthz and MetricsHandler's /metrics on dashboard.addr until ctx ends.
// started, if non-nil, receives the dashboard's URL once it listens.
// asynqmon makes its own Redis client from the configuration, also when
// Options.Redis is set.
func (r *Runtime) ServeDashboard(ctx context.Context, started func(url string)) error {
	dc := dashboardConfig(r.cfg)
	if err := dc.Validate(); err != nil {
		return &ConfigError{err}
	}
	srv, err := dashboard.New(dc, queue.ConnOpt{Config: redisConfig(r.cfg)}, r.rdb, r.log,
		map[string]http.Handler{metrics.Path: r.MetricsHandler()})
	if err != nil {
		return err
	}
	defer srv.Close()
	addr, err := srv.Listen()
	if err != nil {
		return err // it names the dashboard
	}
	if started != nil {
		started("http://" + addr.String() + "/")
	}
	return srv.Serve(ctx)
}

// warnSharedPauseQueues warns about a workflow whose budget pauses a queue
// other workflows use too: they pause with it.
func (r *Runtime) warnSharedPauseQueues() {
	users := map[string][]string{}
	for _, name := range slices.Sorted(maps.Keys(r.cfg.Workflows)) {
		wf, _ := r.cfg.Workflow(name)
		users[wf.Queue] = append(users[wf.Queue], name)
	}
	for name, p := range r.budgetConfig().Workflows {
		if p.OnExhausted != budget.ActionPause {
			continue
		}
		if others := slices.DeleteFunc(slices.Clone(users[p.Queue]), func(n string) bool { return n == name }); len(others) > 0 || p.Queue == r.cfg.Enqueue.Queue {
			r.log.Warn().Str("workflow", name).Str("queue", p.Queue).Strs("sharing_workflows", others).
				Msg("this workflow's budget pauses a queue it shares with other work; give it a queue of its own (workflows." + name + ".queue)")
		}
	}
}
