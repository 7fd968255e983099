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
	// latency; 10ms gives a p99 near 10ms for ~100 cheap polls/s when idle.
	PollIntervalDefault = 10 * time.Millisecond
	// DelayedCheckIntervalDefault is how often due retries and scheduled
	// tasks are moved to their queue.
	DelayedCheckIntervalDefault = time.Second
	// ShutdownTimeoutDefault is how long a shutdown waits for running tasks.
	ShutdownTimeoutDefault = 30 * time.Second
)

// Outcome is what became of one attempt.
type Outcome string

// Outcomes of an attempt.
const (
	OutcomeSuccess Outcome = "success"
	OutcomeRetry   Outcome = "retry"
	OutcomeSnooze  Outcome = "snooze"
	OutcomeDead    Outcome = "dead"
	// OutcomeAbandoned is an attempt asynq gave up on while it ran (a
	// shutdown requeued it, or asynq's own timeout or a lease expiry ended
	// it): asynq has decided what happens next, so middleware must count it
	// as neither success nor failure.
	OutcomeAbandoned Outcome = "abandoned"
)

// Decide maps an attempt's error onto its outcome and class. It is the one
// place where agentq's retry semantics are decided: a snooze never spends an
// attempt, a permanent error dead-letters at once, and any other failure
// retries until the step's attempts are spent.
func Decide(s *jobs.Step, err error) (Outcome, jobs.Class) {
	class := jobs.Classify(err)
	switch {
	case err == nil:
		return OutcomeSuccess, class
	case class == jobs.ClassAbandoned:
		return OutcomeAbandoned, class
	case class == jobs.ClassLeaseExpired && s.Attempt > s.MaxAttempts:
		return OutcomeDead, class
	case class == jobs.ClassSnooze:
		return OutcomeSnooze, class
	case class == jobs.ClassPermanent, s.LastAttempt():
		return OutcomeDead, class
	}
	return OutcomeRetry, class
}

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
	// Middleware wraps every step after agentq's built-ins (logging,
	// panic recovery, timeout); the first given is the outermost.
	// Default none.
	Middleware []jobs.Middleware
	// OnDead is called once when a step is dead-lettered, with the final
	// error and its class. Default none.
	OnDead func(ctx context.Context, s *jobs.Step, err error, class jobs.Class)
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
	// the same host and pid. Default GOMAXPROCS+1, at least 2, at most 8
	// and at most Concurrency.
	Loops int
	// CompletionFold is "auto" to commit completion writes (the ledger's
	// success record) in asynq's own completion script where that is exact
	// (complete.go), or "off" to write them in a round trip of their own
	// before it. Default "auto".
	CompletionFold string
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
	// middleware sees a handler panic as a *jobs.PanicError, and below the
	// attempt log, for panics in middleware itself.
	mws := append([]jobs.Middleware{w.logAttempt, w.recoverPanic, enforceTimeout}, cfg.Middleware...)
	w.chain = jobs.Chain(w.recoverPanic(guardAttempt(reg.Handler())), mws...)
	w.complete = newCompletions(rdb, w.log, cfg.CompletionFold != CompletionFoldOff)
	w.srvs = w.newServers(rdb)
	w.sweep = newSweeper(rdb, cfg, w.retryDelay)
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

// ProcessTask runs one asynq task through the chain and maps the outcome
// onto asynq: success, retry with our delay, snooze (IsFailure false) or
// archive (SkipRetry). It is exported for benchmarks and tests that drive
// the chain without a server.
func (w *Worker) ProcessTask(ctx context.Context, t *asynq.Task) error {
	s := stepFrom(ctx, t)
	defer w.held.track(ctx, s)()
	err := w.chain.ProcessStep(ctx, s)
	return w.toAsynq(s, err)
}

// Held returns how many handlers are still running although asynq ended
// their attempt HeldAfter ago or more: they ignore their context, and each
// holds a goroutine (and what it allocated) until it returns.
func (w *Worker) Held() int { return int(w.held.n.Load()) }

// stepFrom builds the Step of one attempt from asynq's task and context.
func stepFrom(ctx context.Context, t *asynq.Task) *jobs.Step {
	h := t.Headers()
	s := &jobs.Step{
		Kind:     t.Type(),
		Payload:  t.Payload(),
		Headers:  h,
		Workflow: h[jobs.HeaderWorkflow],
		RunID:    h[jobs.HeaderRunID],
		Key:      h[jobs.HeaderKey],
		ReplayOf: h[jobs.HeaderReplayOf],
	}
	s.TaskID, _ = asynq.GetTaskID(ctx)
	s.Queue, _ = asynq.GetQueueName(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	s.Attempt = retried + 1
	// Tasks agentq enqueues carry one reserve retry (see Client.prepare), so
	// asynq's max retry is the number of attempts.
	s.MaxAttempts = max(maxRetry, 1)
	return s
}

func (w *Worker) redact(s string) string {
	if w.cfg.Redact == nil {
		return s
	}
	return w.cfg.Redact(s)
}

// outcomeError carries the decision to asynq's hooks.
type outcomeError struct {
	err     error
	msg     string // err's text, redacted: asynq stores it as the last error
	outcome Outcome
	delay   time.Duration
}

func (e *outcomeError) Error() string { return e.msg }
func (e *outcomeError) Unwrap() []error {
	if e.outcome == OutcomeDead {
		return []error{e.err, asynq.SkipRetry}
	}
	return []error{e.err}
}

// toAsynq is the only place that translates jobs' outcomes to asynq.
func (w *Worker) toAsynq(s *jobs.Step, err error) error {
	if err == nil {
		return nil
	}
	var oe *outcomeError
	if errors.As(err, &oe) {
		return oe
	}
	outcome, _ := Decide(s, err)
	oe = &outcomeError{err: err, msg: w.redact(err.Error()), outcome: outcome}
	if outcome != OutcomeDead {
		oe.delay = w.policyForHeaders(s.Headers).Delay(s.Attempt-1, err, w.cfg.RandN)
	}
	return oe
}

func (w *Worker) policyForHeaders(h map[string]string) jobs.RetryPolicy {
	p := policyFor(w.cfg.Retry, w.cfg.Workflows, h[jobs.HeaderWorkflow])
	if d, err := time.ParseDuration(h[jobs.HeaderRetryBase]); err == nil && d > 0 {
		p.Base = d
	}
	if d, err := time.ParseDuration(h[jobs.HeaderRetryMax]); err == nil && d > 0 {
		p.Max = d
	}
	if p.Max < p.Base {
		p.Max = p.Base
	}
	return p
}

// retryDelay is asynq's RetryDelayFunc: it uses the delay decided with the
// outcome, or computes one for failures that never passed through the chain
// (asynq's own timeout backstop, lease expiry).
func (w *Worker) retryDelay(n int, err error, t *asynq.Task) time.Duration {
	var oe *outcomeError
	if errors.As(err, &oe) {
		return oe.delay
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

// logAttempt is the outermost middleware: one structured line per attempt,
// and the OnDead hook for a step that ends dead.
func (w *Worker) logAttempt(next jobs.Handler) jobs.Handler {
	return jobs.HandlerFunc(func(ctx context.Context, s *jobs.Step) error {
		start := w.cfg.Now()
		err := next.ProcessStep(ctx, s)
		if ctx.Err() != nil {
			// asynq gave up on this attempt (its timeout backstop, a lease
			// expiry or a shutdown) and has already retried or requeued the
			// task: what the handler returned decides nothing.
			w.log.Warn().Str("task_id", s.TaskID).Str("kind", s.Kind).Str("queue", s.Queue).
				Str("workflow", s.Workflow).Str("run_id", s.RunID).Int("attempt", s.Attempt).
				Int64("duration_ms", w.cfg.Now().Sub(start).Milliseconds()).Str("outcome", "abandoned").
				Str("cause", context.Cause(ctx).Error()).Msg("attempt")
			return err
		}
		outcome, class := Decide(s, err)
		var ev *zerolog.Event
		switch outcome {
		case OutcomeSuccess, OutcomeSnooze:
			ev = w.log.Info()
		case OutcomeRetry:
			ev = w.log.Warn()
		default:
			ev = w.log.Error()
		}
		if ev.Enabled() {
			ev = ev.Str("task_id", s.TaskID).Str("kind", s.Kind).Str("queue", s.Queue).
				Str("workflow", s.Workflow).Str("run_id", s.RunID).
				Int("attempt", s.Attempt).Int("max_attempts", s.MaxAttempts).
				Int64("duration_ms", w.cfg.Now().Sub(start).Milliseconds()).
				Str("outcome", string(outcome))
			if err != nil {
				ev = ev.Str("class", string(class)).Str("error", w.redact(err.Error()))
			}
		}
		if outcome == OutcomeRetry || outcome == OutcomeSnooze {
			oe := w.toAsynq(s, err).(*outcomeError)
			if ev.Enabled() {
				ev = ev.Int64("retry_in_ms", oe.delay.Milliseconds())
			}
			ev.Msg("attempt")
			return oe
		}
		ev.Msg("attempt")
		if outcome == OutcomeDead && w.cfg.OnDead != nil {
			w.cfg.OnDead(ctx, s, err, class)
		}
		return err
	})
}

// backstop is asynq's ErrorHandler. Errors that went through the chain are
// already logged; it logs the failures asynq decided by itself (its timeout
// backstop, a lease expiry) and reports a dead one to OnDead. Tasks that
// asynq's recoverer archives after a crash reach neither; the dead-letter
// reconciler finds those in the archive.
func (w *Worker) backstop(ctx context.Context, t *asynq.Task, err error) {
	var oe *outcomeError
	if errors.As(err, &oe) {
		return
	}
	s := stepFrom(ctx, t)
	class := jobs.Classify(err)
	if errors.Is(err, asynq.ErrLeaseExpired) {
		class = jobs.ClassLeaseExpired
	}
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	outcome := OutcomeRetry
	if s.Attempt > maxRetry {
		outcome = OutcomeDead
	}
	w.log.Warn().Str("task_id", s.TaskID).Str("kind", s.Kind).Str("queue", s.Queue).
		Str("workflow", s.Workflow).Str("run_id", s.RunID).Int("attempt", s.Attempt).Int("max_attempts", s.MaxAttempts).
		Str("outcome", string(outcome)).Str("class", string(class)).Str("error", w.redact(err.Error())).Msg("attempt")
	if outcome == OutcomeDead && w.cfg.OnDead != nil {
		w.cfg.OnDead(ctx, s, err, class)
	}
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
