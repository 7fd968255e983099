// Package bench owns `agentq bench`: it measures raw asynq and agentq side by
// side on the same Redis, so that the cost of agentq's layer (payload
// validation, idempotency keys, the middleware chain, the per-attempt log
// line) is a number rather than a guess. It measures enqueue and processing
// throughput, the Redis commands each task costs, and pickup latency at a
// steady rate.
//
// Run flushes the database it is given before every phase and resets the
// server's command statistics: point it at a scratch Redis, never at one
// that holds data.
package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/logging"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// Options defaults.
const (
	// TasksDefault is the number of tasks per throughput phase.
	TasksDefault = 20000
	// RateDefault is the steady enqueue rate of the latency phase, tasks/s.
	RateDefault = 500
	// LatencyForDefault is how long the latency phase enqueues.
	LatencyForDefault = 5 * time.Second
	// ConcurrencyDefault is the worker concurrency of both systems.
	ConcurrencyDefault = queue.ConcurrencyDefault
	// EnqueuersDefault is the number of goroutines that enqueue at once.
	EnqueuersDefault = 8
)

// asynqTaskCheckIntervalDefault is asynq's own TaskCheckInterval, used when
// its Config leaves the field zero (asynq does not export it).
const asynqTaskCheckIntervalDefault = time.Second

// payload is the noop task's payload for both systems.
var payload = []byte(`{}`)

// Options configure a benchmark run.
type Options struct {
	// Tasks is the number of tasks per throughput phase. Default
	// TasksDefault (20000).
	Tasks int
	// Rate is the steady enqueue rate of the latency phase, in tasks/s.
	// Default RateDefault (500).
	Rate int
	// LatencyFor is how long the latency phase enqueues. Default
	// LatencyForDefault (5s).
	LatencyFor time.Duration
	// Concurrency is the worker concurrency, the same for both systems.
	// Default ConcurrencyDefault (10).
	Concurrency int
	// Enqueuers is the number of goroutines enqueueing at once in the
	// throughput phases, the same for both systems. Default
	// EnqueuersDefault (8).
	Enqueuers int
	// Progress, when set, receives one line per measured part as it ends.
	// Default none.
	Progress io.Writer
	// Middleware is agentq's chain after queue's built-ins, as `agentq
	// worker` runs it (dead-letter capture, metrics, budgets, ledger,
	// breakers), so that the agentq side measures the whole path.
	// Default none: queue's built-ins only.
	Middleware []jobs.Middleware
	// Observers receive every decided attempt, as `agentq worker` runs
	// them (dead-letter capture, metrics, budgets, ledger). Default none.
	Observers []jobs.Observer
}

func (o Options) withDefaults() Options {
	o.Tasks = cmp.Or(o.Tasks, TasksDefault)
	o.Rate = cmp.Or(o.Rate, RateDefault)
	o.LatencyFor = cmp.Or(o.LatencyFor, LatencyForDefault)
	o.Concurrency = cmp.Or(o.Concurrency, ConcurrencyDefault)
	o.Enqueuers = cmp.Or(o.Enqueuers, EnqueuersDefault)
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}

func (o Options) validate() error {
	switch {
	case o.Tasks < 1:
		return fmt.Errorf("tasks must be at least 1, got %d", o.Tasks)
	case o.Rate < 1:
		return fmt.Errorf("rate must be at least 1 task/s, got %d", o.Rate)
	case o.LatencyFor < time.Millisecond:
		return fmt.Errorf("latency_for must be at least 1ms, got %v", o.LatencyFor)
	case o.Concurrency < 1:
		return fmt.Errorf("concurrency must be at least 1, got %d", o.Concurrency)
	case o.Enqueuers < 1:
		return fmt.Errorf("enqueuers must be at least 1, got %d", o.Enqueuers)
	}
	return nil
}

// Report is the outcome of a run. Times are in milliseconds, rates in
// tasks per second.
type Report struct {
	// Environment describes where and with what settings the run happened.
	Environment Environment `json:"environment"`
	// Asynq is raw asynq: a bare asynq.Client and an asynq.Server with a
	// no-op handler, polling at agentq's interval.
	Asynq System `json:"asynq"`
	// Agentq is agentq's queue.Client (with an idempotency key per task)
	// and queue.Worker (the whole middleware chain and a JSON logger).
	Agentq System `json:"agentq"`
	// AsynqDefaultPoll is raw asynq's pickup latency with asynq's default
	// TaskCheckInterval (1s), the reason agentq polls more often.
	AsynqDefaultPoll Latency `json:"asynq_default_poll_latency"`
	// Ratio compares agentq's throughput with raw asynq's.
	Ratio Ratio `json:"agentq_vs_asynq"`
}

// Environment describes a run.
type Environment struct {
	// GoVersion is the Go runtime's version.
	GoVersion string `json:"go_version"`
	// GOMAXPROCS is the number of CPUs Go code may run on at once.
	GOMAXPROCS int `json:"gomaxprocs"`
	// RedisVersion is the Redis server's version.
	RedisVersion string `json:"redis_version"`
	// Tasks is the number of tasks per throughput phase.
	Tasks int `json:"tasks"`
	// Concurrency is the worker concurrency of both systems.
	Concurrency int `json:"concurrency"`
	// Enqueuers is the number of goroutines enqueueing at once.
	Enqueuers int `json:"enqueuers"`
	// Rate is the steady enqueue rate of the latency phase.
	Rate int `json:"rate"`
	// LatencyForMS is how long the latency phase enqueued.
	LatencyForMS float64 `json:"latency_for_ms"`
	// AsynqPollIntervalMS is raw asynq's TaskCheckInterval in the
	// processing phase and its agentq-interval latency measurement.
	AsynqPollIntervalMS float64 `json:"asynq_poll_interval_ms"`
	// AgentqPollIntervalMS is agentq's worker poll interval.
	AgentqPollIntervalMS float64 `json:"agentq_poll_interval_ms"`
}

// System holds the measurements of one system.
type System struct {
	// Enqueue is the enqueue throughput phase.
	Enqueue Throughput `json:"enqueue"`
	// Process is the processing throughput phase.
	Process Throughput `json:"process"`
	// CommandsPerTask is the Redis commands of one task's enqueue and
	// processing together.
	CommandsPerTask float64 `json:"commands_per_task"`
	// Latency is the pickup latency at the steady rate.
	Latency Latency `json:"latency"`
}

// Throughput is one timed throughput phase.
type Throughput struct {
	// Tasks is the number of tasks the phase handled.
	Tasks int `json:"tasks"`
	// ElapsedMS is the phase's wall time.
	ElapsedMS float64 `json:"elapsed_ms"`
	// TasksPerSec is Tasks divided by the elapsed time.
	TasksPerSec float64 `json:"tasks_per_sec"`
	// Commands is the number of commands Redis executed in the phase,
	// those run inside Lua scripts included.
	Commands int64 `json:"commands"`
	// CommandsPerTask is Commands divided by Tasks.
	CommandsPerTask float64 `json:"commands_per_task"`
}

// Latency is the pickup latency of one system: from the moment an enqueue
// returned to the moment the task's handler started.
type Latency struct {
	// PollIntervalMS is the idle poll interval the worker used.
	PollIntervalMS float64 `json:"poll_interval_ms"`
	// Tasks is the number of tasks measured.
	Tasks int `json:"tasks"`
	// P50MS is the median pickup latency.
	P50MS float64 `json:"p50_ms"`
	// P99MS is the 99th percentile pickup latency.
	P99MS float64 `json:"p99_ms"`
	// MaxMS is the largest pickup latency.
	MaxMS float64 `json:"max_ms"`
}

// Ratio compares agentq with raw asynq; below 1 means agentq is slower.
type Ratio struct {
	// Enqueue is agentq's enqueue throughput over raw asynq's.
	Enqueue float64 `json:"enqueue_throughput"`
	// Process is agentq's processing throughput over raw asynq's.
	Process float64 `json:"process_throughput"`
}

// Run benchmarks raw asynq and agentq on rdb, which must be a single Redis
// server (*redis.Client); reg must have the noop kind registered. It flushes
// rdb's database before each phase and when it ends, and resets the server's
// command statistics: use a scratch Redis. Each phase is bounded in time; a
// phase that does not finish is an error.
func Run(ctx context.Context, rdb redis.UniversalClient, reg *queue.Registry, opts Options) (Report, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return Report{}, fmt.Errorf("bench options: %w", err)
	}
	if _, ok := rdb.(*redis.Client); !ok {
		return Report{}, fmt.Errorf("bench needs a single Redis server (*redis.Client), got %T: flushing and command statistics are per server", rdb)
	}
	if reg == nil {
		return Report{}, errors.New("bench: registry is nil")
	}
	if _, err := reg.Validate(jobs.KindNoop, payload); err != nil {
		return Report{}, fmt.Errorf("bench needs the %s kind registered: %w", jobs.KindNoop, err)
	}
	b, err := newBench(rdb, reg, opts)
	if err != nil {
		return Report{}, err
	}
	version, err := redisVersion(ctx, rdb)
	if err != nil {
		return Report{}, err
	}
	r := Report{Environment: Environment{
		GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0), RedisVersion: version,
		Tasks: opts.Tasks, Concurrency: opts.Concurrency, Enqueuers: opts.Enqueuers, Rate: opts.Rate,
		LatencyForMS:         ms(opts.LatencyFor),
		AsynqPollIntervalMS:  ms(queue.PollIntervalDefault),
		AgentqPollIntervalMS: ms(queue.PollIntervalDefault),
	}}
	defer func() { _ = rdb.FlushDB(context.WithoutCancel(ctx)).Err() }()

	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"enqueue asynq", func(ctx context.Context) (err error) {
			r.Asynq.Enqueue, err = b.enqueuePhase(ctx, b.raw)
			return err
		}},
		{"enqueue agentq", func(ctx context.Context) (err error) {
			r.Agentq.Enqueue, err = b.enqueuePhase(ctx, b.agentq)
			return err
		}},
		{"process asynq", func(ctx context.Context) (err error) {
			r.Asynq.Process, err = b.processPhase(ctx, b.raw)
			return err
		}},
		{"process agentq", func(ctx context.Context) (err error) {
			r.Agentq.Process, err = b.processPhase(ctx, b.agentq)
			return err
		}},
		{"latency asynq (asynq's default poll)", func(ctx context.Context) (err error) {
			r.AsynqDefaultPoll, err = b.latencyPhase(ctx, b.rawDefaultPoll)
			return err
		}},
		{"latency asynq", func(ctx context.Context) (err error) {
			r.Asynq.Latency, err = b.latencyPhase(ctx, b.raw)
			return err
		}},
		{"latency agentq", func(ctx context.Context) (err error) {
			r.Agentq.Latency, err = b.latencyPhase(ctx, b.agentq)
			return err
		}},
	}
	for _, s := range steps {
		if err := b.inPhase(ctx, s.name, s.run); err != nil {
			return Report{}, fmt.Errorf("bench %s: %w", s.name, err)
		}
	}
	for _, s := range []*System{&r.Asynq, &r.Agentq} {
		s.CommandsPerTask = s.Enqueue.CommandsPerTask + s.Process.CommandsPerTask
	}
	r.Ratio = Ratio{
		Enqueue: ratio(r.Agentq.Enqueue.TasksPerSec, r.Asynq.Enqueue.TasksPerSec),
		Process: ratio(r.Agentq.Process.TasksPerSec, r.Asynq.Process.TasksPerSec),
	}
	return r, nil
}

// bench holds what every phase shares.
type bench struct {
	rdb  redis.UniversalClient
	opts Options
	// raw, rawDefaultPoll and agentq are the systems under test.
	raw, rawDefaultPoll, agentq *system
}

func newBench(rdb redis.UniversalClient, reg *queue.Registry, opts Options) (*bench, error) {
	qc, err := queue.NewClient(rdb, reg, queue.ClientConfig{})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	// The real logger agentq's CLI builds, so that the per-attempt line is
	// built and encoded; only the bytes are thrown away.
	log, err := logging.New(io.Discard, "info", "json")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	b := &bench{rdb: rdb, opts: opts}
	b.raw = rawSystem(rdb, opts.Concurrency, queue.PollIntervalDefault)
	b.rawDefaultPoll = rawSystem(rdb, opts.Concurrency, 0)
	b.agentq = agentqSystem(rdb, reg, qc, log, opts.Concurrency, opts.Middleware, opts.Observers)
	return b, nil
}

// phaseTimeout bounds one phase generously: a phase that takes longer is
// stuck, not slow.
func (b *bench) phaseTimeout() time.Duration {
	return 2*time.Minute + 3*b.opts.LatencyFor + time.Duration(b.opts.Tasks)*time.Millisecond
}

// inPhase runs fn on a flushed database under the phase timeout.
func (b *bench) inPhase(ctx context.Context, name string, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, b.phaseTimeout())
	defer cancel()
	if err := b.rdb.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	err := fn(ctx)
	if err != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return fmt.Errorf("did not finish within %v: %w", b.phaseTimeout(), err)
	}
	return err
}

// hooks observe a task inside the worker: started at the start of the
// handler (with the task id), done when the handler returned.
type hooks struct {
	started func(id string)
	done    func(err error)
}

// system is one system under test: how it enqueues one task and how it
// starts a worker.
type system struct {
	name string
	// poll is the worker's idle poll interval.
	poll time.Duration
	// enqueue enqueues task number i and returns its id.
	enqueue func(ctx context.Context, i int, prefix string) (string, error)
	// start starts a worker that calls h; stop shuts it down and waits.
	start func(h hooks) (stop func(), err error)
}

func rawSystem(rdb redis.UniversalClient, concurrency int, poll time.Duration) *system {
	ac := asynq.NewClientFromRedisClient(rdb)
	s := &system{name: "asynq", poll: cmp.Or(poll, asynqTaskCheckIntervalDefault)}
	s.enqueue = func(ctx context.Context, _ int, _ string) (string, error) {
		info, err := ac.EnqueueContext(ctx, asynq.NewTask(jobs.KindNoop, payload))
		if err != nil {
			return "", err
		}
		return info.ID, nil
	}
	s.start = func(h hooks) (func(), error) {
		srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
			Concurrency:       concurrency,
			TaskCheckInterval: poll,
			Logger:            quietLogger{},
			LogLevel:          asynq.ErrorLevel,
		})
		handler := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			if h.started != nil {
				id, _ := asynq.GetTaskID(ctx)
				h.started(id)
			}
			if h.done != nil {
				h.done(nil)
			}
			return nil
		})
		if err := srv.Start(handler); err != nil {
			return nil, fmt.Errorf("start asynq server: %w", err)
		}
		return srv.Shutdown, nil
	}
	return s
}

func agentqSystem(rdb redis.UniversalClient, reg *queue.Registry, qc *queue.Client, log zerolog.Logger, concurrency int, mws []jobs.Middleware, obs []jobs.Observer) *system {
	s := &system{name: "agentq", poll: queue.PollIntervalDefault}
	s.enqueue = func(ctx context.Context, i int, prefix string) (string, error) {
		res, err := qc.Enqueue(ctx, jobs.KindNoop, payload, queue.EnqueueOptions{Key: prefix + strconv.Itoa(i)})
		switch {
		case err != nil:
			return "", err
		case res.Duplicate:
			return "", fmt.Errorf("key %s%d was reported a duplicate on a flushed database", prefix, i)
		}
		return res.ID, nil
	}
	s.start = func(h hooks) (func(), error) {
		// Innermost middleware: it adds no Redis calls.
		observe := func(next jobs.Handler) jobs.Handler {
			return jobs.HandlerFunc(func(ctx context.Context, st *jobs.Step) error {
				if h.started != nil {
					h.started(st.TaskID)
				}
				err := next.ProcessStep(ctx, st)
				if h.done != nil {
					h.done(err)
				}
				return err
			})
		}
		w, err := queue.NewWorker(rdb, reg, queue.WorkerConfig{
			Concurrency: concurrency,
			Logger:      &log,
			Middleware:  append(slices.Clone(mws), observe),
			Observers:   obs,
		})
		if err != nil {
			return nil, err
		}
		if err := w.Start(); err != nil {
			return nil, err
		}
		return w.Shutdown, nil
	}
	return s
}

// quietLogger drops asynq's own logs.
type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(...any) {}
func (quietLogger) Fatal(...any) {}

// enqueuePhase times n enqueues from the configured enqueuers on a flushed
// database and counts the Redis commands they cost.
func (b *bench) enqueuePhase(ctx context.Context, s *system) (Throughput, error) {
	n := b.opts.Tasks
	if err := resetStats(ctx, b.rdb); err != nil {
		return Throughput{}, err
	}
	start := time.Now()
	if err := b.fill(ctx, s, n); err != nil {
		return Throughput{}, err
	}
	elapsed := time.Since(start)
	cmds, err := commandCount(ctx, b.rdb)
	if err != nil {
		return Throughput{}, err
	}
	t := throughput(n, elapsed, cmds)
	b.progress("enqueue", s, t)
	return t, nil
}

// fill enqueues n tasks of s from the configured enqueuers.
func (b *bench) fill(ctx context.Context, s *system, n int) error {
	return parallel(ctx, b.opts.Enqueuers, n, func(ctx context.Context, i int) error {
		if _, err := s.enqueue(ctx, i, "bench-"); err != nil {
			return fmt.Errorf("enqueue %s task %d: %w", s.name, i, err)
		}
		return nil
	})
}

// processPhase pre-fills the configured number of tasks, then times a
// worker of s until it has processed them all.
func (b *bench) processPhase(ctx context.Context, s *system) (Throughput, error) {
	n := b.opts.Tasks
	if err := b.fill(ctx, s, n); err != nil {
		return Throughput{}, fmt.Errorf("pre-fill: %w", err)
	}
	t, err := b.process(ctx, s, n)
	if err != nil {
		return Throughput{}, err
	}
	b.progress("process", s, t)
	return t, nil
}

// process starts a worker of s on n waiting tasks and times it until all are
// processed. Its command count runs until the worker has shut down, so that
// every task's acknowledgement is in it.
func (b *bench) process(ctx context.Context, s *system, n int) (Throughput, error) {
	if err := resetStats(ctx, b.rdb); err != nil {
		return Throughput{}, err
	}
	tl := newTally()
	tl.expect(int64(n))
	start := time.Now()
	stop, err := s.start(hooks{done: tl.add})
	if err != nil {
		return Throughput{}, err
	}
	err = tl.wait(ctx)
	elapsed := time.Since(start)
	stop()
	if err != nil {
		return Throughput{}, fmt.Errorf("%d of %d tasks processed: %w", tl.count(), n, err)
	}
	cmds, err := commandCount(ctx, b.rdb)
	if err != nil {
		return Throughput{}, err
	}
	return throughput(n, elapsed, cmds), nil
}

// latencyPhase starts a worker of s, enqueues one task at a time at the
// configured rate for the configured time, and measures each task's pickup
// latency.
func (b *bench) latencyPhase(ctx context.Context, s *system) (Latency, error) {
	pk := &pickup{}
	tl := newTally()
	stop, err := s.start(hooks{started: pk.started, done: tl.add})
	if err != nil {
		return Latency{}, err
	}
	defer stop()
	n, err := b.pace(ctx, s, pk)
	if err != nil {
		return Latency{}, err
	}
	tl.expect(int64(n))
	if err := tl.wait(ctx); err != nil {
		return Latency{}, fmt.Errorf("%d of %d tasks processed: %w", tl.count(), n, err)
	}
	l := pk.latency()
	l.PollIntervalMS = ms(s.poll)
	if l.Tasks != n {
		return Latency{}, fmt.Errorf("measured %d pickups of %d tasks", l.Tasks, n)
	}
	if b.opts.Progress != io.Discard {
		fmt.Fprintf(b.opts.Progress, "latency  %-7s poll %-6v %6d tasks at %d/s  p50 %8.2f ms  p99 %8.2f ms\n",
			s.name, s.poll, l.Tasks, b.opts.Rate, l.P50MS, l.P99MS)
	}
	return l, nil
}

// pace enqueues one task at a time on a fixed schedule (task i is due at
// i/Rate seconds) for LatencyFor, and returns how many it enqueued. A late
// enqueue does not skip tasks: the next ones follow at once.
func (b *bench) pace(ctx context.Context, s *system, pk *pickup) (int, error) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	start := time.Now()
	n := 0
	for ; ; n++ {
		at := time.Duration(n) * time.Second / time.Duration(b.opts.Rate)
		if at >= b.opts.LatencyFor {
			return n, nil
		}
		if d := time.Until(start.Add(at)); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return n, context.Cause(ctx)
			case <-timer.C:
			}
		}
		id, err := s.enqueue(ctx, n, "bench-latency-")
		if err != nil {
			return n, fmt.Errorf("enqueue %s task %d: %w", s.name, n, err)
		}
		pk.enqueued(id)
	}
}

func (b *bench) progress(phase string, s *system, t Throughput) {
	if b.opts.Progress == io.Discard {
		return
	}
	fmt.Fprintf(b.opts.Progress, "%-8s %-7s %6d tasks in %8.1f ms  %9.0f tasks/s  %6.2f redis commands/task\n",
		phase, s.name, t.Tasks, t.ElapsedMS, t.TasksPerSec, t.CommandsPerTask)
}

// parallel calls fn for i in [0, n) from workers goroutines. The first error
// stops the others and is returned.
func parallel(ctx context.Context, workers, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next >= n || ctx.Err() != nil {
			return 0, false
		}
		next++
		return next - 1, true
	}
	for range min(workers, n) {
		wg.Go(func() {
			for i, ok := take(); ok; i, ok = take() {
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// tally counts processed tasks and says when the expected number is done or
// an attempt failed.
type tally struct {
	n, target atomic.Int64
	once      sync.Once
	done      chan struct{}
	err       error
}

func newTally() *tally { return &tally{done: make(chan struct{})} }

func (t *tally) finish(err error) {
	t.once.Do(func() {
		t.err = err
		close(t.done)
	})
}

// add records one finished attempt. A failed attempt ends the phase: the
// noop handler never fails.
func (t *tally) add(err error) {
	if err != nil {
		t.finish(fmt.Errorf("a noop task failed: %w", err))
		return
	}
	k := t.n.Add(1)
	if tg := t.target.Load(); tg > 0 && k >= tg {
		t.finish(nil)
	}
}

// expect sets the number of tasks to wait for; it may come after some have
// been counted.
func (t *tally) expect(n int64) {
	t.target.Store(n)
	if t.n.Load() >= n {
		t.finish(nil)
	}
}

func (t *tally) count() int64 { return t.n.Load() }

// wait returns when the expected tasks are done, an attempt failed, or ctx
// ends.
func (t *tally) wait(ctx context.Context) error {
	select {
	case <-t.done:
		return t.err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func throughput(n int, elapsed time.Duration, cmds int64) Throughput {
	return Throughput{
		Tasks: n, ElapsedMS: ms(elapsed), TasksPerSec: float64(n) / elapsed.Seconds(),
		Commands: cmds, CommandsPerTask: float64(cmds) / float64(n),
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
