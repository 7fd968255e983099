package cli

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/budget"
	"github.com/agentq/agentq/internal/metrics"
	"github.com/agentq/agentq/queue"
)

// budgetConfig turns the workflows' budgets into the budget package's
// policies; workflows without an SLO have none.
func (a *app) budgetConfig() budget.Config {
	log := a.log
	ws := map[string]budget.Policy{}
	for _, name := range slices.Sorted(maps.Keys(a.cfg.Workflows)) {
		wf, _ := a.cfg.Workflow(name)
		b := wf.Budget
		if b.SLO == 0 {
			continue
		}
		ws[name] = budget.Policy{
			SLO: b.SLO, Window: b.Window, MinEvents: b.MinEvents,
			OnExhausted: budget.Action(b.OnExhausted), Queue: wf.Queue,
		}
	}
	cfg := budget.Config{Workflows: ws, Logger: &log, Command: a.commandLine()}
	// Budget changes are logged by the budget package; with a webhook they
	// are also posted, like dead letters (never blocking: Send queues).
	if a.rel != nil && a.rel.hook != nil {
		hook := a.rel.hook
		cfg.OnChange = func(_ context.Context, e budget.Event) {
			hook.Send(budgetAlert{
				Event: "budget_" + string(e.Kind), Text: "agentq: " + e.Message, Workflow: e.Status.Workflow,
				State: string(e.Status.State), Events: e.Status.Events, Failures: e.Status.Failures,
				SLO: e.Status.SLO, Window: e.Status.Window.String(), At: e.Status.At,
			})
		}
	}
	return cfg
}

// budgetAlert is the JSON posted to alerts.webhook_url when a budget is
// exhausted, pauses its queue or recovers.
type budgetAlert struct {
	Event    string    `json:"event"`
	Text     string    `json:"text"`
	Workflow string    `json:"workflow"`
	State    string    `json:"state"`
	Events   int64     `json:"events"`
	Failures int64     `json:"failures"`
	SLO      float64   `json:"slo"`
	Window   string    `json:"window"`
	At       time.Time `json:"at"`
}

// breakerConfig turns breakers and breakers.overrides into the breaker
// package's settings.
func (a *app) breakerConfig() breaker.Config {
	log := a.log
	b := a.cfg.Breakers
	ov := make(map[string]breaker.Settings, len(b.Overrides))
	for name, o := range b.Overrides {
		ov[name] = breaker.Settings{Failures: o.Failures, FailureRate: o.FailureRate, RateWindow: o.RateWindow, MinCalls: o.MinCalls, Cooldown: o.Cooldown}
	}
	return breaker.Config{
		Default:   breaker.Settings{Failures: b.Failures, FailureRate: b.FailureRate, RateWindow: b.RateWindow, MinCalls: b.MinCalls, Cooldown: b.Cooldown},
		Overrides: ov, Logger: &log,
	}
}

// guards is what keeps a worker process's workflows within bounds and
// observable: error budgets (counting, checking, pausing), circuit breakers
// and the Prometheus metrics, with the /metrics server when
// worker.metrics_addr is set.
type guards struct {
	budgets  *budget.Budgets
	breakers *breaker.Set
	metrics  *metrics.Metrics
	prom     *prometheus.Registry
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

// startGuards builds and starts the guards and makes workerConfig put their
// middleware first after the built-ins: metrics, budget counting, breaker.
// Their loops run until close, not until ctx ends, so that the outcomes of
// the steps a shutting-down worker finishes are still flushed; call close
// after the worker has stopped.
func (a *app) startGuards(ctx context.Context, rdb redis.UniversalClient) (*guards, error) {
	g := &guards{prom: a.prom}
	var err error
	if g.budgets, err = budget.New(rdb, a.budgetConfig()); err != nil {
		return nil, usageError{err}
	}
	if g.breakers, err = breaker.New(rdb, a.breakerConfig()); err != nil {
		return nil, usageError{err}
	}
	if g.metrics, err = metrics.New(metrics.Config{Registerer: g.prom}); err != nil {
		return nil, err
	}
	if err := a.registerState(g.prom, g.budgets, g.breakers); err != nil {
		return nil, err
	}
	var srv *metrics.Server
	if addr := a.cfg.Worker.MetricsAddr; addr != "" {
		if srv, err = metrics.Listen(addr, g.handler()); err != nil {
			return nil, err
		}
		a.log.Info().Str("addr", srv.Addr().String()).Str("url", "http://"+srv.Addr().String()+metrics.Path).Msg("metrics listening")
	}
	a.warnSharedPauseQueues()
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	g.stop = stop
	g.wg.Add(2)
	go func() { defer g.wg.Done(); g.budgets.Run(rctx) }()
	go func() { defer g.wg.Done(); g.breakers.Run(rctx) }()
	if srv != nil {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if err := srv.Serve(rctx); err != nil {
				a.log.Error().Err(err).Msg("metrics server stopped")
			}
		}()
	}
	a.guards = g
	return g, nil
}

// close stops the loops after a last flush of the counted outcomes, and
// the metrics server.
func (g *guards) close() {
	g.stop()
	g.wg.Wait()
}

// handler serves the process's registry: the guards' metrics, the
// dead-letter store's, the ledger's, the alerts', Go runtime and process
// metrics.
func (g *guards) handler() http.Handler {
	return metrics.Handler(g.prom)
}

func (a *app) registerState(reg prometheus.Registerer, b *budget.Budgets, br *breaker.Set) error {
	log := a.log
	return metrics.RegisterState(reg, metrics.StateConfig{
		Budgets:  func(ctx context.Context) ([]budget.Status, error) { return b.Statuses(ctx) },
		Breakers: br.List,
		Logger:   &log,
	})
}

// guardMiddleware is the guards' middleware, outermost first: metrics (sees
// every outcome), budget counting (snoozes are not counted), breaker (its
// snooze reaches the queue as a snooze). Empty before startGuards.
// admit is the enqueue hook of workflows with on_exhausted: reject; nil
// when none has it. A process with guards shares their budgets' cache.
func (a *app) admit(rdb redis.UniversalClient) func(ctx context.Context, kind string, o queue.EnqueueOptions) error {
	cfg := a.budgetConfig()
	reject := false
	for _, p := range cfg.Workflows {
		reject = reject || p.OnExhausted == budget.ActionReject
	}
	if !reject {
		return nil
	}
	if a.guards != nil {
		return a.guards.budgets.Admit
	}
	b, err := budget.New(rdb, cfg)
	if err != nil {
		// The config was validated; a budget it cannot build admits all.
		a.log.Error().Err(err).Msg("error budgets unavailable; enqueues are not checked against them")
		return nil
	}
	return b.Admit
}

// dashboardHandlers are the dashboard's extra handlers: /metrics with the
// budget and breaker gauges read from Redis at scrape time (and, in
// `agentq dev`, the worker's step metrics).
func (a *app) dashboardHandlers(rdb redis.UniversalClient) (map[string]http.Handler, error) {
	if a.guards != nil {
		return map[string]http.Handler{metrics.Path: a.guards.handler()}, nil
	}
	b, err := budget.New(rdb, a.budgetConfig())
	if err != nil {
		return nil, usageError{err}
	}
	br, err := breaker.New(rdb, a.breakerConfig())
	if err != nil {
		return nil, usageError{err}
	}
	if err := a.registerState(a.prom, b, br); err != nil {
		return nil, fmt.Errorf("dashboard metrics: %w", err)
	}
	return map[string]http.Handler{metrics.Path: metrics.Handler(a.prom)}, nil
}

// warnSharedPauseQueues warns about a workflow whose budget pauses a queue
// other workflows use too: they pause with it.
func (a *app) warnSharedPauseQueues() {
	users := map[string][]string{}
	for _, name := range slices.Sorted(maps.Keys(a.cfg.Workflows)) {
		wf, _ := a.cfg.Workflow(name)
		users[wf.Queue] = append(users[wf.Queue], name)
	}
	for name, p := range a.budgetConfig().Workflows {
		if p.OnExhausted != budget.ActionPause {
			continue
		}
		if others := slices.DeleteFunc(slices.Clone(users[p.Queue]), func(n string) bool { return n == name }); len(others) > 0 || p.Queue == a.cfg.Enqueue.Queue {
			a.log.Warn().Str("workflow", name).Str("queue", p.Queue).Strs("sharing_workflows", others).
				Msg("this workflow's budget pauses a queue it shares with other work; give it a queue of its own (workflows." + name + ".queue)")
		}
	}
}
