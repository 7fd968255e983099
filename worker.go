package agentq

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/agentq/agentq/alert"
	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/budget"
	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/internal/metrics"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/ledger"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// alertsCloseTimeout is how long a stopping worker (or Runtime.Close)
// gives queued alerts.
const alertsCloseTimeout = 5 * time.Second

// Worker is a queue.Worker with every part a production worker runs
// beside it: the dead-letter store and its reconciler, the idempotency
// ledger, the alert webhook, error budgets, circuit breakers, agent runs
// and their scheduler (when a run workflow has a schedule), and metrics
// (served on worker.metrics_addr when set).
type Worker struct {
	rt      *Runtime
	hook    *alert.Webhook // nil without alerts.webhook_url
	dead    *dlq.Store
	ledger  *ledger.Ledger
	budgets *budget.Budgets
	brk     *breaker.Set
	metrics *metrics.Metrics
	srv     *metrics.Server // nil without worker.metrics_addr
	runs    *runs.Runs
	sched   *runs.Scheduler // nil when no run workflow has a schedule
	queue   *queue.Worker
	mws     []jobs.Middleware
	obs     []jobs.Observer
	wc      queue.WorkerConfig // what queue.NewWorker was given

	stopLoops context.CancelFunc
	loops     sync.WaitGroup
	mu        sync.Mutex // orders Start and Close
	started   bool
	closed    chan struct{} // closed by Close
	closeOnce sync.Once
}

// NewWorker builds a worker and starts the parts that run beside it (the
// reconciler, the budgets' and breakers' loops, the metrics server); Run
// (or Start) starts taking tasks. The parts run until Close, not until ctx
// ends, so that the outcomes of the steps a stopping worker finishes are
// still flushed. A Runtime builds one Worker (its metrics are registered
// once); a second call is an error: build another Runtime for another.
func (r *Runtime) NewWorker(ctx context.Context) (_ *Worker, err error) {
	if !r.workerBuilt.CompareAndSwap(false, true) {
		return nil, errors.New("agentq: this Runtime already built its Worker; build another Runtime for another Worker")
	}
	w := &Worker{rt: r, closed: make(chan struct{})}
	defer func() {
		if err != nil {
			// Stop what was built before the failure; the alert webhook is
			// the Runtime's, which Runtime.Close closes.
			w.hook = nil
			w.closeParts()
		}
	}()
	log := r.log
	dc := r.dlqConfig()
	dc.Registerer = r.prom
	bc := r.budgetConfig()
	if r.hook != nil {
		w.hook = r.hook
		dc.Alerter = w.hook
		// Budget changes are logged by the budget package; with a webhook
		// they are also posted, like dead letters (and runs going over a
		// cap: Runtime.onCapped).
		bc.OnChange = budgetAlerts(func(v any) { w.hook.Send(v) })
	}
	if w.dead, err = dlq.New(r.rdb, dc); err != nil {
		return nil, &ConfigError{err}
	}
	if w.ledger, err = ledger.New(r.rdb, r.ledgerConfig()); err != nil {
		return nil, &ConfigError{err}
	}
	if w.budgets, err = budget.New(r.rdb, bc); err != nil {
		return nil, &ConfigError{err}
	}
	w.brk = r.breakers
	if w.metrics, err = metrics.New(metrics.Config{Registerer: r.prom}); err != nil {
		return nil, err
	}
	if w.runs, err = r.Runs(); err != nil {
		return nil, err
	}
	if r.scheduled() {
		slog := log.With().Str("component", "scheduler").Logger()
		if w.sched, err = runs.NewScheduler(r.rdb, w.runs, r.runWfs, runs.SchedulerConfig{Logger: &slog}); err != nil {
			return nil, &ConfigError{err}
		}
	}
	wc := r.workerConfig()
	w.mws, w.obs = w.chain()
	wc.Middleware, wc.Observers = w.mws, w.obs
	w.wc = wc
	if w.queue, err = queue.NewWorker(r.rdb, r.reg, wc); err != nil {
		return nil, &ConfigError{err}
	}
	if err := metrics.RegisterHeld(r.prom, w.queue.Held); err != nil {
		return nil, err
	}
	if addr := r.cfg.Worker.MetricsAddr; addr != "" {
		if w.srv, err = metrics.Listen(addr, r.MetricsHandler()); err != nil {
			return nil, err
		}
		r.log.Info().Str("addr", w.srv.Addr().String()).Str("url", "http://"+w.srv.Addr().String()+metrics.Path).Msg("metrics listening")
	}
	r.warnSharedPauseQueues()
	r.warnMissingAPIKeys(lookupEnv)
	w.startLoops(ctx)
	r.worker.Store(w)
	return w, nil
}

// chain is the worker's chain after queue's built-ins, outermost first,
// and its observers, in one place:
//
//   - the ledger answers a repeated delivery of finished work (it is a
//     success) before anything after it could refuse or snooze it;
//   - the runs middleware renders a run step's payload and checks its
//     run's caps and state before the attempt;
//   - the breaker sits next to the handler it protects;
//   - the program's middleware last, closest to the handler;
//   - observers, in order, after the queue decided the attempt's outcome:
//     dead-letter capture, metrics, budget counting, the ledger's record of
//     a success (folded into asynq's completion where queue can), the
//     runs' record of the step (output, usage, the next step), then the
//     program's observers.
func (w *Worker) chain() (mws []jobs.Middleware, obs []jobs.Observer) {
	mws = append([]jobs.Middleware{w.ledger.Middleware(), w.runs.Middleware(), w.brk.Middleware()}, w.rt.opts.Middleware...)
	obs = append([]jobs.Observer{w.dead.Observer(), w.metrics.Observer(), w.budgets.Observer(), w.ledger.Observer(),
		w.runs.Observer()}, w.rt.opts.Observers...)
	return mws, obs
}

// Middleware returns the worker's chain after queue's built-ins, outermost
// first (for harnesses that run it on a queue.Worker of their own).
func (w *Worker) Middleware() []jobs.Middleware { return w.mws }

// Observers returns the worker's observers, in order (for harnesses that
// run them on a queue.Worker of their own).
func (w *Worker) Observers() []jobs.Observer { return w.obs }

// QueueConfig returns the queue.WorkerConfig the worker was built with,
// its chain and observers included (for harnesses such as agentq bench).
func (w *Worker) QueueConfig() queue.WorkerConfig { return w.wc }

// startLoops starts what runs beside the worker until Close.
func (w *Worker) startLoops(ctx context.Context) {
	lctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	w.stopLoops = stop
	run := func(f func(context.Context)) {
		w.loops.Add(1)
		go func() { defer w.loops.Done(); f(lctx) }()
	}
	run(w.dead.RunReconciler)
	run(w.budgets.Run)
	run(w.brk.Run)
	if w.sched != nil {
		log := w.rt.log
		run(func(ctx context.Context) {
			if err := w.sched.Run(ctx); err != nil && ctx.Err() == nil {
				log.Error().Err(err).Msg("run scheduler stopped")
			}
		})
	}
	if w.srv != nil {
		log := w.rt.log
		run(func(ctx context.Context) {
			if err := w.srv.Serve(ctx); err != nil {
				log.Error().Err(err).Msg("metrics server stopped")
			}
		})
	}
}

// Run waits for Redis as Runtime.WaitForRedis does (a configuration no
// retry fixes is an error at once), takes tasks until ctx ends, then shuts
// down gracefully (running steps get worker.shutdown_timeout) and closes
// the parts. Close from another goroutine also ends Run. ctx ending while
// Run waits for Redis is not an error.
func (w *Worker) Run(ctx context.Context) error {
	defer w.Close()
	r := w.rt
	// Close ends the wait too.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-w.closed:
			cancel()
		case <-wctx.Done():
		}
	}()
	if err := r.WaitForRedis(wctx); err != nil {
		if wctx.Err() != nil {
			return nil
		}
		return err
	}
	r.log.Info().Str("redis", queue.MaskURL(r.cfg.RedisURLOrDefault())).Int("concurrency", r.cfg.Worker.Concurrency).
		Interface("queues", workerQueues(r.cfg, r.runWfs)).Strs("kinds", r.reg.Kinds()).Msg("worker starting")
	if err := w.Start(); err != nil {
		select {
		case <-w.closed:
			return nil // Close won the race with the start
		default:
		}
		return err
	}
	select {
	case <-ctx.Done():
	case <-w.closed:
	}
	return nil
}

// Start starts taking tasks in the background; Close stops.
func (w *Worker) Start() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.closed:
		return errors.New("agentq: worker is closed")
	default:
	}
	if err := w.queue.Start(); err != nil {
		return err
	}
	w.started = true
	return nil
}

// Held returns the number of handlers still running after their attempt
// ended (see queue.Worker.Held).
func (w *Worker) Held() int { return w.queue.Held() }

// Close stops taking tasks (waiting for running steps) and then the parts,
// in order: the budgets', breakers' and metrics loops after a last flush of
// counted outcomes, the reconciler and the run scheduler, the ledger
// (flushed), and the alert webhook, which gets five seconds for queued
// alerts. Close is idempotent.
func (w *Worker) Close() {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.started {
			w.queue.Shutdown()
		}
		w.closeParts()
		close(w.closed)
	})
}

// closeParts stops what NewWorker built, in order; it tolerates a worker
// NewWorker did not finish.
func (w *Worker) closeParts() {
	if w.stopLoops != nil {
		w.stopLoops()
		w.loops.Wait()
	}
	if w.ledger != nil {
		w.ledger.Close()
	}
	if w.hook != nil {
		// The Runtime's webhook: alerts sent after this one (a run going
		// over a cap) are dropped, logged and counted.
		ctx, cancel := context.WithTimeout(context.Background(), alertsCloseTimeout)
		defer cancel()
		w.hook.Close(ctx)
	}
}
