package runs

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// R5: the fallback's enqueue is a separate call after the state write
// (no change.next), retried 3 times within ~300ms and never repaired: a
// refused enqueue (budget Admit, which EnqueueWith skips but Enqueue asks),
// a Redis blip or a crash between the two leaves the run running forever
// with its fallback queued and no task.
func TestEngineFallbackEnqueueLostForever(t *testing.T) {
	wf := Workflow{Queue: testQueue, Steps: []jobs.StepDef{
		{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"a","mode":"dead"}`), Fallback: "a2", MaxAttempts: 1},
		{Name: "a2", Kind: "test.echo", Payload: json.RawMessage(`{"text":"alt"}`)},
		{Name: "b", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.steps.a.output.text}}"}`)},
	}}
	b := setup(t, map[string]Workflow{"fb": wf}, nil)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "fb", nil, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.admitFail.Store(3)
	b.deliver(t, st.RunID, "a", func(s *jobs.Step) { s.Workflow = "fb"; s.MaxAttempts = 1 })
	run := b.get(t, st.RunID)
	id := queue.TaskIDForKey(testQueue, stepKey(st.RunID, "a2"))
	info, terr := b.insp.Task(ctx, testQueue, id)
	gone := terr == nil && info.State == queue.TaskGone
	t.Logf("run %s, a2 %s, a2 task: %v, pending %v, a2 id %s, admitFail left %d", run.Status, stepOf(t, run, "a2").Status, terr, b.pending(t), id, b.admitFail.Load())
	if run.Status == StatusRunning && stepOf(t, run, "a2").Status == StepQueued && gone {
		t.Errorf("run stays running with fallback a2 queued and no task; nothing repairs it")
	}
}

// R6: a success stored whose next-step enqueue failed returns
// recordedError "so the step is retried and its next delivery repairs the
// enqueue" — but on the step's last attempt (MaxAttempts 1 here, or attempt
// N of N) the worker decides Dead: no redelivery, a dead letter for a
// succeeded step, and the run stays running with b queued and no task.
// (apart: the Cluster path, where the enqueue is a second call.)
func TestEngineRecordedErrorOnLastAttemptStrandsRun(t *testing.T) {
	wf := Workflow{Queue: testQueue, Steps: []jobs.StepDef{
		{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"a"}`), MaxAttempts: 1},
		{Name: "b", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.steps.a.output.text}}"}`)},
	}}
	b := setup(t, map[string]Workflow{"two": wf}, nil)
	b.runs.apart = true
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "two", nil, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.admitFail.Store(1) // or: Redis blip / worker crash between the write and the enqueue
	_, res := b.deliver(t, st.RunID, "a", func(s *jobs.Step) { s.Workflow = "two"; s.MaxAttempts = 1 })
	run := b.get(t, st.RunID)
	info, _ := b.insp.Task(ctx, testQueue, queue.TaskIDForKey(testQueue, stepKey(st.RunID, "b")))
	t.Logf("a outcome %s (%v); run %s; a %s; b %s; b task %v", res.Outcome, res.Err, run.Status, stepOf(t, run, "a").Status, stepOf(t, run, "b").Status, info.State)
	if res.Outcome == jobs.OutcomeDead && run.Status == StatusRunning && info.State == queue.TaskGone {
		t.Errorf("a succeeded but is dead-lettered, and b will never be enqueued")
	}
}

// R7: a keyed run started again after its state expired, while the step
// key's dedupe entry (24h window) is still held and the old task is gone
// (asynq deletes a completed task without retention): the enqueue is a
// Duplicate, State says TaskGone (not archived/completed), nothing is
// enqueued and Start reports success. The run never moves.
func TestEngineKeyedRestartWithGoneTaskNeverRuns(t *testing.T) {
	wf := Workflow{Queue: testQueue, Steps: []jobs.StepDef{
		{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"a"}`)},
	}}
	b := setup(t, map[string]Workflow{"once": wf}, func(c *Config) { c.Retention = time.Hour })
	ctx := context.Background()
	first, err := b.runs.Start(ctx, "once", nil, StartOptions{Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	b.deliver(t, first.RunID, "a", func(s *jobs.Step) { s.Workflow = "once" })
	if run := b.get(t, first.RunID); run.Status != StatusSucceeded {
		t.Fatalf("first run %s", run.Status)
	}
	// asynq completes a's task: deleted (no completed-task retention).
	id := queue.TaskIDForKey(testQueue, stepKey(first.RunID, "a"))
	if _, err := b.insp.DeleteTask(ctx, testQueue, id); err != nil {
		t.Fatal(err)
	}
	// The run's state expires (retention 1h < the 24h dedupe window).
	b.rdb.Del(ctx, stateKey(first.RunID), historyKey(first.RunID))
	again, err := b.runs.Start(ctx, "once", nil, StartOptions{Key: "k"})
	info, _ := b.insp.Task(ctx, testQueue, id)
	run := b.get(t, again.RunID)
	t.Logf("start again: %+v err %v; run %s, a %s, a's task %v", again, err, run.Status, stepOf(t, run, "a").Status, info.State)
	if err == nil && info.State == queue.TaskGone && stepOf(t, run, "a").Status == StepQueued {
		t.Errorf("Start succeeded, but step a has no task and never runs")
	}
}

// R9: process never checks that the delivered step is due (queued,
// retrying, running): a task of a pending step (an old task of a keyed
// run's earlier incarnation, a dlq replay, an enqueue with Step+RunID and
// "{}", which skips validation) runs it out of order; here its template
// fails (b has no output yet), the step is dead and the whole run fails
// while a is still queued.
func TestEngineStrayDeliveryOfPendingStep(t *testing.T) {
	b := setup(t, nil, nil)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"t"}`), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, res := b.deliver(t, st.RunID, "c")
	run := b.get(t, st.RunID)
	t.Logf("c outcome %s (%v); run %s (%s); a %s c %s", res.Outcome, res.Err, run.Status, run.Reason, stepOf(t, run, "a").Status, stepOf(t, run, "c").Status)
	if run.Status != StatusRunning {
		t.Errorf("a stray task of pending step c changed the run to %s", run.Status)
	}
}
