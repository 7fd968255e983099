package agentq_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/runs"
)

// TestUnservedQueues: with no worker, every queue asked about is
// unserved, and the hint starts a worker serving it, named with the
// program's name; once a worker of this runtime runs, its queues are
// served and the others are not.
func TestUnservedQueues(t *testing.T) {
	t.Parallel()
	b := setup(t, agentq.Options{Name: "myprog"})
	ctx := context.Background()
	cmd := b.rt.CommandLine() + " worker"
	if !strings.HasPrefix(cmd, "myprog ") {
		t.Fatalf("CommandLine %q does not start with the program's name", cmd)
	}
	got, err := b.rt.UnservedQueues(ctx, []string{"default", "other"})
	if err != nil {
		t.Fatal(err)
	}
	want := []agentq.UnservedQueue{
		{Queue: "default", Hint: cmd + " (a worker of this configuration serves it)"},
		{Queue: "other", Hint: cmd + " --queues default=1,other=1 (or add other to worker.queues)"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("no worker: UnservedQueues = %+v; want %+v", got, want)
	}
	const wantWarning = `no worker serves queue "other": its tasks wait until one does; start one with: `
	if w := got[1].Warning(); w != wantWarning+want[1].Hint {
		t.Errorf("Warning = %q; want %q", w, wantWarning+want[1].Hint)
	}
	if got, err := b.rt.UnservedQueues(ctx, nil); err != nil || got != nil {
		t.Errorf("no queues: %v, %v; want nothing", got, err)
	}

	w, err := b.rt.NewWorker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	// The worker's server record is written by asynq's heartbeat.
	deadline := time.Now().Add(20 * time.Second)
	for {
		served, err := b.rt.ServedQueues(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if served["default"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker's server record never showed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, err = b.rt.UnservedQueues(ctx, []string{"default", "other"})
	if err != nil || !slices.Equal(got, want[1:]) {
		t.Fatalf("worker serving default: %+v, %v; want only other", got, err)
	}
}

// TestWorkflowQueues: a run workflow's queues are its queue (or
// enqueue.queue) and its steps' own, each once.
func TestWorkflowQueues(t *testing.T) {
	t.Parallel()
	b := setup(t, agentq.Options{Workflows: map[string]runs.Workflow{
		"own": {Queue: "wq", Steps: []jobs.StepDef{
			{Name: "a", Kind: "noop"}, {Name: "b", Kind: "noop", Queue: "sq"}, {Name: "c", Kind: "noop", Queue: "wq"},
		}},
		"plain": {Steps: []jobs.StepDef{{Name: "a", Kind: "noop"}}},
	}})
	tests := []struct {
		name     string
		workflow string
		want     []string
	}{
		{"own queue and a step's", "own", []string{"wq", "sq"}},
		{"enqueue.queue", "plain", []string{"default"}},
		{"unknown workflow", "nosuch", []string{"default"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := b.rt.WorkflowQueues(tc.workflow); !slices.Equal(got, tc.want) {
				t.Errorf("WorkflowQueues(%q) = %q; want %q", tc.workflow, got, tc.want)
			}
		})
	}
}
