package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/ledger"
)

// rtUnnamedMax bounds the round trips per task that name no task in
// TestProcessingRoundTrips: background only, far below one per task.
const rtUnnamedMax = 0.5

// fullChain is the chain and the observers `agentq worker` runs, built by
// the public runtime (package agentq) from the default configuration on
// rdb: the ledger and breakers as middleware; dead-letter capture, metrics,
// budget counting and the ledger's record as observers. The runtime's
// worker also runs their background loops (the dead-letter reconciler,
// budget and breaker flushes) until the test ends.
func fullChain(t testing.TB, rdb redis.UniversalClient) ([]jobs.Middleware, []jobs.Observer) {
	t.Helper()
	rt, err := agentq.New(config.Default(), agentq.Options{Redis: rdb, LogTo: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	w, err := rt.NewWorker(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Close()
		_ = rt.Close()
	})
	return w.Middleware(), w.Observers()
}

// TestProcessingRoundTrips counts the Redis round trips that processing a
// task costs, raw asynq (one server, a no-op handler) against agentq with
// the full chain `agentq worker` runs (dead-letter capture, metrics, budget
// counting, the idempotency ledger, breakers, the per-attempt log line), on
// keyed noop steps that succeed at their first attempt, the ledger
// recording each success. It asserts that agentq adds at most one round trip
// per task. It is a count, not a timing: it passes or fails the same on a
// slow machine.
//
// Method. Each system drains rtTasks pre-filled tasks with one worker at the
// default concurrency; the bench's go-redis hook on the client both use
// records every round trip (a command sent alone is one, a pipeline or
// MULTI/EXEC is one) with its commands' arguments and replies, from the
// worker's start until all handlers returned and the worker shut down. A
// round trip counts for the tasks when an argument or a reply of one of its
// commands names one of the tasks: its id (asynq's dequeue names it in its
// reply, its completion in its keys, the ledger's write in its value) or
// its idempotency key's ledger hash (the ledger's key). Round trips that name no task are the background of both
// systems and cost per second, not per task: heartbeats, the forwarder's
// and recoverer's polls, agentq's lease sweeper, dead-letter reconciler,
// budget and breaker flushes, and dequeues that found nothing; they are left
// out. The few background round trips that do name a task (a heartbeat
// listing the tasks in flight, a lease extension) can only raise a count, so
// each side's figure is an upper bound; the test also checks that raw
// asynq's is at least the two round trips (dequeue, completion) every task
// costs, so a filter that missed the dequeues would fail it.
//
// A per-task round trip that named no task would escape the filter: the
// test bounds the round trips that name none below rtUnnamedMax per task
// (the background of a run this short is a few dozen), so such a round trip
// would fail it.
func TestProcessingRoundTrips(t *testing.T) {
	t.Parallel()
	const rtTasks = 200
	rdb := exclusive(t)
	mws, obs := fullChain(t, rdb)
	b, err := newBench(rdb, registry(t), Options{Tasks: rtTasks, Middleware: mws, Observers: obs}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	perTask := map[string]float64{}
	for _, s := range []*system{b.raw1, b.agentq1} {
		trips, all := taskRoundTrips(t, b, s, rtTasks)
		perTask[s.name] = float64(trips) / rtTasks
		t.Logf("%s: %d round trips name the %d tasks (%.2f per task); %d in all, background included",
			s.name, trips, rtTasks, perTask[s.name], all)
		if unnamed := float64(all-trips) / rtTasks; unnamed >= rtUnnamedMax {
			t.Errorf("%s: %.2f round trips per task name no task, want < %v: a per-task round trip escapes the filter",
				s.name, unnamed, rtUnnamedMax)
		}
	}
	// The ledger was on: the last agentq step's success is recorded.
	led, err := ledger.New(rdb, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	key := fmt.Sprintf("rt-%d", rtTasks-1)
	if _, ok, err := led.Lookup(context.Background(), key, ledger.Digest(jobs.KindNoop, payload)); err != nil || !ok {
		t.Errorf("ledger has no success for %s (err %v): the chain ran without the ledger", key, err)
	}
	raw, agentq := perTask[b.raw1.name], perTask[b.agentq1.name]
	if raw < 2 {
		t.Errorf("raw asynq: %.2f round trips per task, want at least 2 (dequeue, completion): the filter misses some", raw)
	}
	if extra := agentq - raw; extra > 1 {
		t.Errorf("agentq costs %.2f round trips per task, raw asynq %.2f: %.2f extra, want at most 1", agentq, raw, extra)
	}
	// On a single Redis the ledger's record rides on asynq's completion
	// (queue's completion fold): no round trip of its own at all.
	if extra := agentq - raw; extra > 0.1 {
		t.Errorf("agentq costs %.2f round trips per task, raw asynq %.2f: the ledger's record is not folded into asynq's completion", agentq, raw)
	}
}

// taskRoundTrips pre-fills n tasks of s, drains them with a worker of s and
// returns the round trips that named one of them, and all round trips.
func taskRoundTrips(t *testing.T, b *bench, s *system, n int) (named, all int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range n {
		id, err := s.enqueue(ctx, i, "rt-")
		if err != nil {
			t.Fatalf("%s: enqueue: %v", s.name, err)
		}
		names = append(names, id)
		if strings.HasPrefix(id, "k_") {
			names = append(names, ledger.KeyHash(fmt.Sprintf("rt-%d", i)))
		}
	}
	var (
		mu    sync.Mutex
		trips []string
	)
	record := func(cmds []redis.Cmder) {
		var sb strings.Builder
		for _, c := range cmds {
			// String is the arguments and the reply, whatever its type.
			sb.WriteString(c.String())
			sb.WriteByte('\n')
		}
		mu.Lock()
		trips = append(trips, sb.String())
		mu.Unlock()
	}
	b.rt.record.Store(&record)
	defer b.rt.record.Store(nil)
	if _, err := b.process(ctx, s, n); err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, trip := range trips {
		for _, name := range names {
			if strings.Contains(trip, name) {
				named++
				break
			}
		}
	}
	return named, len(trips)
}
