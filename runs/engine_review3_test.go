package runs

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// lostWith makes the next EVAL/EVALSHA with more than 2 keys (the
// EnqueueWith script) run on Redis but report an error, as a timeout
// after the script ran would.
type lostWith struct{ armed atomic.Bool }

func (h *lostWith) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *lostWith) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		n := strings.ToLower(cmd.Name())
		if err == nil && (n == "evalsha" || n == "eval") && len(cmd.Args()) > 3 {
			if nk, _ := cmd.Args()[2].(int); nk > 2 && h.armed.CompareAndSwap(true, false) {
				e := errors.New("i/o timeout (reply lost)")
				cmd.SetErr(e)
				return e
			}
		}
		return err
	}
}
func (h *lostWith) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// X1: the EnqueueWith script ran (success stored, b enqueued) but its
// reply was lost: write() writes the change alone, conflicts, update
// recomputes and succeeded's "already" branch adds the usage again.
func TestLostReplyAndRepair_X1LostReplyDoubleCountsUsage(t *testing.T) {
	b := setup(t, nil, nil)
	h := &lostWith{}
	b.rdb.AddHook(h)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"c"}`), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h.armed.Store(true)
	_, res := b.deliver(t, st.RunID, "a")
	run := b.get(t, st.RunID)
	a := stepOf(t, run, "a")
	t.Logf("outcome %s armed-left %v; a attempts %d tokens %d; run tokens %d", res.Outcome, h.armed.Load(), a.Attempts, a.TokensIn+a.TokensOut, run.TokensIn+run.TokensOut)
	if a.TokensIn+a.TokensOut != 15 || a.Attempts != 1 {
		t.Errorf("one attempt spending 15 tokens recorded as %d attempts, %d tokens", a.Attempts, a.TokensIn+a.TokensOut)
	}
}

// X1b: same with a deferred start (the cache): attempts counted twice too.
func TestLostReplyAndRepair_X1bLostReplyDeferredDoubleCountsAttempt(t *testing.T) {
	b := setup(t, nil, nil)
	h := &lostWith{}
	b.rdb.AddHook(h)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"c"}`), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.deliver(t, st.RunID, "a")
	bv := b.pendingVersion(t, st.RunID, "b")
	h.armed.Store(true)
	_, res := b.deliver(t, st.RunID, "b", func(s *jobs.Step) { s.Headers = map[string]string{jobs.HeaderRunVersion: bv} })
	run := b.get(t, st.RunID)
	bs := stepOf(t, run, "b")
	t.Logf("outcome %s; b attempts %d tokens %d; run attempts %d", res.Outcome, bs.Attempts, bs.TokensIn+bs.TokensOut, run.Attempts)
	if bs.TokensIn+bs.TokensOut != 15 || bs.Attempts != 1 {
		t.Errorf("one attempt spending 15 tokens recorded as %d attempts, %d tokens", bs.Attempts, bs.TokensIn+bs.TokensOut)
	}
}

// X2: the success is stored, the next enqueue fails: repairLater snoozes.
// The snoozed task comes back (same attempt: the last one); the repair
// enqueue fails once more: the "repaired" verdict returns a plain error,
// so the last attempt is dead-lettered, and the run is stranded with b
// queued and no task.
func TestLostReplyAndRepair_X2RepairOnLastAttemptStrandsRun(t *testing.T) {
	b := setup(t, nil, nil)
	b.runs.apart = true
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"c"}`), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last := func(s *jobs.Step) { s.Attempt, s.MaxAttempts = 3, 3 }
	b.failEnqueues(1)
	_, res := b.deliver(t, st.RunID, "a", last)
	t.Logf("first delivery: %s (%v)", res.Outcome, res.Err)
	b.failEnqueues(1)
	_, res = b.deliver(t, st.RunID, "a", last)
	run := b.get(t, st.RunID)
	info, _ := b.insp.Task(ctx, testQueue, queue.TaskIDForKey(testQueue, stepKey(st.RunID, "b")))
	t.Logf("repair delivery: %s (%v); run %s; a %s; b %s; b task %v", res.Outcome, res.Err, run.Status, stepOf(t, run, "a").Status, stepOf(t, run, "b").Status, info.State)
	if res.Outcome == jobs.OutcomeDead && info.State == queue.TaskGone {
		t.Errorf("succeeded step a dead-lettered on its repair delivery; b queued with no task: run stuck")
	}
}

// X3: markRunning's write lands but its reply is lost: markRunning says
// it did not write, the attempt stays "deferred" and succeeded counts it
// again.
func TestLostReplyAndRepair_X3MarkRunningLostReplyDoubleCounts(t *testing.T) {
	b := setup(t, nil, nil)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"c"}`), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.deliver(t, st.RunID, "a")
	bv := b.pendingVersion(t, st.RunID, "b")
	var armed atomic.Bool
	b.rdb.AddHook(&casLost{armed: &armed})
	b.during = func(ctx context.Context, s *jobs.Step) {
		if s.Name == "b" {
			armed.Store(true)
			time.Sleep(1300 * time.Millisecond)
		}
	}
	b.deliver(t, st.RunID, "b", func(s *jobs.Step) { s.Headers = map[string]string{jobs.HeaderRunVersion: bv} })
	run := b.get(t, st.RunID)
	bs := stepOf(t, run, "b")
	t.Logf("b attempts %d; run attempts %d", bs.Attempts, run.Attempts)
	if bs.Attempts != 1 {
		t.Errorf("one attempt counted %d times", bs.Attempts)
	}
}

// casLost loses the reply of the next 2-key EVAL(SHA) (the CAS script alone).
type casLost struct{ armed *atomic.Bool }

func (h *casLost) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *casLost) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		n := strings.ToLower(cmd.Name())
		if err == nil && (n == "evalsha" || n == "eval") && len(cmd.Args()) > 3 {
			if nk, _ := cmd.Args()[2].(int); nk == 2 && h.armed.CompareAndSwap(true, false) {
				e := errors.New("i/o timeout (reply lost)")
				cmd.SetErr(e)
				return e
			}
		}
		return err
	}
}
func (h *casLost) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestLostReplyAndRepair_X6LostReplyStartSaysDuplicate(t *testing.T) {
	b := setup(t, nil, nil)
	h := &lostWith{}
	b.rdb.AddHook(h)
	h.armed.Store(true)
	st, err := b.runs.Start(context.Background(), "three", json.RawMessage(`{"topic":"c"}`), StartOptions{})
	t.Logf("start: %+v err %v", st, err)
	if st.Duplicate {
		t.Errorf("a new unkeyed run is reported as a duplicate")
	}
}

func TestLostReplyAndRepair_X7LostReplyFallbackDoubleUsage(t *testing.T) {
	wf := Workflow{Queue: testQueue, Steps: []jobs.StepDef{
		{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"a","mode":"dead"}`), Fallback: "a2", MaxAttempts: 1},
		{Name: "a2", Kind: "test.echo", Payload: json.RawMessage(`{"text":"alt"}`)},
		{Name: "b", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.steps.a.output.text}}"}`)},
	}}
	b := setup(t, map[string]Workflow{"fb": wf}, nil)
	h := &lostWith{}
	b.rdb.AddHook(h)
	st, err := b.runs.Start(context.Background(), "fb", nil, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h.armed.Store(true)
	b.deliver(t, st.RunID, "a", func(s *jobs.Step) { s.Workflow = "fb"; s.MaxAttempts = 1 })
	run := b.get(t, st.RunID)
	a := stepOf(t, run, "a")
	t.Logf("a %s tokens %d cost %v", a.Status, a.TokensIn+a.TokensOut, run.CostUSD)
	if a.TokensIn+a.TokensOut != 7 {
		t.Errorf("a dead attempt spending 7 tokens recorded as %d", a.TokensIn+a.TokensOut)
	}
}
