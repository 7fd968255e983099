//go:build unix

package scaletest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// failoverQueue is the queue the failover tests enqueue to and serve.
const failoverQueue = "default"

// lossWindow bounds how long before the kill an acknowledged enqueue may
// be lost: Redis replicates asynchronously, so what the master
// acknowledged but had not sent to its replica yet dies with it. On
// loopback the replication lag is well under a millisecond; a task
// acknowledged longer than this before the kill and lost would mean
// agentq, not replication, lost it.
const lossWindow = time.Second

// TestClusterFailover runs a worker and a client enqueueing without pause
// against a 3-master Redis Cluster, kills (SIGKILL) the master owning the
// queue's slot mid-run and lets its replica take over.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	cfg := baseConfig()
	cfg.Redis.ClusterAddrs = c.Addrs
	slotKey := "asynq:{" + failoverQueue + "}:pending"
	runFailover(t, "cluster", cfg, redis.NewUniversalClient(&redis.UniversalOptions{Addrs: c.Addrs}), func(t *testing.T) (string, time.Time, time.Duration) {
		old := c.KillMasterOf(t, slotKey)
		killed := time.Now()
		now, took := c.WaitFailover(t, slotKey, old, 30*time.Second)
		return fmt.Sprintf("master %s of the queue's slot killed, replica %s took over", old.Addr, now.Addr), killed, took
	})
}

// TestSentinelFailover runs a worker and a client on a redis-sentinel://
// URL, enqueueing without pause, kills (SIGKILL) the master and lets the
// sentinels promote the replica.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t, redistest.SentinelOptions{})
	cfg := baseConfig()
	cfg.Redis.URL = s.URL
	runFailover(t, "sentinel", cfg, redis.NewUniversalClient(&redis.UniversalOptions{Addrs: s.Addrs, MasterName: s.MasterName}), func(t *testing.T) (string, time.Time, time.Duration) {
		old := s.KillMaster(t)
		killed := time.Now()
		now, took := s.WaitFailover(t, old, 30*time.Second)
		return fmt.Sprintf("master %s killed, sentinels promoted %s", old.Addr, now.Addr), killed, took
	})
}

// failoverRun is what one failover test saw.
type failoverRun struct {
	mu      sync.Mutex
	acked   map[string]time.Time // task id -> when its enqueue was acknowledged
	order   []string             // task ids in ack order
	errors  int                  // enqueue attempts that failed (and were retried)
	lastErr error
}

func (f *failoverRun) ack(id string, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.acked[id]; !ok {
		f.acked[id] = at
		f.order = append(f.order, id)
	}
}

// runFailover runs the scenario on cfg: a worker and enqueuers clients
// enqueueing keyed tasks one after another (a failed enqueue is retried with the same
// key until acknowledged), a fault (kill) mid-run that returns what it did,
// when the master was dead and how long the failover took, then a drain until every acknowledged
// task ran or is gone from Redis. It reports lost, duplicated and the
// time without service, and asserts what agentq guarantees.
func runFailover(t *testing.T, name string, cfg config.Config, check redis.UniversalClient, kill func(t *testing.T) (string, time.Time, time.Duration)) {
	t.Cleanup(func() { _ = check.Close() })
	rec := newRecorder()
	cfg.Worker.Queues = map[string]int{failoverQueue: 1}
	cfg.Enqueue.Queue = failoverQueue
	rt := newRuntime(t, cfg, rec, failoverWorkflows)
	runWorker(t, rt)
	engine, err := rt.Runs()
	if err != nil {
		t.Fatal(err)
	}
	f := &failoverRun{acked: map[string]time.Time{}}

	ctx, stop := context.WithCancel(context.Background())
	enqDone := make(chan struct{})
	go func() {
		defer close(enqDone)
		var wg sync.WaitGroup
		for c := range enqueuers {
			wg.Go(func() { enqueueLoop(ctx, rt, f, c) })
		}
		wg.Wait()
	}()
	defer func() { stop(); <-enqDone }()

	// Warm up: the worker is serving and tasks flow.
	waitFor(t, 30*time.Second, "200 tasks processed before the fault", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.runs) >= 200
	})
	// Runs in flight at the fault: each step's state change and the next
	// step's enqueue are two calls on Cluster, on two masters.
	var runIDs []string
	for i := range failoverRuns {
		st, err := engine.Start(context.Background(), "relay", json.RawMessage(`{"id":"r"}`), runs.StartOptions{Key: fmt.Sprint("relay-", i)})
		if err != nil {
			t.Fatal(err)
		}
		runIDs = append(runIDs, st.RunID)
	}
	// killAt is stamped once the kill returned (the master is dead), so an
	// enqueue the old master acknowledged while the kill was under way
	// counts as before it: async replication may lose those.
	what, killAt, took := kill(t)
	healed := killAt.Add(took)
	// Service after the failover: 300 more tasks acknowledged.
	f.mu.Lock()
	before := len(f.order)
	f.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f.mu.Lock()
		n, errs, last := len(f.order)-before, f.errors, f.lastErr
		f.mu.Unlock()
		if n >= 300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s; then only %d enqueues acknowledged in 30s (%d errors, last: %v)", what, n, errs, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	<-enqDone

	// Drain: every acknowledged task runs, or is gone from Redis (lost).
	// A task whose dequeue reply or completion the failover lost is in the
	// active list with a lease that expires 30s later, and asynq's
	// recoverer, which looks every minute, brings it back: up to about 90s,
	// more on a loaded machine (60s failed once in CI).
	f.mu.Lock()
	acked := f.order
	f.mu.Unlock()
	lost := map[string]bool{}
	deadline = time.Now().Add(150 * time.Second)
	for {
		var waiting []string
		for _, id := range acked {
			if rec.count(id) > 0 || lost[id] {
				continue
			}
			n, err := check.Exists(context.Background(), "asynq:{"+failoverQueue+"}:t:"+id).Result()
			switch {
			case err == nil && n == 0 && rec.count(id) == 0:
				lost[id] = true
			default:
				waiting = append(waiting, id)
			}
		}
		if len(waiting) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged tasks still in Redis and not run after 150s: %v", len(waiting), waiting[:min(5, len(waiting))])
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Every run started before the fault ends, and succeeds. A step whose
	// completion the failover lost runs again once its lease expires and
	// asynq's recoverer (every minute) finds it: up to about 90s, more on a
	// loaded machine.
	runsOK := 0
	waitFor(t, 150*time.Second, "every run started before the fault ends", func() bool {
		runsOK = 0
		for _, id := range runIDs {
			r, err := engine.Get(context.Background(), id)
			if err != nil || !r.Status.Terminal() {
				return false
			}
			if r.Status == runs.StatusSucceeded {
				runsOK++
			}
		}
		return true
	})
	if runsOK != len(runIDs) {
		t.Errorf("%d of %d runs in flight at the fault succeeded", runsOK, len(runIDs))
	}

	// Numbers.
	var dups []string
	var lostLate []string
	for _, id := range acked {
		if rec.count(id) > 1 {
			dups = append(dups, id)
		}
		if lost[id] && f.acked[id].Before(killAt.Add(-lossWindow)) || lost[id] && f.acked[id].After(killAt) {
			lostLate = append(lostLate, id)
		}
	}
	rec.mu.Lock()
	times := slices.Clone(rec.times)
	firsts := map[string]time.Time{}
	for _, id := range dups {
		firsts[id] = rec.first[id]
	}
	rec.mu.Unlock()
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	gap := serviceGap(times, killAt)
	ackTimes := make([]time.Time, 0, len(acked))
	for _, id := range acked {
		ackTimes = append(ackTimes, f.acked[id])
	}
	enqGap := serviceGap(ackTimes, killAt)
	report(t, fmt.Sprintf("failover: %s: %s; failover took %.1fs; acknowledged=%d lost=%d duplicated=%d "+
		"enqueue_errors=%d (retried with the same key) no_processing=%.1fs no_enqueue=%.1fs; runs in flight succeeded=%d/%d",
		name, what, took.Seconds(), len(acked), len(lost), len(dups), f.errors, gap.Seconds(), enqGap.Seconds(), runsOK, len(runIDs)))

	// What agentq guarantees: what Redis acknowledged after the failover is
	// never lost; what is lost was acknowledged by the old master just before
	// it died (asynchronous replication); a task runs twice only when it was
	// in flight at the fault.
	if len(lostLate) > 0 {
		t.Errorf("%d lost tasks were acknowledged after the kill or more than %v before it: %v", len(lostLate), lossWindow, lostLate[:min(5, len(lostLate))])
	}
	for _, id := range dups {
		if d := firsts[id].Sub(killAt); d < -lossWindow || firsts[id].After(healed.Add(5*time.Second)) {
			t.Errorf("task %s ran twice, first %v from the kill: not in flight at the fault", id, d)
		}
	}
}

// failoverRuns is the number of three-step runs started just before the
// fault.
const failoverRuns = 20

// failoverWorkflows holds relay, a run of three steps of the test kind
// that work 50ms each.
var failoverWorkflows = map[string]runs.Workflow{
	"relay": {
		Queue: failoverQueue,
		Steps: []jobs.StepDef{
			{Name: "a", Kind: "scale.work", Payload: json.RawMessage(`{"id":"{{ .input.id }}a","work":50}`)},
			{Name: "b", Kind: "scale.work", Payload: json.RawMessage(`{"id":"{{ .steps.a.output.id }}b","work":50}`)},
			{Name: "c", Kind: "scale.work", Payload: json.RawMessage(`{"id":"{{ .steps.b.output.id }}c","work":50}`)},
		},
	},
}

// enqueuers is the number of clients enqueueing at once in a failover test.
const enqueuers = 4

// enqueueLoop enqueues keyed tasks one after another until ctx ends; a
// failed enqueue is retried with the same key until it is acknowledged.
// Each task works 5ms, so that some are in flight at the fault.
func enqueueLoop(ctx context.Context, rt *agentq.Runtime, f *failoverRun, client int) {
	for n := 0; ctx.Err() == nil; n++ {
		key := fmt.Sprintf("fo-%d-%d", client, n)
		for ctx.Err() == nil {
			res, err := rt.Client().EnqueueArgs(ctx, WorkArgs{ID: key, Work: 5}, queue.EnqueueOptions{Key: key})
			if err == nil {
				f.ack(res.ID, time.Now())
				break
			}
			if ctx.Err() != nil {
				return
			}
			f.mu.Lock()
			f.errors++
			f.lastErr = err
			f.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// serviceGap is the longest time between two consecutive events of the
// sorted times from a second before at on: the time without service
// around a fault at at.
func serviceGap(times []time.Time, at time.Time) time.Duration {
	from := at.Add(-time.Second)
	var gap time.Duration
	for i := 1; i < len(times); i++ {
		if times[i-1].Before(from) {
			continue
		}
		gap = max(gap, times[i].Sub(times[i-1]))
	}
	return gap
}
