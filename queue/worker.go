package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/jobs"
)

// Worker defaults.
const (
	// ConcurrencyDefault is the number of tasks a worker runs at once.
	ConcurrencyDefault = 10
	// PollIntervalDefault is how long an idle worker waits before looking
	// for work again. asynq's own default (1s) gives ~0.5s median pickup
	// latency; 10ms gives a p99 near 10ms for ~100 cheap polls/s per queue
	// when idle (the first loop; extra loops poll 10 times less often).
	PollIntervalDefault = 10 * time.Millisecond
	// DelayedCheckIntervalDefault is how often due retries and scheduled
	// tasks are moved to their queue.
	DelayedCheckIntervalDefault = time.Second
	// ShutdownTimeoutDefault is how long a shutdown waits for running tasks.
	ShutdownTimeoutDefault = 30 * time.Second
)

// Decide decides what becomes of one attempt of s that ended with err, under
// the retry policy p with randN as its jitter: the one place where agentq's
// retry semantics live. A snooze never spends an attempt; a permanent error
// dead-letters at once; an attempt the queue gave up on while it ran is
// abandoned; a delivery with no attempt left (asynq ended the last one
// itself) is dead, class lease_expired; a failure asynq decided by itself
// (its timeout backstop, a lease expiry) is retried unless asynq has no
// retry left for it; any other failure retries until the step's attempts
// are spent.
//
// The Result has Outcome, Class, Err, Message (err's text, unmasked: the
// worker masks it with WorkerConfig.Redact) and, for every outcome but
// success and dead, Delay: the policy's delay before the next attempt, a
// requested delay (jobs.RetryAfter, a tool's Retry-After) as its floor, a
// snooze's exactly. Started and Duration are the caller's. The worker calls
// it once per attempt and hands the Result to WorkerConfig.Observers; no
// other part decides an outcome again.
func Decide(s *jobs.Step, err error, p jobs.RetryPolicy, randN func(n int64) int64) jobs.Result {
	var r jobs.Result
	decide(&r, s, err, p, randN)
	return r
}

func decide(r *jobs.Result, s *jobs.Step, err error, p jobs.RetryPolicy, randN func(n int64) int64) {
	r.Err = err
	if err == nil {
		r.Outcome, r.Class = jobs.OutcomeSuccess, jobs.ClassNone
		return
	}
	qe, byQueue := err.(*endedByQueue)
	if byQueue {
		err = qe.err
		r.Err = err
	}
	r.Message = err.Error()
	r.Class = jobs.Classify(err)
	if byQueue && errors.Is(err, asynq.ErrLeaseExpired) {
		r.Class = jobs.ClassLeaseExpired
	}
	switch {
	case byQueue && qe.spent:
		r.Outcome = jobs.OutcomeDead
	case byQueue:
		r.Outcome = jobs.OutcomeRetry
	case r.Class == jobs.ClassAbandoned:
		r.Outcome = jobs.OutcomeAbandoned
	case r.Class == jobs.ClassLeaseExpired && s.Attempt > s.MaxAttempts:
		r.Outcome = jobs.OutcomeDead
	case r.Class == jobs.ClassSnooze:
		r.Outcome = jobs.OutcomeSnooze
	case r.Class == jobs.ClassPermanent, r.Class == jobs.ClassCapExceeded, s.LastAttempt():
		r.Outcome = jobs.OutcomeDead
	default:
		r.Outcome = jobs.OutcomeRetry
	}
	if r.Outcome != jobs.OutcomeDead {
		r.Delay = p.Delay(s.Attempt-1, err, randN)
	}
}

// endedByQueue is a failure asynq decided by itself, outside the chain (its
// timeout backstop, a lease expiry): asynq retries the task unless spent,
// no retry left, whatever err's class.
type endedByQueue struct {
	err   error
	spent bool
}

func (e *endedByQueue) Error() string { return e.err.Error() }
func (e *endedByQueue) Unwrap() error { return e.err }

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	// Concurrency is how many tasks run at once. Default ConcurrencyDefault.
	Concurrency int
	// Queues maps queue names to priorities. Default {"default": 1}.
	Queues map[string]int
	// StrictPriority drains higher-priority queues first. Default false.
	StrictPriority bool
	// PollInterval is the idle wait between looks for work.
	// Default PollIntervalDefault (10ms).
	PollInterval time.Duration
	// DelayedCheckInterval is how often due retries are moved to their
	// queue. Default DelayedCheckIntervalDefault (1s).
	DelayedCheckInterval time.Duration
	// ShutdownTimeout bounds a graceful shutdown. Default 30s.
	ShutdownTimeout time.Duration
	// Retry is the global retry policy. Default jobs' defaults.
	Retry jobs.RetryPolicy
	// Workflows give per-workflow retry policies. Default none.
	Workflows map[string]Workflow
	// Logger receives one line per attempt and asynq's own logs.
	// Default: no logging.
	Logger *zerolog.Logger
	// Middleware wraps every step after agentq's built-ins (panic
	// recovery, timeout); the first given is the outermost. Default none.
	Middleware []jobs.Middleware
	// Observers receive every decided attempt, in order: after the chain
	// returned and Decide decided its Result, before the attempt's log line
	// and before asynq is told. They also receive the failures asynq
	// decides by itself outside the chain (its timeout backstop: a retry, or
	// dead when no retry is left; Started is zero, and Delay is the policy's
	// while asynq draws its own jitter) and the lease-expired
	// retries and deaths the lease sweeper moves (Started zero); an attempt
	// whose lease expired under this worker is reported by the sweeper that
	// moves it, not here (with the sweeper off, asynq's recoverer moves it
	// and nobody reports it; the dead-letter reconciler finds dead ones in
	// asynq's archive). An attempt asynq ended while it ran is also handed
	// over, as OutcomeAbandoned, once its handler returns. A panicking
	// observer is logged and the others still run. Default none.
	Observers []jobs.Observer
	// Redact masks secrets in error text before it reaches a log line or
	// asynq's stored last error (what asynqmon shows). Default: none, the
	// handlers' own errors are trusted.
	Redact func(string) string
	// RandN returns a uniform int64 in [0, n); it decides backoff jitter.
	// Default math/rand/v2's Int64N.
	RandN func(n int64) int64
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Recover configures the lease sweeper (recover.go). Default
	// RecoverConfig's defaults.
	Recover RecoverConfig
	// HeldAfter is how long a handler may run on after asynq ended its
	// attempt before it is logged and counted as held (Worker.Held): it
	// ignores its context and keeps its goroutine until it returns.
	// Default HeldAfterDefault (5s).
	HeldAfter time.Duration
	// Loops is how many dequeue loops (asynq servers) share Concurrency
	// (loops.go); at most Concurrency. asynqmon shows each as a server with
	// the same host and pid. Default LoopsDefault(Concurrency): twice
	// GOMAXPROCS, at least 2, at most 8 and at most Concurrency.
	Loops int
	// CompletionFold is "auto" to commit completion writes (the ledger's
	// success record) in asynq's own completion script where that is exact
	// (complete.go), or "off" to write them in a round trip of their own
	// before it. Default "auto".
	CompletionFold string
	// UnknownKindWait is how long a task whose kind this worker has no
	// handler for (a newer version's kind during a rolling deploy) is
	// snoozed, without spending an attempt, so that a worker that has one
	// takes it; counted from when this worker first saw the task, after it
	// the task is dead-lettered as permanent (unknown.go). Negative
	// dead-letters such a task at once. Default UnknownKindWaitDefault (10m).
	UnknownKindWait time.Duration
}

func (c WorkerConfig) withDefaults() WorkerConfig {
	if c.Concurrency == 0 {
		c.Concurrency = ConcurrencyDefault
	}
	if len(c.Queues) == 0 {
		c.Queues = map[string]int{QueueDefault: 1}
	}
	if c.PollInterval == 0 {
		c.PollInterval = PollIntervalDefault
	}
	if c.DelayedCheckInterval == 0 {
		c.DelayedCheckInterval = DelayedCheckIntervalDefault
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = ShutdownTimeoutDefault
	}
	c.Retry = c.Retry.Merge(jobs.RetryPolicy{
		MaxAttempts: jobs.MaxAttemptsDefault, Base: jobs.RetryBaseDefault, Max: jobs.RetryMaxDefault,
	})
	if c.Logger == nil {
		nop := zerolog.Nop()
		c.Logger = &nop
	}
	if c.RandN == nil {
		c.RandN = rand.Int64N
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Recover = c.Recover.withDefaults()
	if c.HeldAfter == 0 {
		c.HeldAfter = HeldAfterDefault
	}
	if c.UnknownKindWait == 0 {
		c.UnknownKindWait = UnknownKindWaitDefault
	}
	return c.loopsWithDefaults()
}

func (c WorkerConfig) validate() error {
	if c.Concurrency < 1 {
		return fmt.Errorf("concurrency must be at least 1, got %d", c.Concurrency)
	}
	for q, p := range c.Queues {
		if err := validQueueName(q); err != nil {
			return fmt.Errorf("queues: %w", err)
		}
		if p < 1 {
			return fmt.Errorf("queues: priority of %q must be at least 1, got %d", q, p)
		}
	}
	for name, d := range map[string]time.Duration{
		"poll_interval": c.PollInterval, "delayed_check_interval": c.DelayedCheckInterval, "shutdown_timeout": c.ShutdownTimeout,
		"held_after": c.HeldAfter,
	} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive, got %v", name, d)
		}
	}
	if err := c.Retry.Validate(); err != nil {
		return fmt.Errorf("retry: %w", err)
	}
	if err := c.Recover.validate(); err != nil {
		return err
	}
	for name, wf := range c.Workflows {
		if err := wf.Retry.Merge(c.Retry).Validate(); err != nil {
			return fmt.Errorf("workflows.%s.retry: %w", name, err)
		}
	}
	return c.validateLoops()
}

// Worker runs tasks from Redis through the middleware chain and the
// registry's handlers.
type Worker struct {
	cfg   WorkerConfig
	chain jobs.Handler
	log   zerolog.Logger
	sweep *sweeper
	held  *heldHandlers
	// unknown snoozes tasks of kinds this worker has no handler for.
	unknown *unknownKinds

	srvs     []*asynq.Server // one per dequeue loop (loops.go)
	complete *completions    // the completion fold (complete.go)
}

// NewWorker returns a Worker on rdb dispatching to reg. The caller keeps
// ownership of rdb.
func NewWorker(rdb redis.UniversalClient, reg *Registry, cfg WorkerConfig) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	w := &Worker{cfg: cfg, log: *cfg.Logger}
	w.held = &heldHandlers{after: cfg.HeldAfter, log: w.log}
	// Panics are recovered twice: next to the handler, so that every
	// middleware sees a handler panic as a *jobs.PanicError, and outermost,
	// for panics in middleware itself.
	mws := append([]jobs.Middleware{w.recoverPanic, enforceTimeout}, cfg.Middleware...)
	w.unknown = newUnknownKinds(cfg, w.log)
	w.chain = jobs.Chain(w.recoverPanic(guardAttempt(w.unknown.middleware(reg.Handler()))), mws...)
	w.complete = newCompletions(rdb, w.log, cfg.CompletionFold != CompletionFoldOff)
	w.srvs = w.newServers(rdb)
	w.sweep = newSweeper(rdb, cfg, w.retryDelay)
	w.sweep.observe = w.sweptResult
	return w, nil
}

// Start starts processing in the background.
func (w *Worker) Start() error {
	if err := w.startServers(); err != nil {
		return err
	}
	w.sweep.start()
	w.complete.start()
	return nil
}

// Shutdown stops taking tasks and waits up to ShutdownTimeout for running
// ones; unfinished tasks go back to their queue.
func (w *Worker) Shutdown() {
	w.sweep.shutdown()
	shutdownAll(w.srvs)
	w.complete.stop()
}

// Run processes tasks until ctx is done, then shuts down gracefully.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	w.Shutdown()
	return nil
}

// ProcessTask runs one asynq task through the chain, decides the attempt's
// outcome once (Decide), hands the Result to the observers, logs one line
// and maps the outcome onto asynq: success, retry with the decided delay,
// snooze (IsFailure false) or archive (SkipRetry). It is exported for
// benchmarks and tests that drive the chain without a server.
func (w *Worker) ProcessTask(ctx context.Context, t *asynq.Task) error {
	a := &attempt{}
	s := &a.step
	fillStep(ctx, t, s)
	defer w.held.watch(ctx, s).returned()
	start := w.cfg.Now()
	err := w.chain.ProcessStep(ctx, s)
	if ctx.Err() != nil && jobs.Classify(err) != jobs.ClassAbandoned {
		// asynq gave up on this attempt (its timeout backstop, a lease
		// expiry or a shutdown) and has already retried or requeued the
		// task: what the chain returned decides nothing.
		err = &jobs.AbandonedError{Cause: context.Cause(ctx)}
	}
	// The one place an attempt's Result is built.
	r := &a.res
	w.decide(r, s, err)
	r.Started, r.Duration = start, w.cfg.Now().Sub(start)
	r.Usage, r.Output = s.Usage(), s.Output()
	if r.Outcome == jobs.OutcomeSuccess {
		if fold := w.atCompletion(a); fold != nil {
			r.SetAtCompletion(fold)
		}
	}
	w.observe(ctx, s, r)
	w.logResult(ctx, s, r)
	if a.folded {
		w.complete.release(s.Queue, s.TaskID) // the completion fold's grace starts now
	}
	return a.toAsynq()
}

// attempt is what one attempt allocates, in one allocation: its step, its
// Result and the error that carries the Result to asynq's hooks.
type attempt struct {
	step   jobs.Step
	res    jobs.Result
	oe     outcomeError
	folded bool // a write rides on asynq's completion of this attempt
}

// toAsynq is the only place that translates an outcome to asynq: nil for
// a success, else the attempt's Result carried by an *outcomeError.
func (a *attempt) toAsynq() error {
	if a.res.Outcome == jobs.OutcomeSuccess {
		return nil
	}
	a.oe.r = &a.res
	return &a.oe
}

// decide is Decide with the step's retry policy, and Message masked.
func (w *Worker) decide(r *jobs.Result, s *jobs.Step, err error) {
	if err == nil {
		decide(r, s, nil, jobs.RetryPolicy{}, nil) // a success needs no policy
		return
	}
	decide(r, s, err, w.policyForHeaders(s.Headers), w.cfg.RandN)
	r.Message = w.redact(r.Message)
}

// observe hands r to every observer in order.
func (w *Worker) observe(ctx context.Context, s *jobs.Step, r *jobs.Result) {
	for _, o := range w.cfg.Observers {
		w.observeOne(ctx, o, s, r)
	}
}

func (w *Worker) observeOne(ctx context.Context, o jobs.Observer, s *jobs.Step, r *jobs.Result) {
	defer func() {
		if v := recover(); v != nil {
			w.log.Error().Str("task_id", s.TaskID).Str("kind", s.Kind).Str("outcome", string(r.Outcome)).
				Str("panic", fmt.Sprint(v)).Str("stack", string(debug.Stack())).Msg("observer panicked")
		}
	}()
	o.Observe(ctx, s, r)
}

// Held returns how many handlers are still running although asynq ended
// their attempt HeldAfter ago or more: they ignore their context, and each
// holds a goroutine (and what it allocated) until it returns.
func (w *Worker) Held() int { return int(w.held.n.Load()) }

// fillStep fills in s, the Step of one attempt, from asynq's task and
// context.
func fillStep(ctx context.Context, t *asynq.Task, s *jobs.Step) {
	h := t.Headers()
	*s = jobs.Step{
		Kind:     t.Type(),
		Payload:  t.Payload(),
		Headers:  h,
		Workflow: h[jobs.HeaderWorkflow],
		RunID:    h[jobs.HeaderRunID],
		Name:     h[jobs.HeaderStep],
		Key:      h[jobs.HeaderKey],
		ReplayOf: h[jobs.HeaderReplayOf],
	}
	s.TaskID, _ = asynq.GetTaskID(ctx)
	s.Queue, _ = asynq.GetQueueName(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	s.Attempt = retried + 1
	// Tasks agentq enqueues carry one reserve retry (see Client.prepare), so
	// asynq's max retry is the number of attempts. A task a plain asynq
	// client enqueued with MaxRetry(n) is read the same way: n attempts
	// (one for n = 0), not asynq's n+1, so that a snooze on its last
	// attempt has a retry left too (README, "Tasks from a plain asynq
	// client"; TestPlainAsynqMaxRetry).
	s.MaxAttempts = max(maxRetry, 1)
}

func (w *Worker) redact(s string) string {
	if w.cfg.Redact == nil {
		return s
	}
	return w.cfg.Redact(s)
}

// outcomeError carries an attempt's Result to asynq's hooks
// (RetryDelayFunc, IsFailure, ErrorHandler); its text, the masked Message,
// is what asynq stores as the task's last error.
type outcomeError struct{ r *jobs.Result }

func (e *outcomeError) Error() string { return e.r.Message }
func (e *outcomeError) Unwrap() []error {
	if e.r.Outcome == jobs.OutcomeDead {
		return []error{e.r.Err, asynq.SkipRetry}
	}
	return []error{e.r.Err}
}

func (w *Worker) policyForHeaders(h map[string]string) jobs.RetryPolicy {
	p := policyFor(w.cfg.Retry, w.cfg.Workflows, h[jobs.HeaderWorkflow])
	if v := h[jobs.HeaderRetryBase]; v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			p.Base = d
		}
	}
	if v := h[jobs.HeaderRetryMax]; v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			p.Max = d
		}
	}
	if p.Max < p.Base {
		p.Max = p.Base
	}
	return p
}

// retryDelay is asynq's RetryDelayFunc: it uses the delay decided with the
// outcome, or computes one for failures that never passed through the chain
// (asynq's own timeout backstop, lease expiry): the same policy, its own
// jitter.
func (w *Worker) retryDelay(n int, err error, t *asynq.Task) time.Duration {
	if oe, ok := err.(*outcomeError); ok {
		return oe.r.Delay
	}
	return w.policyForHeaders(t.Headers()).Delay(n, err, w.cfg.RandN)
}

// asynqRetryDelay is asynq's RetryDelayFunc: retryDelay, with a delay the
// error asks for (a tool's Retry-After, jobs.RetryAfter) lengthened to what
// asynq needs to honour it. asynq schedules a retry by the whole second (it
// stores the due time's Unix seconds and moves a task once the current Unix
// second reaches them), so a delay d lands anywhere in (d-1s, d]: a
// Retry-After of 1s came back after 0.2s and met another 429.
func (w *Worker) asynqRetryDelay(n int, err error, t *asynq.Task) time.Duration {
	d := w.retryDelay(n, err, t)
	if _, ok := jobs.RequestedDelay(err); !ok || jobs.Classify(err) == jobs.ClassSnooze {
		return d
	}
	// asynq adds the delay to its own time.Now, not to the injected clock.
	return notBeforeWholeSecond(time.Now(), d)
}

// notBeforeWholeSecond returns the smallest delay d' >= d such that a task
// due at the whole second of now+d' is not due before now+d.
func notBeforeWholeSecond(now time.Time, d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	due := now.Add(d)
	sec := time.Unix(due.Unix(), 0)
	if sec.Before(due) {
		sec = sec.Add(time.Second)
	}
	return sec.Sub(now)
}

// isFailure is asynq's IsFailure: a snooze spends no attempt.
func isFailure(err error) bool { return jobs.Classify(err) != jobs.ClassSnooze }

// logResult writes the attempt's one log line. Its fields are always
// task_id, kind, queue, workflow, run_id, step (the run step's name, "" when
// the task is in no run), attempt, max_attempts and outcome; duration_ms
// when the worker timed the attempt; tokens_in, tokens_out, cost_usd and
// model when the attempt reported usage; class and error (or cause, for an
// abandoned attempt) on failure; retry_in_ms for a retry or snooze.
func (w *Worker) logResult(ctx context.Context, s *jobs.Step, r *jobs.Result) {
	var ev *zerolog.Event
	switch r.Outcome {
	case jobs.OutcomeSuccess, jobs.OutcomeSnooze:
		ev = w.log.Info()
	case jobs.OutcomeRetry, jobs.OutcomeAbandoned:
		ev = w.log.Warn()
	default:
		ev = w.log.Error()
	}
	if !ev.Enabled() {
		return
	}
	ev = ev.Str("task_id", s.TaskID).Str("kind", s.Kind).Str("queue", s.Queue).
		Str("workflow", s.Workflow).Str("run_id", s.RunID).Str("step", s.Name).
		Int("attempt", s.Attempt).Int("max_attempts", s.MaxAttempts)
	if !r.Started.IsZero() {
		ev = ev.Int64("duration_ms", r.Duration.Milliseconds())
	}
	if !r.Usage.IsZero() {
		// What the attempt spent, whatever its outcome: a failed model
		// call's tokens are real cost.
		ev = ev.Int64("tokens_in", r.Usage.TokensIn).Int64("tokens_out", r.Usage.TokensOut).
			Float64("cost_usd", r.Usage.CostUSD).Str("model", r.Usage.Model)
	}
	ev = ev.Str("outcome", string(r.Outcome))
	switch {
	case r.Outcome == jobs.OutcomeAbandoned && ctx.Err() != nil:
		ev = ev.Str("cause", context.Cause(ctx).Error())
	case r.Err != nil:
		ev = ev.Str("class", string(r.Class)).Str("error", r.Message)
	}
	if r.Outcome == jobs.OutcomeRetry || r.Outcome == jobs.OutcomeSnooze {
		ev = ev.Int64("retry_in_ms", r.Delay.Milliseconds())
	}
	ev.Msg("attempt")
}

// backstop is asynq's ErrorHandler. Errors that went through the chain are
// already decided, observed and logged. It decides, observes and logs the
// failures asynq decided by itself (its timeout backstop), and logs a lease
// expiry, which the lease sweeper that moves the task observes. Tasks that
// asynq's recoverer moves after a crash reach neither; the dead-letter
// reconciler finds the dead ones in the archive.
func (w *Worker) backstop(ctx context.Context, t *asynq.Task, err error) {
	if _, ok := err.(*outcomeError); ok {
		return
	}
	a := &attempt{}
	s := &a.step
	fillStep(ctx, t, s)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	r := &a.res
	w.decide(r, s, &endedByQueue{err: err, spent: s.Attempt > maxRetry})
	if r.Class != jobs.ClassLeaseExpired {
		w.observe(ctx, s, r)
	}
	w.logResult(ctx, s, r)
}

// sweptResult decides, as asynq's own failure, the attempt of a task the
// lease sweeper moved (to retry after delay, or to the archive when spent)
// and hands it to the observers; the sweeper logs it.
func (w *Worker) sweptResult(ctx context.Context, s *jobs.Step, spent bool, delay time.Duration) {
	if len(w.cfg.Observers) == 0 {
		return
	}
	var r jobs.Result
	w.decide(&r, s, &endedByQueue{err: asynq.ErrLeaseExpired, spent: spent})
	if r.Outcome == jobs.OutcomeRetry {
		r.Delay = delay // what the sweeper wrote
	}
	w.observe(ctx, s, &r)
}

// guardAttempt sits next to the handler, so every middleware sees what it
// decides:
//   - a delivery with no attempt left (asynq ended the last attempt itself
//     and spent the reserve retry) ends as dead, class lease_expired,
//     without running the handler again;
//   - an attempt asynq gave up on while it ran (its context ended, and not
//     by the attempt timeout agentq enforces) returns *jobs.AbandonedError,
//     which Decide maps to OutcomeAbandoned.
func guardAttempt(next jobs.Handler) jobs.Handler {
	return jobs.HandlerFunc(func(ctx context.Context, s *jobs.Step) error {
		if s.Attempt > s.MaxAttempts {
			return &jobs.AttemptsSpentError{MaxAttempts: s.MaxAttempts}
		}
		err := next.ProcessStep(ctx, s)
		if ctx.Err() != nil && !errors.Is(context.Cause(ctx), errAttemptTimeout) {
			cause := context.Cause(ctx)
			return &jobs.AbandonedError{Cause: cause}
		}
		return err
	})
}

// errAttemptTimeout is the cause enforceTimeout gives its context.
var errAttemptTimeout = errors.New("attempt timed out")

// recoverPanic turns a handler panic into a *jobs.PanicError with the stack
// kept out of the error text (it goes to the log at debug level).
func (w *Worker) recoverPanic(next jobs.Handler) jobs.Handler {
	return jobs.HandlerFunc(func(ctx context.Context, s *jobs.Step) (err error) {
		defer func() {
			if r := recover(); r != nil {
				w.log.Debug().Str("task_id", s.TaskID).Str("stack", string(debug.Stack())).Msg("handler panic")
				err = &jobs.PanicError{Value: r}
			}
		}()
		return next.ProcessStep(ctx, s)
	})
}

// enforceTimeout applies the task's attempt timeout to the context, so a
// handler that honours its context ends inside the chain with a timeout
// error rather than being abandoned by asynq's backstop.
func enforceTimeout(next jobs.Handler) jobs.Handler {
	return jobs.HandlerFunc(func(ctx context.Context, s *jobs.Step) error {
		d, err := time.ParseDuration(s.Headers[jobs.HeaderTimeout])
		if err != nil || d <= 0 {
			return next.ProcessStep(ctx, s)
		}
		ctx, cancel := context.WithTimeoutCause(ctx, d, fmt.Errorf("%w after %v: %w", errAttemptTimeout, d, context.DeadlineExceeded))
		defer cancel()
		err = next.ProcessStep(ctx, s)
		if err != nil && ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) && jobs.Classify(err) != jobs.ClassPermanent {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return err
	})
}

// asynqLogger sends asynq's own logs through zerolog.
type asynqLogger struct{ l zerolog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug().Msg(joinArgs(args)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info().Msg(joinArgs(args)) }
func (a asynqLogger) Warn(args ...any) {
	msg := joinArgs(args)
	if strings.HasPrefix(msg, "Retry exhausted for task") {
		return // the attempt line already says "dead"
	}
	a.l.Warn().Msg(msg)
}
func (a asynqLogger) Error(args ...any) { a.l.Error().Msg(joinArgs(args)) }
func (a asynqLogger) Fatal(args ...any) { a.l.Fatal().Msg(joinArgs(args)) }

func joinArgs(args []any) string { return strings.TrimSpace(fmt.Sprint(args...)) }

func asynqLevel(l zerolog.Level) asynq.LogLevel {
	switch {
	case l <= zerolog.DebugLevel:
		return asynq.DebugLevel
	case l == zerolog.InfoLevel:
		return asynq.InfoLevel
	case l == zerolog.WarnLevel:
		return asynq.WarnLevel
	case l == zerolog.ErrorLevel:
		return asynq.ErrorLevel
	}
	return asynq.FatalLevel
}
