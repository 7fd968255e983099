package agentq

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/budget"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/handlers"
	"github.com/agentq/agentq/internal/dashboard"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/ledger"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/redact"
	"github.com/agentq/agentq/runs"
)

// This file turns the effective configuration into the components' own
// Config structs, one function per component.

func handlersConfig(cfg config.Config) handlers.Config {
	return handlers.Config{
		Timeout:          cfg.HTTP.Timeout,
		MaxResponseBytes: cfg.HTTP.MaxResponseBytes,
		RedactHeaders:    cfg.HTTP.RedactHeaders,
		RedactFields:     cfg.HTTP.RedactFields,
		LLM:              cfg.LLM.Handlers(),
	}
}

// runsConfig is the run engine's configuration: the run workflows, the
// runs keys, and OnCapped, which logs a run going over a cap and, with
// alerts.webhook_url, posts it.
func (r *Runtime) runsConfig() runs.Config {
	log := r.log
	return runs.Config{
		Workflows:      r.runWfs,
		Retention:      r.cfg.Runs.Retention,
		MaxOutputBytes: r.cfg.Runs.MaxOutputBytes,
		MaxSteps:       r.cfg.Runs.MaxSteps,
		OnCapped:       r.onCapped,
		DeadLetterOf:   r.dead.RecordOf,
		Logger:         &log,
	}
}

// capAlert is the JSON posted to alerts.webhook_url when a run goes over
// one of its caps.
type capAlert struct {
	Event    string    `json:"event"`
	Text     string    `json:"text"`
	RunID    string    `json:"run_id"`
	Workflow string    `json:"workflow"`
	Step     string    `json:"step,omitempty"`
	Cap      string    `json:"cap"`
	Limit    string    `json:"limit"`
	Value    string    `json:"value"`
	At       time.Time `json:"at"`
}

// newCapAlert is the alert of e.
func newCapAlert(e runs.CapEvent) capAlert {
	a := capAlert{Event: "run_capped", RunID: e.RunID, Workflow: e.Workflow, Step: e.Step, At: e.At}
	if e.Err != nil {
		a.Cap, a.Limit, a.Value = e.Err.Cap, e.Err.Limit, e.Err.Value
	}
	a.Text = fmt.Sprintf("agentq: run %s of workflow %s is over its cap %s: %s, limit %s; no further step starts", e.RunID, e.Workflow, a.Cap, a.Value, a.Limit)
	if e.Step != "" {
		a.Text += fmt.Sprintf(" (step %s dead-lettered)", e.Step)
	}
	return a
}

// onCapped logs a run going over a cap and, with alerts.webhook_url,
// posts it.
func (r *Runtime) onCapped(_ context.Context, e runs.CapEvent) {
	a := newCapAlert(e)
	r.log.Warn().Str("run_id", a.RunID).Str("workflow", a.Workflow).Str("step", a.Step).Str("cap", a.Cap).
		Str("limit", a.Limit).Str("value", a.Value).Msg("run over its cap")
	if r.hook != nil {
		r.hook.Send(a)
	}
}

func redisConfig(cfg config.Config) queue.RedisConfig {
	r := cfg.Redis
	return queue.RedisConfig{
		URL: r.URL, Username: r.Username, Password: r.Password, ClusterAddrs: r.ClusterAddrs,
		TLSEnabled: r.TLS.Enabled, CAFile: r.TLS.CAFile, CertFile: r.TLS.CertFile, KeyFile: r.TLS.KeyFile,
		ServerName: r.TLS.ServerName, InsecureSkipVerify: r.TLS.InsecureSkipVerify,
		DialTimeout: r.DialTimeout, ReadTimeout: r.ReadTimeout, WriteTimeout: r.WriteTimeout, PoolSize: r.PoolSize,
	}
}

func retryPolicy(r config.Retry) jobs.RetryPolicy {
	return jobs.RetryPolicy{MaxAttempts: r.MaxAttempts, Base: r.Base, Max: r.Max}
}

// workflows are the workflows the client and worker know: the config
// file's, and the run workflows defined in code (Options.Workflows), whose
// queue they take.
func workflows(cfg config.Config, runWfs map[string]runs.Workflow) map[string]queue.Workflow {
	out := make(map[string]queue.Workflow, len(cfg.Workflows)+len(runWfs))
	for name, wf := range cfg.Workflows {
		out[name] = queue.Workflow{Queue: wf.Queue, Retry: retryPolicy(wf.Retry)}
	}
	for name, wf := range runWfs {
		if _, ok := out[name]; !ok {
			out[name] = queue.Workflow{Queue: wf.Queue}
		}
	}
	return out
}

func (r *Runtime) clientConfig() queue.ClientConfig {
	return queue.ClientConfig{
		DedupeWindow:    r.cfg.Enqueue.DedupeWindow,
		MaxPayloadBytes: r.cfg.Enqueue.MaxPayloadBytes,
		Queue:           r.cfg.Enqueue.Queue,
		Retry:           retryPolicy(r.cfg.Retry),
		Workflows:       workflows(r.cfg, r.runWfs),
	}
}

// workerConfig is queue's WorkerConfig without the chain, which
// Worker.chain assembles.
func (r *Runtime) workerConfig() queue.WorkerConfig {
	w := r.cfg.Worker
	log := r.log
	return queue.WorkerConfig{
		Concurrency:          w.Concurrency,
		Queues:               workerQueues(r.cfg, r.runWfs),
		StrictPriority:       w.StrictPriority,
		PollInterval:         w.PollInterval,
		DelayedCheckInterval: w.DelayedCheckInterval,
		ShutdownTimeout:      w.ShutdownTimeout,
		Retry:                retryPolicy(r.cfg.Retry),
		Workflows:            workflows(r.cfg, r.runWfs),
		Logger:               &log,
		Redact:               redact.New(r.cfg.HTTP.RedactHeaders, r.cfg.HTTP.RedactFields).Text,
		Recover:              w.Recover(),
		Loops:                w.Loops,
		CompletionFold:       w.CompletionFold,
		UnknownKindWait:      unknownKindWait(w.UnknownKindWait),
	}
}

// dlqConfig is the dead-letter store's configuration, without metrics
// or alerts (the worker adds them).
func (r *Runtime) dlqConfig() dlq.Config {
	log := r.log
	d := r.cfg.DLQ
	return dlq.Config{
		Redactor:          redact.New(r.cfg.HTTP.RedactHeaders, r.cfg.HTTP.RedactFields),
		Logger:            &log,
		RetentionAge:      d.RetentionAge,
		RetentionCount:    d.RetentionCount,
		ReconcileInterval: d.ReconcileInterval,
		Grace:             d.Grace,
		Command:           r.CommandLine(),
		NoReplayHint:      r.opts.NoReplayHint,
	}
}

func (r *Runtime) ledgerConfig() ledger.Config {
	log := r.log
	return ledger.Config{Logger: &log, Registerer: r.prom, Retention: r.cfg.Ledger.Retention}
}

// budgetConfig turns the workflows' budgets into the budget package's
// policies; workflows without an SLO have none.
func (r *Runtime) budgetConfig() budget.Config {
	log := r.log
	ws := map[string]budget.Policy{}
	for _, name := range slices.Sorted(maps.Keys(r.cfg.Workflows)) {
		wf, _ := r.cfg.Workflow(name)
		b := wf.Budget
		if b.SLO == 0 {
			continue
		}
		ws[name] = budget.Policy{
			SLO: b.SLO, Window: b.Window, MinEvents: b.MinEvents,
			OnExhausted: budget.Action(b.OnExhausted), Queue: wf.Queue,
		}
	}
	return budget.Config{Workflows: ws, Logger: &log, Command: r.CommandLine()}
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

// budgetAlerts posts budget changes through send (never blocking: an
// alert.Webhook queues).
func budgetAlerts(send func(any)) func(context.Context, budget.Event) {
	return func(_ context.Context, e budget.Event) {
		send(budgetAlert{
			Event: "budget_" + string(e.Kind), Text: "agentq: " + e.Message, Workflow: e.Status.Workflow,
			State: string(e.Status.State), Events: e.Status.Events, Failures: e.Status.Failures,
			SLO: e.Status.SLO, Window: e.Status.Window.String(), At: e.Status.At,
		})
	}
}

// breakerConfig turns breakers and breakers.overrides into the breaker
// package's settings.
func (r *Runtime) breakerConfig() breaker.Config {
	log := r.log
	b := r.cfg.Breakers
	ov := make(map[string]breaker.Settings, len(b.Overrides))
	for name, o := range b.Overrides {
		ov[name] = breaker.Settings{Failures: o.Failures, FailureRate: o.FailureRate, RateWindow: o.RateWindow, MinCalls: o.MinCalls, Cooldown: o.Cooldown}
	}
	return breaker.Config{
		Default:   breaker.Settings{Failures: b.Failures, FailureRate: b.FailureRate, RateWindow: b.RateWindow, MinCalls: b.MinCalls, Cooldown: b.Cooldown},
		Overrides: ov, Logger: &log,
	}
}

func dashboardConfig(cfg config.Config) dashboard.Config {
	d := cfg.Dashboard
	return dashboard.Config{
		Addr: d.Addr, ReadOnly: d.ReadOnly,
		BasicAuthUser: d.BasicAuthUser, BasicAuthPassword: d.BasicAuthPassword, BearerToken: d.BearerToken,
		RedactHeaders: cfg.HTTP.RedactHeaders, RedactFields: cfg.HTTP.RedactFields,
	}
}

// unknownKindWait maps worker.unknown_kind_wait to queue's
// WorkerConfig.UnknownKindWait: 0 (dead-letter at once) is negative there,
// where 0 is the default.
func unknownKindWait(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
