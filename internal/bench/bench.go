// Package bench owns `agentq bench`: it measures raw asynq and agentq side by
// side on the same Redis, at the same concurrency, in the same run, so that
// the cost of agentq's layer (payload validation, idempotency keys, the
// middleware chain and observers, the per-attempt log line) is a number
// rather than a guess, and issue 8's targets are checked where they are
// measured.
//
// Every row of the report pairs a raw asynq run with an agentq run and
// repeats the pair (Options.Reps), alternating which goes first, so that one
// noisy run does not decide: a row reports the median and the range of the
// per-pair ratios. Rows: enqueue plain, keyed and batched; processing with
// one dequeue loop, with K loops, raw asynq's own K-server ceiling, the
// `agentq worker` binary as a child process, and (Options.Runs) three-step
// runs through the run engine against plain tasks, both on agentq. Each run counts the Redis
// commands (INFO commandstats, Lua scripts' inner calls included) and, on
// the in-process rows, the round trips (a go-redis hook on the client both
// systems use: a pipeline is one). Pickup latency at a steady rate is
// measured once at the end.
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
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
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
	// RepsDefault is how many times each row's pair of runs is repeated.
	RepsDefault = 3
)

// LoopsDefault is the default K of the K-loop rows at the default
// concurrency: the worker's own default (queue.LoopsDefault), so the row
// measures what `agentq worker` runs.
func LoopsDefault() int { return queue.LoopsDefault(ConcurrencyDefault) }

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
	// Concurrency is the worker concurrency, the same for both systems
	// (split between the loops of a K-loop run). Default ConcurrencyDefault
	// (10).
	Concurrency int
	// Enqueuers is the number of goroutines enqueueing at once in the
	// throughput phases, the same for both systems. Default
	// EnqueuersDefault (8).
	Enqueuers int
	// Reps is how many times each row's pair of runs (raw asynq, agentq)
	// is repeated, alternating which runs first. Default RepsDefault (3).
	Reps int
	// Loops is K: the dequeue loops of the agentq K-loop row and the raw
	// asynq servers of the ceiling row, with Concurrency split between
	// them; it may not exceed Concurrency. Default LoopsDefault().
	Loops int
	// Progress, when set, receives one line per measured run as it ends.
	// Default none.
	Progress io.Writer
	// Middleware is agentq's chain after queue's built-ins, as `agentq
	// worker` runs it (dead-letter capture, metrics, budgets, ledger,
	// breakers), so that the agentq side measures the whole path.
	// Default none: queue's built-ins only.
	Middleware []jobs.Middleware
	// Observers receive every attempt's result on the agentq side, as
	// `agentq worker`'s do. Default none.
	Observers []jobs.Observer
	// Engine is the run engine whose middleware and observer are in
	// Middleware and Observers (a runtime's that knows RunsWorkflow); the
	// runs row measures it. Default nil: the row builds its own engine and
	// puts its middleware outermost and its observer after Observers.
	Engine *runs.Runs
	// WorkerConfig, when set, is called last on the agentq worker's
	// config, before the worker is built, with the dequeue loops the run
	// asks for (1, or Loops): it sets the loops and whatever else the
	// caller's production worker sets. Default none: the worker's own
	// default loops.
	WorkerConfig func(cfg *queue.WorkerConfig, loops int)
	// Runs adds the row "runs, 3 steps": steps per second of Tasks/3 runs
	// of the workflow bench3 (three noop steps) through the run engine
	// (package runs: its middleware outermost, its observer after
	// Observers), against as many plain noop tasks, both with Loops loops
	// and the full chain; and the round trips per step against a plain
	// task's. Default false: no runs row.
	Runs bool
	// Binary, when set, is the path of an agentq binary: the binary row
	// runs its `worker` command as a child process. Default none: no
	// binary row.
	Binary string
	// BinaryArgs are added after the bench's own `worker` arguments
	// (--concurrency, --log-format json, --log-level info, --metrics-addr
	// 127.0.0.1:0), e.g. a --config file or the loops. Default none.
	BinaryArgs []string
	// BinaryLoopsFlag, when set, is the worker command's flag for its
	// dequeue loops (e.g. "--loops"): the child gets it with Loops. Default
	// none: the worker's own default loops.
	BinaryLoopsFlag string
	// BinaryEnv is the child's environment, "K=V" entries; it must point
	// the child at the same Redis and database as rdb (AGENTQ_REDIS_URL).
	// Default nil: the bench process's environment.
	BinaryEnv []string
}

func (o Options) withDefaults() Options {
	o.Tasks = cmp.Or(o.Tasks, TasksDefault)
	o.Rate = cmp.Or(o.Rate, RateDefault)
	o.LatencyFor = cmp.Or(o.LatencyFor, LatencyForDefault)
	o.Concurrency = cmp.Or(o.Concurrency, ConcurrencyDefault)
	o.Enqueuers = cmp.Or(o.Enqueuers, EnqueuersDefault)
	o.Reps = cmp.Or(o.Reps, RepsDefault)
	o.Loops = cmp.Or(o.Loops, queue.LoopsDefault(o.Concurrency))
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}

// Validate reports whether o, its defaults filled in, is a valid set of
// options: Run checks the same before it touches Redis.
func (o Options) Validate() error {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return fmt.Errorf("bench options: %w", err)
	}
	return nil
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
	case o.Reps < 1:
		return fmt.Errorf("reps must be at least 1, got %d", o.Reps)
	case o.Loops < 1 || o.Loops > o.Concurrency:
		return fmt.Errorf("loops must be between 1 and concurrency (%d), got %d", o.Concurrency, o.Loops)
	}
	return nil
}

// Run benchmarks raw asynq and agentq on rdb, which must be a single Redis
// server (*redis.Client); reg must have the noop kind registered. It adds a
// hook to rdb that counts round trips while a run is measured. It flushes
// rdb's database before each phase and when it ends, and resets the
// server's command statistics: use a scratch Redis. Each phase is bounded in
// time; a phase that does not finish is an error.
func Run(ctx context.Context, rdb redis.UniversalClient, reg *queue.Registry, opts Options) (Report, error) {
	if err := opts.Validate(); err != nil {
		return Report{}, err
	}
	opts = opts.withDefaults()
	client, ok := rdb.(*redis.Client)
	if !ok {
		return Report{}, fmt.Errorf("bench needs a single Redis server (*redis.Client), got %T: flushing and command statistics are per server", rdb)
	}
	if reg == nil {
		return Report{}, errors.New("bench: registry is nil")
	}
	if _, err := reg.Validate(jobs.KindNoop, payload); err != nil {
		return Report{}, fmt.Errorf("bench needs the %s kind registered: %w", jobs.KindNoop, err)
	}
	b, err := newBench(client, reg, opts)
	if err != nil {
		return Report{}, err
	}
	version, err := redisVersion(ctx, rdb)
	if err != nil {
		return Report{}, err
	}
	r := Report{Environment: Environment{
		GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), RedisVersion: version,
		Tasks: opts.Tasks, Concurrency: opts.Concurrency, Enqueuers: opts.Enqueuers, Rate: opts.Rate,
		Reps: opts.Reps, Loops: opts.Loops,
		LatencyForMS:         ms(opts.LatencyFor),
		AsynqPollIntervalMS:  ms(queue.PollIntervalDefault),
		AgentqPollIntervalMS: ms(queue.PollIntervalDefault),
	}}
	defer func() { _ = rdb.FlushDB(context.WithoutCancel(ctx)).Err() }()

	rows := b.rows()
	runs := make([][]Pair, len(rows))
	for rep := range opts.Reps {
		for i, row := range rows {
			run, err := b.pair(ctx, row, rep)
			if err != nil {
				return Report{}, err
			}
			runs[i] = append(runs[i], run)
		}
	}
	for i, row := range rows {
		r.Rows = append(r.Rows, summarize(row, runs[i]))
	}

	lat := []struct {
		name string
		s    *system
		out  *Latency
	}{
		{"asynq (asynq's default poll)", b.rawDefaultPoll, &r.Latency.AsynqDefaultPoll},
		{"asynq", b.raw1, &r.Latency.Asynq},
		{"agentq", b.agentqK, &r.Latency.Agentq},
	}
	for _, l := range lat {
		if err := b.inPhase(ctx, "latency "+l.name, func(ctx context.Context) (err error) {
			*l.out, err = b.latencyPhase(ctx, l.s)
			return err
		}); err != nil {
			return Report{}, err
		}
	}
	return r, nil
}

// row is one line of the report: a raw asynq run and an agentq run of the
// same work, and the targets the pair is checked against.
type row struct {
	name, raw, agentq string
	runRaw, runAgentq func(ctx context.Context) (Throughput, error)
	targets           []target
}

// pair runs both sides of row once, each on a flushed database, raw asynq
// first on even reps and agentq first on odd ones.
func (b *bench) pair(ctx context.Context, r row, rep int) (Pair, error) {
	var run Pair
	sides := []struct {
		name string
		fn   func(context.Context) (Throughput, error)
		out  *Throughput
	}{
		{r.raw, r.runRaw, &run.Raw},
		{r.agentq, r.runAgentq, &run.Agentq},
	}
	if rep%2 == 1 {
		sides[0], sides[1] = sides[1], sides[0]
	}
	for _, s := range sides {
		name := fmt.Sprintf("%s, %s, rep %d", r.name, s.name, rep+1)
		err := b.inPhase(ctx, name, func(ctx context.Context) (err error) {
			*s.out, err = s.fn(ctx)
			return err
		})
		if err != nil {
			return Pair{}, err
		}
		b.progress(name, *s.out)
	}
	run.Ratio = ratio(run.Agentq.TasksPerSec, run.Raw.TasksPerSec)
	return run, nil
}

// rows lists the report's rows in order.
func (b *bench) rows() []row {
	k := b.opts.Loops
	rawEnqueue := func(ctx context.Context) (Throughput, error) { return b.enqueuePhase(ctx, b.raw1) }
	rawProcess := func(ctx context.Context) (Throughput, error) { return b.processPhase(ctx, b.raw1) }
	rows := []row{
		{
			name: "enqueue plain", raw: "asynq Enqueue", agentq: "agentq Enqueue, no key",
			runRaw:    rawEnqueue,
			runAgentq: func(ctx context.Context) (Throughput, error) { return b.enqueuePhase(ctx, b.agentqPlain) },
		},
		{
			name: "enqueue keyed", raw: "asynq Enqueue", agentq: "agentq Enqueue with a key",
			runRaw:    rawEnqueue,
			runAgentq: func(ctx context.Context) (Throughput, error) { return b.enqueuePhase(ctx, b.agentqK) },
			targets:   []target{{kind: targetRatio, bound: 0.8}},
		},
		{
			name: "enqueue batch", raw: "asynq Enqueue", agentq: "agentq EnqueueBatch, keyed lines",
			runRaw:    rawEnqueue,
			runAgentq: b.batchPhase,
		},
		{
			name: "process, 1 loop", raw: "asynq, 1 server", agentq: "agentq, 1 loop, full chain",
			runRaw:    rawProcess,
			runAgentq: func(ctx context.Context) (Throughput, error) { return b.processPhase(ctx, b.agentq1) },
		},
		{
			name: fmt.Sprintf("process, %d loops", k), raw: "asynq, 1 server", agentq: fmt.Sprintf("agentq, %d loops, full chain", k),
			runRaw:    rawProcess,
			runAgentq: func(ctx context.Context) (Throughput, error) { return b.processPhase(ctx, b.agentqK) },
			targets:   []target{{kind: targetRatio, bound: 1.0}, {kind: targetExtraRoundTrips, bound: 1}},
		},
		{
			name: fmt.Sprintf("ceiling: raw asynq, %d servers", k), raw: "asynq, 1 server", agentq: fmt.Sprintf("asynq, %d servers (not agentq)", k),
			runRaw:    rawProcess,
			runAgentq: func(ctx context.Context) (Throughput, error) { return b.processPhase(ctx, b.rawK) },
		},
	}
	if b.opts.Runs {
		rows = append(rows, b.runsRow())
	}
	if b.opts.Binary != "" {
		rows = append(rows, row{
			name: "process, agentq binary", raw: "asynq, 1 server", agentq: "agentq worker process, full chain",
			runRaw:    rawProcess,
			runAgentq: b.binaryPhase,
			targets:   []target{{kind: targetRatio, bound: 1.0}},
		})
	}
	return rows
}

// bench holds what every phase shares.
type bench struct {
	rdb  *redis.Client
	reg  *queue.Registry
	qc   *queue.Client
	opts Options
	rt   *roundTrips
	log  zerolog.Logger
	// runsQC is the run engine's client: it knows the workflow bench3.
	runsQC *queue.Client
	// The systems under test: raw asynq with one server at agentq's poll
	// interval, at asynq's default one, and with Loops servers; agentq
	// enqueueing without a key, and with a key and one or Loops loops.
	raw1, rawDefaultPoll, rawK *system
	agentqPlain, agentq1       *system
	agentqK                    *system
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
		return fmt.Errorf("bench %s: flush: %w", name, err)
	}
	err := fn(ctx)
	if err != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return fmt.Errorf("bench %s: did not finish within %v: %w", name, b.phaseTimeout(), err)
	}
	if err != nil {
		return fmt.Errorf("bench %s: %w", name, err)
	}
	return nil
}

func (b *bench) progress(name string, t Throughput) {
	if b.opts.Progress == io.Discard {
		return
	}
	rt := "  -"
	if t.RoundTripsPerTask != nil {
		rt = fmt.Sprintf("%5.2f", *t.RoundTripsPerTask)
	}
	fmt.Fprintf(b.opts.Progress, "%-72s %6d tasks in %8.1f ms %9.0f tasks/s %6.2f cmds/task %s round trips/task\n",
		name, t.Tasks, t.ElapsedMS, t.TasksPerSec, t.CommandsPerTask, rt)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
