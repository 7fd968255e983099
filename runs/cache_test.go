package runs

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// readCounter counts the reads of a run's state (HGETALL).
type readCounter struct{ n atomic.Int64 }

func (c *readCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *readCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.EqualFold(cmd.Name(), "hgetall") {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *readCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestStateCache: a step whose task carries the version this process
// wrote starts from the kept state without reading it; a change another
// process made meanwhile (a cancel) is still seen, through the compare and
// set of the step's first write.
func TestStateCache(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	rc := &readCounter{}
	b.rdb.AddHook(rc)
	ctx := context.Background()
	at := func(id string) func(*jobs.Step) {
		return func(s *jobs.Step) {
			run := b.get(t, id)
			s.Headers = map[string]string{jobs.HeaderRunVersion: strconv.FormatInt(run.Version, 10)}
		}
	}

	st, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"c"}`), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.deliver(t, st.RunID, "a", at(st.RunID))
	before := rc.n.Load()
	_, res := b.deliver(t, st.RunID, "b", func(s *jobs.Step) {
		// b's task carries the version a's success wrote.
		s.Headers = map[string]string{jobs.HeaderRunVersion: b.pendingVersion(t, st.RunID, "b")}
	})
	if res.Outcome != jobs.OutcomeSuccess || len(b.callsOf("b")) != 1 {
		t.Fatalf("b: %+v", res)
	}
	if n := rc.n.Load() - before; n != 0 {
		t.Errorf("b read its run's state %d times, want 0 (the state a's success wrote was kept)", n)
	}
	// b's start was written with its success: counted once, with a time.
	if run := b.get(t, st.RunID); stepOf(t, run, "b").Attempts != 1 || stepOf(t, run, "b").Started.IsZero() || run.StepsStarted != 2 || run.Attempts != 2 {
		t.Errorf("after b: b %+v, run attempts %d, steps started %d; want b counted once", stepOf(t, run, "b"), run.Attempts, run.StepsStarted)
	}

	// Another process cancels the run while c is queued: the cancel
	// deletes c's task, so c never starts, although this process still
	// holds the state c was queued at.
	nop := zerolog.Nop()
	other, err := New(b.rdb, b.client, b.insp, Config{Workflows: b.runs.Workflows(), Logger: &nop})
	if err != nil {
		t.Fatal(err)
	}
	cVersion := b.pendingVersion(t, st.RunID, "c")
	if err := other.Cancel(ctx, st.RunID, "stop"); err != nil {
		t.Fatal(err)
	}
	if p := b.pending(t); slices.Contains(p, queue.TaskIDForKey(testQueue, stepKey(st.RunID, "c"))) {
		t.Fatalf("c's task is still pending after the cancel: %v", p)
	}
	// A task of c queued at another version than the kept state (a
	// replay, a retry) reads the run and sees the cancel.
	v, _ := strconv.ParseInt(cVersion, 10, 64)
	s, _ := b.deliver(t, st.RunID, "c", func(s *jobs.Step) {
		s.Headers = map[string]string{jobs.HeaderRunVersion: strconv.FormatInt(v+1, 10)}
	})
	if !s.Answered || len(b.callsOf("c")) != 0 {
		t.Fatalf("c ran after the run was cancelled elsewhere (answered %v, calls %d)", s.Answered, len(b.callsOf("c")))
	}
	if run := b.get(t, st.RunID); run.Status != StatusCancelled || stepOf(t, run, "c").Status != StepSkipped {
		t.Fatalf("run %s, c %s", run.Status, stepOf(t, run, "c").Status)
	}
}

// pendingVersion is the run version the pending task of step carries.
func (b *bundle) pendingVersion(t *testing.T, runID, step string) string {
	t.Helper()
	info, err := b.insp.Task(context.Background(), testQueue, queue.TaskIDForKey(testQueue, stepKey(runID, step)))
	if err != nil {
		t.Fatal(err)
	}
	v := info.Headers[jobs.HeaderRunVersion]
	if v == "" {
		t.Fatalf("step %s's task carries no run version: %+v", step, info.Headers)
	}
	return v
}

// TestWorkerWithoutTheWorkflowMovesTheRunOn: a worker whose own
// configuration does not know the run's workflow (the file changed after
// it started) still stores a step's success and queues the next step: the
// run carries its steps' definitions and queues.
func TestWorkerWithoutTheWorkflowMovesTheRunOn(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"w"}`), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	qc, err := queue.NewClient(b.rdb, b.reg, queue.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	nop := zerolog.Nop()
	stale, err := New(b.rdb, qc, b.insp, Config{Logger: &nop})
	if err != nil {
		t.Fatal(err)
	}
	b.runs = stale
	b.chain = jobs.Chain(b.reg.Handler(), stale.Middleware())
	_, res := b.deliver(t, st.RunID, "a")
	if res.Outcome != jobs.OutcomeSuccess || len(b.callsOf("a")) != 1 {
		t.Fatalf("a: %+v, %d calls", res, len(b.callsOf("a")))
	}
	if p := b.pending(t); !slices.Contains(p, queue.TaskIDForKey(testQueue, stepKey(st.RunID, "b"))) {
		t.Fatalf("b was not queued: pending %v", p)
	}
}
