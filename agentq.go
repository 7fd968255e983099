// Package agentq builds agentq's client and worker, with every part a
// production worker runs, from one config.Config: what `agentq worker` runs
// and what a Go program calls. New builds a Runtime; its Client enqueues
// (with error budgets' admission), its NewWorker runs steps through the
// whole chain (dead-letter capture, metrics, error budgets, idempotency
// ledger, agent runs, circuit breakers, your middleware) and stops the
// parts in order. Runs starts, reads and cancels agent runs.
//
// The cli package is the agentq command line on top of this package.
package agentq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/alert"
	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/budget"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/handlers"
	"github.com/agentq/agentq/internal/logging"
	"github.com/agentq/agentq/internal/metrics"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/redact"
	"github.com/agentq/agentq/runs"
)

// NameDefault is Options.Name's default: the agentq command line.
const NameDefault = "agentq"

// Options are what a Runtime takes besides the configuration: the parts
// a program brings (kinds, middleware, logger, Redis client, metrics
// registry). Every field is optional.
type Options struct {
	// Name is the program that runs agentq's commands (dlq, budget)
	// against this runtime's Redis: it starts the commands agentq prints
	// for a user to paste, such as the dead-letter replay hint. Set it to
	// your binary's name when it embeds cli.Main. It is used as written
	// (quote it for a shell if it needs quoting). Default NameDefault
	// ("agentq").
	Name string
	// ConfigFile is the config file this runtime was loaded from; hints
	// then pass it as --config. Default: none.
	ConfigFile string
	// NoReplayHint leaves the replay command out of the dead-letter
	// warning and alert, for a process whose Redis is gone when it ends
	// (`agentq dev --exit` with its embedded Redis). Default false.
	NoReplayHint bool
	// Logger receives the worker's per-attempt lines and the parts' logs.
	// Default: a logger on LogTo at cfg.Log's level and format.
	Logger *zerolog.Logger
	// LogTo is where the default logger writes. Default os.Stderr.
	LogTo io.Writer
	// Register adds custom task kinds next to the built-ins.
	Register func(reg *queue.Registry) error
	// Middleware wraps every step after agentq's own parts, closest to
	// the handler; the first given is the outermost.
	Middleware []jobs.Middleware
	// Observers receive every decided attempt, after agentq's own.
	Observers []jobs.Observer
	// Workflows are run workflows defined in code, by name, next to the
	// config file's (workflows.<name>.steps); a name defined in both is an
	// error. Their steps' kinds must be registered. Default: none.
	Workflows map[string]runs.Workflow
	// Registerer receives every metric of the runtime. Default: a fresh
	// registry with Go and process collectors, served by MetricsHandler.
	// One Runtime registers its metrics once: two runtimes (or two
	// workers of one runtime) on one Registerer collide.
	Registerer prometheus.Registerer
	// Gatherer is what MetricsHandler serves. Default: Registerer when it
	// is a Gatherer (a *prometheus.Registry is), else required with it.
	Gatherer prometheus.Gatherer
	// Redis is the client to use; the Runtime does not close it. Default:
	// a client for cfg.Redis, closed by Close.
	Redis redis.UniversalClient
}

// Runtime is agentq built from one config: the Redis client, the kind
// registry, the client, the dead-letter store, the error budgets and the
// circuit breakers that commands and the dashboard read. Workers come from
// NewWorker. A Runtime is safe for concurrent use; Close releases it.
type Runtime struct {
	cfg      config.Config
	name     string
	opts     Options
	log      zerolog.Logger
	flushLog func() error // writes buffered log lines; nil with Options.Logger
	// workerBuilt is set by the one NewWorker call a Runtime allows;
	// worker is the Worker it built, which Close stops.
	workerBuilt atomic.Bool
	worker      atomic.Pointer[Worker]
	closeOnce   sync.Once
	closeErr    error
	reg         *queue.Registry
	rdb         redis.UniversalClient
	ownRedis    bool
	prom        prometheus.Registerer
	gather      prometheus.Gatherer
	budgets     *budget.Budgets
	breakers    *breaker.Set
	client      *queue.Client
	dead        *dlq.Store
	// runWfs are the run workflows, the config file's and Options'.
	runWfs map[string]runs.Workflow
	// runs is built by the first Runs call.
	runsOnce sync.Once
	runs     *runs.Runs
	runsErr  error
	// hook posts alerts to alerts.webhook_url (nil without one): built in
	// New, used by the worker's parts and by onCapped, closed by
	// Worker.Close and Close.
	hook *alert.Webhook
}

// ConfigError is a configuration a part refuses: no retry helps.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// New validates cfg and builds a Runtime. It does not touch Redis (the
// client dials on first use): Ping or WaitForRedis check that Redis
// answers.
func New(cfg config.Config, opts Options) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Runtime{cfg: cfg, opts: opts, name: cmp.Or(opts.Name, NameDefault), reg: queue.NewRegistry()}
	if opts.Logger != nil {
		r.log = *opts.Logger
	} else {
		log, flush, err := logging.NewFlushed(cmp.Or[io.Writer](opts.LogTo, os.Stderr), cfg.Log.Level, cfg.Log.Format)
		if err != nil {
			return nil, &ConfigError{err}
		}
		r.log, r.flushLog = log, flush
	}
	if err := handlers.Register(r.reg, handlersConfig(cfg)); err != nil {
		return nil, err
	}
	if opts.Register != nil {
		if err := opts.Register(r.reg); err != nil {
			return nil, fmt.Errorf("register custom kinds: %w", err)
		}
	}
	var err error
	if r.runWfs, err = runWorkflows(cfg, opts.Workflows, r.reg); err != nil {
		return nil, &ConfigError{err}
	}
	if err := r.metricsRegistry(); err != nil {
		return nil, err
	}
	r.rdb = opts.Redis
	if r.rdb == nil {
		rdb, err := redisConfig(cfg).NewRedis()
		if err != nil {
			return nil, &ConfigError{err}
		}
		r.rdb, r.ownRedis = rdb, true
	}
	if err := r.build(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// metricsRegistry sets the Registerer and Gatherer from the options.
func (r *Runtime) metricsRegistry() error {
	r.prom, r.gather = r.opts.Registerer, r.opts.Gatherer
	if r.prom == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		r.prom = reg
	}
	if r.gather == nil {
		g, ok := r.prom.(prometheus.Gatherer)
		if !ok {
			return errors.New("agentq: Options.Gatherer is required with a Registerer that is not a Gatherer")
		}
		r.gather = g
	}
	return nil
}

// build makes the parts shared by commands, the client and workers, in
// order: budgets and breakers (read by commands, the dashboard and the
// client's admission), their gauges, the client, the dead-letter store.
func (r *Runtime) build() error {
	var err error
	if u := r.cfg.Alerts.WebhookURL; u != "" {
		log := r.log
		if r.hook, err = alert.New(alert.Config{URL: u, Logger: &log, Registerer: r.prom}); err != nil {
			return &ConfigError{err}
		}
	}
	if r.budgets, err = budget.New(r.rdb, r.budgetConfig()); err != nil {
		return &ConfigError{err}
	}
	if r.breakers, err = breaker.New(r.rdb, r.breakerConfig()); err != nil {
		return &ConfigError{err}
	}
	log := r.log
	if err := metrics.RegisterState(r.prom, metrics.StateConfig{
		Budgets:  func(ctx context.Context) ([]budget.Status, error) { return r.budgets.Statuses(ctx) },
		Breakers: r.breakers.List,
		Logger:   &log,
	}); err != nil {
		return err
	}
	cc := r.clientConfig()
	if r.rejects() {
		cc.Admit = r.budgets.Admit
	}
	if r.client, err = queue.NewClient(r.rdb, r.reg, cc); err != nil {
		return &ConfigError{err}
	}
	dc := r.dlqConfig()
	dc.Client = r.client
	reg, check := r.reg, r.clientConfig()
	dc.Check = func(kind string, payload []byte, o queue.EnqueueOptions) error {
		return queue.Check(reg, check, kind, payload, o)
	}
	if r.dead, err = dlq.New(r.rdb, dc); err != nil {
		return &ConfigError{err}
	}
	return r.registerQueueGauges()
}

// rejects reports whether a workflow's budget refuses enqueues when spent.
func (r *Runtime) rejects() bool {
	for _, p := range r.budgetConfig().Workflows {
		if p.OnExhausted == budget.ActionReject {
			return true
		}
	}
	return false
}

// Close stops the Worker the Runtime built, if it still runs (as
// Worker.Close: running steps get worker.shutdown_timeout), closes the
// alert webhook and the Redis client the Runtime made, and writes the log
// lines it buffered (JSON lines to a file or pipe wait up to 100 ms).
// Later calls return the first call's result.
func (r *Runtime) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.close() })
	return r.closeErr
}

func (r *Runtime) close() error {
	if w := r.worker.Load(); w != nil {
		w.Close()
	}
	var err error
	if r.hook != nil {
		ctx, cancel := context.WithTimeout(context.Background(), alertsCloseTimeout)
		r.hook.Close(ctx) // a no-op after Worker.Close
		cancel()
	}
	if r.ownRedis && r.rdb != nil {
		err = r.rdb.Close()
	}
	if r.flushLog != nil {
		// Lines logged after Close are written at once.
		err = errors.Join(err, r.flushLog())
	}
	return err
}

// Config returns the configuration the Runtime was built from.
func (r *Runtime) Config() config.Config { return r.cfg }

// Logger returns the Runtime's logger.
func (r *Runtime) Logger() zerolog.Logger { return r.log }

// Redis returns the Runtime's Redis client.
func (r *Runtime) Redis() redis.UniversalClient { return r.rdb }

// Registry returns the task kinds: the built-ins and Options.Register's.
func (r *Runtime) Registry() *queue.Registry { return r.reg }

// Client returns the client: it validates payloads against their kind,
// applies the configured retry policies and workflows, and refuses
// enqueues of a workflow whose spent budget rejects them.
func (r *Runtime) Client() *queue.Client { return r.client }

// Check runs every check of an enqueue without touching Redis.
func (r *Runtime) Check(kind string, payload []byte, o queue.EnqueueOptions) error {
	return queue.Check(r.reg, r.clientConfig(), kind, payload, o)
}

// DeadLetters returns the dead-letter store for triage and replay
// (replays are enqueued through Client). Its metrics and alerts are the
// worker's: this store registers none and sends none.
func (r *Runtime) DeadLetters() *dlq.Store { return r.dead }

// Budgets returns the workflows' error budgets, for reading and for
// resume and reset. Counting is the worker's.
func (r *Runtime) Budgets() *budget.Budgets { return r.budgets }

// Breakers returns the circuit breakers, for reading.
func (r *Runtime) Breakers() *breaker.Set { return r.breakers }

// MetricsHandler serves the runtime's metrics: the budget and breaker
// gauges (read from Redis at scrape time) and, once a worker runs, its
// step, dead-letter, ledger and alert metrics.
func (r *Runtime) MetricsHandler() http.Handler { return metrics.Handler(r.gather) }

// Ping checks that Redis answers, within five seconds. Its error names
// where it tried, password masked (a *queue.ConnectError when the Runtime
// made the client).
func (r *Runtime) Ping(ctx context.Context) error {
	if !r.ownRedis {
		return r.rdb.Ping(ctx).Err()
	}
	rdb, err := redisConfig(r.cfg).Connect(ctx, queue.ConnectTryTimeoutDefault)
	if err != nil {
		return err
	}
	return rdb.Close()
}

// WaitForRedis is Ping for long-running processes: while Redis does not
// answer it logs, waits with capped backoff and tries again, until Redis
// answers or ctx ends (then it returns ctx's error). A configuration no
// retry fixes (bad URL, credentials, database) fails at once with a
// permanent *queue.ConnectError.
func (r *Runtime) WaitForRedis(ctx context.Context) error {
	log := r.log
	if !r.ownRedis {
		return queue.PingWait(ctx, r.rdb, queue.WaitConfig{Logger: &log})
	}
	rdb, err := redisConfig(r.cfg).ConnectWait(ctx, queue.WaitConfig{Logger: &log})
	if err != nil {
		return err
	}
	return rdb.Close()
}

// Name returns Options.Name or its default.
func (r *Runtime) Name() string { return r.name }

// workerQueues is worker.queues as the worker serves them. With the
// default list, a worker also serves enqueue.queue and every workflow's
// queue (priority 1); an explicit worker.queues is taken as given, so
// dedicated workers stay dedicated.
func workerQueues(cfg config.Config, runWfs map[string]runs.Workflow) map[string]int {
	queues := maps.Clone(cfg.Worker.Queues)
	if !maps.Equal(queues, config.Default().Worker.Queues) {
		return queues
	}
	queues[cfg.Enqueue.Queue] = max(queues[cfg.Enqueue.Queue], 1)
	add := func(q string) {
		if q != "" && queues[q] == 0 {
			queues[q] = 1
		}
	}
	for _, wf := range cfg.Workflows {
		add(wf.Queue)
	}
	// Run workflows: code-defined ones, and steps with queues of their own.
	for _, wf := range runWfs {
		add(wf.Queue)
		for _, s := range wf.Steps {
			add(s.Queue)
		}
	}
	return queues
}

// outputRedactor masks secrets in what dead-letter commands print: the
// Redactor the handlers and the config's masked output use. Secret header
// names (redact's and http.redact_headers) are secret field names in JSON
// and text already, so no list of them is repeated here.
func outputRedactor(cfg config.Config) *redact.Redactor {
	return redact.New(cfg.HTTP.RedactHeaders, cfg.HTTP.RedactFields)
}

// OutputRedactor masks secrets in what a program prints of dead letters:
// payload fields named like secrets or secret headers, bearer tokens.
func (r *Runtime) OutputRedactor() *redact.Redactor { return outputRedactor(r.cfg) }
