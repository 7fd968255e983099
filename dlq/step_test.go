package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// TestRunStepDeathNamesTheStep: a run step's death is recorded with its
// step, named in the warning line and the alert, and its replay is the
// same step of the same run.
func TestRunStepDeathNamesTheStep(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	b.startWorker(t)
	taskID := b.enqueue(t, "permanent", queue.EnqueueOptions{RunID: "run-s", Step: "review", Key: "run-s/review"})
	waitFor(t, 10*time.Second, "the step to be archived", func() bool { return b.taskState(t, taskID) == queue.TaskArchived })

	recs, err := b.store.List(ctx, Filter{})
	if err != nil || len(recs) != 1 {
		t.Fatalf("List = %+v, %v; want 1 record", recs, err)
	}
	r := b.get(t, recs[0].ID)
	if r.Step != "review" || r.RunID != "run-s" {
		t.Fatalf("record step %q run %q, want review run-s", r.Step, r.RunID)
	}
	raw, _ := json.Marshal(r)
	if !strings.Contains(string(raw), `"step":"review"`) {
		t.Fatalf("record JSON lacks the step: %s", raw)
	}
	warn := b.logs.lines("dead letter recorded")
	if len(warn) != 1 || warn[0]["step"] != "review" || warn[0]["run_id"] != "run-s" {
		t.Fatalf("warning lines = %v", warn)
	}
	alerts := b.alerts.all()
	if len(alerts) != 1 || alerts[0].Step != "review" || alerts[0].RunID != "run-s" || !strings.Contains(alerts[0].Text, "run run-s, step review") {
		t.Fatalf("alerts = %+v", alerts)
	}
	if raw, _ := json.Marshal(alerts[0]); !strings.Contains(string(raw), `"step":"review"`) {
		t.Fatalf("alert JSON lacks the step: %s", raw)
	}

	rep, err := b.store.Replay(ctx, r.ID, ReplayOptions{})
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	info, err := b.insp.GetTaskInfo("default", rep.TaskID)
	if err != nil || info.Headers[jobs.HeaderStep] != "review" || info.Headers[jobs.HeaderRunID] != "run-s" || info.Headers[jobs.HeaderReplayOf] != r.ID {
		t.Fatalf("replay task = %+v, %v; want step review of run run-s, replay of %s", info, err, r.ID)
	}
	if _, ok := info.Headers[jobs.HeaderRunVersion]; ok {
		t.Fatalf("replay carries the stale run version: %v", info.Headers)
	}
}

// TestReplayOfARenderedRunStep: a run step whose stored payload is the
// worker-rendered "{}" replays without schema validation (the worker renders
// it again); the same payload outside a run is refused by the schema.
func TestReplayOfARenderedRunStep(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	step := b.deadDirect(t, Death{TaskID: "rs-1", RunID: "run-t", Step: "draft", Payload: []byte(queue.RunStepPayload),
		Headers: map[string]string{jobs.HeaderRunID: "run-t", jobs.HeaderStep: "draft", jobs.HeaderRunVersion: "4"}})
	plain := b.deadDirect(t, Death{TaskID: "plain-1", Payload: []byte(queue.RunStepPayload)})

	rep, err := b.store.Replay(ctx, step, ReplayOptions{})
	if err != nil {
		t.Fatalf("Replay of the run step: %v", err)
	}
	info, err := b.insp.GetTaskInfo("default", rep.TaskID)
	if err != nil || string(info.Payload) != queue.RunStepPayload || info.Headers[jobs.HeaderStep] != "draft" || info.Headers[jobs.HeaderRunID] != "run-t" {
		t.Fatalf("replay task = %+v, %v", info, err)
	}
	var ie *InvalidReplayError
	if _, err := b.store.Replay(ctx, plain, ReplayOptions{}); !errors.As(err, &ie) {
		t.Fatalf("Replay of {} outside a run = %v, want an InvalidReplayError", err)
	}
}

// TestRecordWithoutStepFieldReadsTheHeader: a record written before records
// had a step field shows the step its task's headers name.
func TestRecordWithoutStepFieldReadsTheHeader(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	id := b.deadDirect(t, Death{TaskID: "old-1", RunID: "run-o", Step: "plan",
		Headers: map[string]string{jobs.HeaderRunID: "run-o", jobs.HeaderStep: "plan"}})
	if err := b.rdb.HDel(ctx, recordKey(id), "step").Err(); err != nil {
		t.Fatal(err)
	}
	if got := b.get(t, id).Step; got != "plan" {
		t.Fatalf("step = %q, want plan from the headers", got)
	}
}
