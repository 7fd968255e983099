package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/logging"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

func newBench(rdb *redis.Client, reg *queue.Registry, opts Options) (*bench, error) {
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
	runsQC, err := queue.NewClient(rdb, reg, queue.ClientConfig{Workflows: map[string]queue.Workflow{runsWorkflow: {}}})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	b := &bench{rdb: rdb, reg: reg, qc: qc, opts: opts, rt: &roundTrips{}, log: log, runsQC: runsQC}
	rdb.AddHook(b.rt)
	c, k := opts.Concurrency, opts.Loops
	b.raw1 = rawSystem(rdb, c, 1, queue.PollIntervalDefault)
	b.rawDefaultPoll = rawSystem(rdb, c, 1, 0)
	b.rawK = rawSystem(rdb, c, k, queue.PollIntervalDefault)
	b.agentqPlain = agentqSystem(rdb, reg, qc, log, opts, 1, false)
	b.agentq1 = agentqSystem(rdb, reg, qc, log, opts, 1, true)
	b.agentqK = agentqSystem(rdb, reg, qc, log, opts, k, true)
	return b, nil
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

// split divides total between n parts as evenly as it goes, the first
// parts taking the remainder.
func split(total, n int) []int {
	parts := make([]int, n)
	for i := range parts {
		parts[i] = total / n
		if i < total%n {
			parts[i]++
		}
	}
	return parts
}

// rawSystem is raw asynq: a bare asynq.Client, and servers asynq.Servers
// sharing concurrency, with a no-op handler, polling every poll (0 is
// asynq's default).
func rawSystem(rdb redis.UniversalClient, concurrency, servers int, poll time.Duration) *system {
	ac := asynq.NewClientFromRedisClient(rdb)
	name := "asynq"
	if servers > 1 {
		name = fmt.Sprintf("asynq x%d", servers)
	}
	s := &system{name: name, poll: cmp.Or(poll, asynqTaskCheckIntervalDefault)}
	s.enqueue = func(ctx context.Context, _ int, _ string) (string, error) {
		info, err := ac.EnqueueContext(ctx, asynq.NewTask(jobs.KindNoop, payload))
		if err != nil {
			return "", err
		}
		return info.ID, nil
	}
	s.start = func(h hooks) (func(), error) {
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
		var srvs []*asynq.Server
		stop := func() {
			for _, srv := range srvs {
				srv.Shutdown()
			}
		}
		for _, c := range split(concurrency, servers) {
			srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
				Concurrency:       c,
				TaskCheckInterval: poll,
				Logger:            quietLogger{},
				LogLevel:          asynq.ErrorLevel,
			})
			if err := srv.Start(handler); err != nil {
				stop()
				return nil, fmt.Errorf("start asynq server: %w", err)
			}
			srvs = append(srvs, srv)
		}
		return stop, nil
	}
	return s
}

// agentqSystem is agentq: queue.Client, with an idempotency key per task
// when keyed, and one queue.Worker with the caller's chain, observers and
// config hook, asked for loops dequeue loops.
func agentqSystem(rdb redis.UniversalClient, reg *queue.Registry, qc *queue.Client, log zerolog.Logger, opts Options, loops int, keyed bool) *system {
	name := "agentq"
	if loops > 1 {
		name = fmt.Sprintf("agentq x%d", loops)
	}
	s := &system{name: name, poll: queue.PollIntervalDefault}
	s.enqueue = func(ctx context.Context, i int, prefix string) (string, error) {
		var o queue.EnqueueOptions
		if keyed {
			o.Key = prefix + strconv.Itoa(i)
		}
		res, err := qc.Enqueue(ctx, jobs.KindNoop, payload, o)
		switch {
		case err != nil:
			return "", err
		case res.Duplicate:
			return "", fmt.Errorf("key %s%d was reported a duplicate on a flushed database", prefix, i)
		}
		return res.ID, nil
	}
	s.start = func(h hooks) (func(), error) {
		w, err := newAgentqWorker(rdb, reg, log, opts, loops, h)
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

// newAgentqWorker builds the agentq worker of a run: opts' middleware and
// observers, and innermost a middleware that reports to h (it adds no Redis
// call), then opts.WorkerConfig.
func newAgentqWorker(rdb redis.UniversalClient, reg *queue.Registry, log zerolog.Logger, opts Options, loops int, h hooks) (*queue.Worker, error) {
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
	cfg := queue.WorkerConfig{
		Concurrency: opts.Concurrency,
		Logger:      &log,
		Middleware:  append(slices.Clone(opts.Middleware), observe),
		Observers:   slices.Clone(opts.Observers),
		Loops:       loops,
	}
	if opts.WorkerConfig != nil {
		opts.WorkerConfig(&cfg, loops)
	}
	return queue.NewWorker(rdb, reg, cfg)
}

// quietLogger drops asynq's own logs.
type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(...any) {}
func (quietLogger) Fatal(...any) {}
