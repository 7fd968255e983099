package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentq/agentq/jobs"
)

// enqueuePhase times n enqueues from the configured enqueuers on a flushed
// database and counts the Redis commands they cost.
func (b *bench) enqueuePhase(ctx context.Context, s *system) (Throughput, error) {
	return b.measure(ctx, b.opts.Tasks, func(ctx context.Context) error {
		return b.fill(ctx, s, b.opts.Tasks)
	})
}

// batchPhase times agentq's batch enqueue of the configured number of keyed
// noop lines, read from memory, on a flushed database.
func (b *bench) batchPhase(ctx context.Context) (Throughput, error) {
	n := b.opts.Tasks
	var lines bytes.Buffer
	for i := range n {
		fmt.Fprintf(&lines, `{"kind":%q,"payload":%s,"key":"bench-batch-%d"}`+"\n", jobs.KindNoop, payload, i)
	}
	return b.measure(ctx, n, func(ctx context.Context) error {
		sum, err := b.qc.EnqueueBatch(ctx, bytes.NewReader(lines.Bytes()), nil)
		switch {
		case err != nil:
			return fmt.Errorf("enqueue batch: %w", err)
		case sum.Enqueued != n:
			return fmt.Errorf("enqueue batch: %d of %d lines enqueued (%d duplicates, %d rejected)", sum.Enqueued, n, sum.Duplicates, len(sum.Rejected))
		}
		return nil
	})
}

// measure times fn, which handles n tasks, and counts the Redis commands
// and round trips it costs.
func (b *bench) measure(ctx context.Context, n int, fn func(context.Context) error) (Throughput, error) {
	if err := resetStats(ctx, b.rdb); err != nil {
		return Throughput{}, err
	}
	b.rt.start()
	start := time.Now()
	err := fn(ctx)
	elapsed := time.Since(start)
	trips := b.rt.stop()
	if err != nil {
		return Throughput{}, err
	}
	cmds, err := commandCount(ctx, b.rdb)
	if err != nil {
		return Throughput{}, err
	}
	return throughput(n, elapsed, cmds).withRoundTrips(trips), nil
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
	return b.process(ctx, s, n)
}

// process starts a worker of s on n waiting tasks and times it until all are
// processed. Its command and round-trip counts run until the worker has
// shut down, so that every task's acknowledgement is in them.
func (b *bench) process(ctx context.Context, s *system, n int) (Throughput, error) {
	if err := resetStats(ctx, b.rdb); err != nil {
		return Throughput{}, err
	}
	tl := newTally()
	tl.expect(int64(n))
	b.rt.start()
	start := time.Now()
	stop, err := s.start(hooks{done: tl.add})
	if err != nil {
		b.rt.stop()
		return Throughput{}, err
	}
	err = tl.wait(ctx)
	elapsed := time.Since(start)
	stop()
	trips := b.rt.stop()
	if err != nil {
		return Throughput{}, fmt.Errorf("%d of %d tasks processed: %w", tl.count(), n, err)
	}
	cmds, err := commandCount(ctx, b.rdb)
	if err != nil {
		return Throughput{}, err
	}
	return throughput(n, elapsed, cmds).withRoundTrips(trips), nil
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

// withRoundTrips adds the round trips counted in the phase.
func (t Throughput) withRoundTrips(trips int64) Throughput {
	per := float64(trips) / float64(t.Tasks)
	t.RoundTrips, t.RoundTripsPerTask = &trips, &per
	return t
}
