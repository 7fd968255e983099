// Package metrics owns agentq's Prometheus metrics: the per-step counters
// and duration histogram the worker middleware records, the tokens and cost
// attempts report, the error-budget
// and breaker gauges and the queue depth gauges (queues.go) read from Redis
// at scrape time, the /metrics handler,
// and the small server that serves it from a worker (worker.metrics_addr).
// Every collector is registered with a prometheus.Registerer the caller
// gives, never the global one.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/budget"
	"github.com/agentq/agentq/jobs"
)

// Path is where the metrics are served.
const Path = "/metrics"

// DurationBuckets are the default step duration histogram buckets, in
// seconds: from 5ms (a cached tool) to 5m (a long model call).
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Config configures Metrics.
type Config struct {
	// Registerer receives the collectors. Required.
	Registerer prometheus.Registerer
	// Buckets are the step duration histogram's buckets in seconds.
	// Default DurationBuckets.
	Buckets []float64
	// MaxLabelValues bounds the distinct values of each of the workflow,
	// step and model labels of the token and cost counters; later values
	// are counted under OtherLabel. Workflows and the models of llm.chat
	// come from config, but a handler may name any model and a planner step
	// may add steps under names of its own. Default MaxLabelValuesDefault
	// (256).
	MaxLabelValues int
}

// MaxLabelValuesDefault is the default of Config.MaxLabelValues.
const MaxLabelValuesDefault = 256

// OtherLabel is the label value that stands for every value past
// Config.MaxLabelValues.
const OtherLabel = "_other"

// Metrics records what the worker does with each step.
type Metrics struct {
	attempts, successes, deadLetters, retries, snoozes *prometheus.CounterVec
	failures                                           *prometheus.CounterVec
	duration                                           *prometheus.HistogramVec
	tokens, cost                                       *prometheus.CounterVec

	// Bounded label values of the token and cost counters.
	workflows, steps, models *boundedLabel

	// hot caches the series a success touches, per workflow and kind: one
	// map read per attempt instead of three label lookups.
	hot sync.Map // seriesKey -> *hotSeries
}

type seriesKey struct{ workflow, kind string }

type hotSeries struct {
	attempts, successes prometheus.Counter
	duration            prometheus.Observer
}

func (m *Metrics) series(workflow, kind string) *hotSeries {
	k := seriesKey{workflow, kind}
	if v, ok := m.hot.Load(k); ok {
		return v.(*hotSeries)
	}
	v, _ := m.hot.LoadOrStore(k, &hotSeries{
		attempts:  m.attempts.WithLabelValues(workflow, kind),
		successes: m.successes.WithLabelValues(workflow, kind),
		duration:  m.duration.WithLabelValues(workflow, kind),
	})
	return v.(*hotSeries)
}

// New registers the step metrics with cfg.Registerer. These are labelled by
// workflow ("" for none) and kind:
//
//	agentq_attempts_total             attempts that ran (snoozes included)
//	agentq_successes_total            attempts that succeeded
//	agentq_failures_total{class}      attempts that failed, by error class
//	agentq_retries_total              failures that will be retried
//	agentq_dead_letters_total         failures that ended the task
//	agentq_snoozes_total              attempts rescheduled without spending an attempt
//	agentq_step_duration_seconds      duration of attempts that were not snoozed
//
// What attempts report spending (jobs.Result.Usage), failed and abandoned
// attempts included, is labelled by workflow, run step ("" outside a run)
// and model:
//
//	agentq_tokens_total{direction}    tokens, direction "in" (prompt) or "out" (completion)
//	agentq_cost_usd_total             cost in US dollars
//
// No metric is labelled by run id: run ids are unbounded, and every run
// would leave series behind; a run's own numbers are in `agentq run show`.
// The attempt counters are not labelled by step either: a new label would
// change the series that existing queries and dashboards select, and a
// run's per-step outcomes are in `agentq run show`.
func New(cfg Config) (*Metrics, error) {
	if cfg.Registerer == nil {
		return nil, errors.New("metrics: nil Registerer")
	}
	if cfg.Buckets == nil {
		cfg.Buckets = DurationBuckets
	}
	if cfg.MaxLabelValues < 0 {
		return nil, fmt.Errorf("metrics: max_label_values must not be negative, got %d", cfg.MaxLabelValues)
	}
	if cfg.MaxLabelValues == 0 {
		cfg.MaxLabelValues = MaxLabelValuesDefault
	}
	labels := []string{"workflow", "kind"}
	counter := func(name, help string, extra ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(labels, extra...))
	}
	m := &Metrics{
		attempts:    counter("agentq_attempts_total", "Attempts that ran, snoozed ones included."),
		successes:   counter("agentq_successes_total", "Attempts that succeeded."),
		failures:    counter("agentq_failures_total", "Attempts that failed, by error class (retryable, rate_limited, timeout, permanent, panic).", "class"),
		retries:     counter("agentq_retries_total", "Failed attempts that will be retried."),
		deadLetters: counter("agentq_dead_letters_total", "Failed attempts that ended their task (dead-lettered)."),
		snoozes:     counter("agentq_snoozes_total", "Attempts rescheduled without spending an attempt (e.g. an open breaker)."),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentq_step_duration_seconds", Help: "Duration of attempts that were not snoozed.", Buckets: cfg.Buckets,
		}, labels),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentq_tokens_total",
			Help: "Tokens attempts reported spending (llm.chat, Step.ReportUsage), failed ones included, by workflow, run step, model and direction (in: prompt, out: completion). " +
				"Not labelled by run (unbounded): a run's own numbers are in `agentq run show`.",
		}, []string{"workflow", "step", "model", "direction"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentq_cost_usd_total",
			Help: "Cost in US dollars attempts reported spending, failed ones included, by workflow, run step and model. " +
				"Not labelled by run (unbounded): a run's own numbers are in `agentq run show`.",
		}, []string{"workflow", "step", "model"}),
		workflows: newBoundedLabel(cfg.MaxLabelValues),
		steps:     newBoundedLabel(cfg.MaxLabelValues),
		models:    newBoundedLabel(cfg.MaxLabelValues),
	}
	for _, c := range []prometheus.Collector{m.attempts, m.successes, m.failures, m.retries, m.deadLetters, m.snoozes, m.duration, m.tokens, m.cost} {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return m, nil
}

// Observer records every decided attempt by its outcome, from the Result
// the worker hands it (queue.WorkerConfig.Observers), once per attempt. An
// abandoned attempt is not counted: a failure asynq decided for it reaches
// the observer on its own (Started zero: not timed), and a shutdown's
// requeue spends no attempt.
func (m *Metrics) Observer() jobs.Observer {
	return jobs.ObserverFunc(func(_ context.Context, s *jobs.Step, r *jobs.Result) { m.observe(s, r) })
}

func (m *Metrics) observe(s *jobs.Step, r *jobs.Result) {
	if !r.Usage.IsZero() {
		// Spent whatever became of the attempt, an abandoned one too: the
		// queue's own decision about it reaches the observer with no usage.
		m.observeUsage(s, r.Usage)
	}
	if r.Outcome == jobs.OutcomeAbandoned {
		return
	}
	hs := m.series(s.Workflow, s.Kind)
	hs.attempts.Inc()
	switch r.Outcome {
	case jobs.OutcomeSnooze:
		m.snoozes.WithLabelValues(s.Workflow, s.Kind).Inc()
		return
	case jobs.OutcomeSuccess:
		hs.successes.Inc()
	case jobs.OutcomeRetry:
		m.failures.WithLabelValues(s.Workflow, s.Kind, string(r.Class)).Inc()
		m.retries.WithLabelValues(s.Workflow, s.Kind).Inc()
	case jobs.OutcomeDead:
		m.failures.WithLabelValues(s.Workflow, s.Kind, string(r.Class)).Inc()
		m.deadLetters.WithLabelValues(s.Workflow, s.Kind).Inc()
	}
	if !r.Started.IsZero() {
		hs.duration.Observe(r.Duration.Seconds())
	}
}

func (m *Metrics) observeUsage(s *jobs.Step, u jobs.Usage) {
	wf, step, model := m.workflows.value(s.Workflow), m.steps.value(s.Name), m.models.value(u.Model)
	if u.TokensIn > 0 {
		m.tokens.WithLabelValues(wf, step, model, "in").Add(float64(u.TokensIn))
	}
	if u.TokensOut > 0 {
		m.tokens.WithLabelValues(wf, step, model, "out").Add(float64(u.TokensOut))
	}
	if u.CostUSD > 0 {
		m.cost.WithLabelValues(wf, step, model).Add(u.CostUSD)
	}
}

// boundedLabel admits up to limit distinct values of a label; later values
// become OtherLabel, so that a label fed from outside (a handler's model
// name, a step a planner added) cannot grow the series without bound.
// Values are made valid UTF-8, which Prometheus requires.
type boundedLabel struct {
	limit int64
	n     atomic.Int64
	seen  sync.Map // string -> struct{}
}

func newBoundedLabel(limit int) *boundedLabel { return &boundedLabel{limit: int64(limit)} }

func (b *boundedLabel) value(v string) string {
	if _, ok := b.seen.Load(v); ok {
		return v
	}
	v = strings.ToValidUTF8(v, "\uFFFD")
	if _, ok := b.seen.Load(v); ok {
		return v
	}
	if b.n.Add(1) > b.limit {
		b.n.Add(-1)
		return OtherLabel
	}
	if _, loaded := b.seen.LoadOrStore(v, struct{}{}); loaded {
		b.n.Add(-1) // another attempt admitted it first
	}
	return v
}

// StateConfig says where the gauges of budgets and breakers come from. They
// are read when Prometheus scrapes, so every process serving them (workers,
// the dashboard) shows the state all workers share in Redis.
type StateConfig struct {
	// Budgets returns every workflow budget; nil leaves the budget gauges out.
	Budgets func(ctx context.Context) ([]budget.Status, error)
	// Breakers returns every breaker; nil leaves the breaker gauge out.
	Breakers func(ctx context.Context) ([]breaker.Status, error)
	// Timeout bounds the reads of one scrape. Default 2s.
	Timeout time.Duration
	// Logger receives read errors. Default: no logging.
	Logger *zerolog.Logger
}

var (
	budgetRemainingDesc = prometheus.NewDesc("agentq_budget_remaining",
		"Share of the workflow's error budget left over its window: 1 untouched, 0 spent, negative overspent.", []string{"workflow"}, nil)
	budgetBurnDesc = prometheus.NewDesc("agentq_budget_burn_rate",
		"Failure ratio divided by (1 - slo) over the long (the budget's window) or short (window/12) window; 1 spends the budget exactly over the window.",
		[]string{"workflow", "window"}, nil)
	breakerStateDesc = prometheus.NewDesc("agentq_breaker_state",
		"Circuit breaker state: 0 closed, 1 half-open, 2 open.", []string{"name"}, nil)
)

type stateCollector struct {
	cfg StateConfig
	log zerolog.Logger
}

// RegisterState registers the gauges agentq_budget_remaining{workflow},
// agentq_budget_burn_rate{workflow,window="long"|"short"} and
// agentq_breaker_state{name} with reg.
func RegisterState(reg prometheus.Registerer, cfg StateConfig) error {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	log := zerolog.Nop()
	if cfg.Logger != nil {
		log = *cfg.Logger
	}
	if err := reg.Register(&stateCollector{cfg: cfg, log: log}); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.cfg.Budgets != nil {
		ch <- budgetRemainingDesc
		ch <- budgetBurnDesc
	}
	if c.cfg.Breakers != nil {
		ch <- breakerStateDesc
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	if c.cfg.Budgets != nil {
		sts, err := c.cfg.Budgets(ctx)
		if err != nil {
			c.log.Warn().Err(err).Msg("metrics: budgets not read")
			ch <- prometheus.NewInvalidMetric(budgetRemainingDesc, err)
		}
		for _, st := range sts {
			ch <- prometheus.MustNewConstMetric(budgetRemainingDesc, prometheus.GaugeValue, st.RemainingRatio, st.Workflow)
			ch <- prometheus.MustNewConstMetric(budgetBurnDesc, prometheus.GaugeValue, st.BurnRateLong, st.Workflow, "long")
			ch <- prometheus.MustNewConstMetric(budgetBurnDesc, prometheus.GaugeValue, st.BurnRateShort, st.Workflow, "short")
		}
	}
	if c.cfg.Breakers != nil {
		sts, err := c.cfg.Breakers(ctx)
		if err != nil {
			c.log.Warn().Err(err).Msg("metrics: breakers not read")
			ch <- prometheus.NewInvalidMetric(breakerStateDesc, err)
		}
		for _, st := range sts {
			ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue, st.State.Value(), st.Name)
		}
	}
}

// Handler serves g's metrics in the Prometheus text format. A collector
// that fails is reported in the output and the rest is still served.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Server serves /metrics on its own address (a worker's
// worker.metrics_addr).
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen binds addr (host:port; port 0 picks one) for h at Path.
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, h)
	return &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until ctx is done, then shuts down within 5s.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	<-errc
	return nil
}

// RegisterHeld registers agentq_handlers_held, the number of handlers still
// running after asynq ended their attempt (queue.Worker.Held): each ignores
// its context and holds a goroutine until it returns, so a rising value is
// a leak that only a restart of the worker clears.
func RegisterHeld(reg prometheus.Registerer, held func() int) error {
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "agentq_handlers_held",
		Help: "Handlers still running after their attempt ended (they ignore their context); each holds a goroutine until it returns.",
	}, func() float64 { return float64(held()) }))
}
