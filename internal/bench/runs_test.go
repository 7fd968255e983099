package bench

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/agentq/agentq/jobs"
)

// stubbed reports whether err is the temporary run engine stub's (package
// runs before its engine is merged): the row then cannot measure, and must
// say so clearly.
func stubbed(t *testing.T, err error) bool {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "not built yet") {
		return false
	}
	if !strings.Contains(err.Error(), runsRowName) || !strings.Contains(err.Error(), "start run ") {
		t.Fatalf("the stub's error does not name the row and the failed start: %v", err)
	}
	return true
}

// TestRunsRow runs the runs row once, small: both sides process as many
// steps as the runs have, and round trips are counted per step.
func TestRunsRow(t *testing.T) {
	t.Parallel()
	if err := runsWorkflowDef().Validate(func(k string) bool { return k == jobs.KindNoop }); err != nil {
		t.Fatalf("bench3 is not a valid workflow: %v", err)
	}
	rdb := exclusive(t)
	b, err := newBench(rdb, registry(t), Options{Tasks: 301, Reps: 1, Loops: 2, Runs: true}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	rows := b.rows()
	if i := slices.IndexFunc(rows, func(r row) bool { return r.name == runsRowName }); i != len(rows)-1 {
		t.Fatalf("runs row at %d of %d rows, want last (no binary row)", i, len(rows))
	}
	run, err := b.pair(context.Background(), b.runsRow(), 0)
	if stubbed(t, err) {
		t.Skipf("the run engine is the stub: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for side, tp := range map[string]Throughput{"plain": run.Raw, "runs": run.Agentq} {
		if tp.Tasks != 300 || tp.TasksPerSec <= 0 || tp.RoundTripsPerTask == nil || *tp.RoundTripsPerTask <= 0 {
			t.Errorf("%s side: %+v, want 300 steps measured with round trips", side, tp)
		}
	}
	if run.Ratio <= 0 {
		t.Errorf("ratio %v", run.Ratio)
	}
	// The target: a run's bookkeeping adds at most one round trip per
	// step (enqueues counted on both sides). Its starts cost one more
	// than a plain enqueue (the run index) and its last step's success
	// one write of its own: +2/3 per step of a three-step run.
	extra := *run.Agentq.RoundTripsPerTask - *run.Raw.RoundTripsPerTask
	t.Logf("round trips per step: runs %.2f, plain %.2f, extra %+.2f", *run.Agentq.RoundTripsPerTask, *run.Raw.RoundTripsPerTask, extra)
	if extra > 1 {
		t.Errorf("runs cost %.2f round trips per step, plain tasks %.2f: %+.2f, over the target of +1",
			*run.Agentq.RoundTripsPerTask, *run.Raw.RoundTripsPerTask, extra)
	}
	if extra < 0.3 {
		t.Errorf("runs cost %.2f round trips per step, plain tasks %.2f: is the engine in the chain?",
			*run.Agentq.RoundTripsPerTask, *run.Raw.RoundTripsPerTask)
	}
}

func TestRunsRowExplainedInText(t *testing.T) {
	t.Parallel()
	var with, without bytes.Buffer
	if err := (Report{Rows: []Row{{Name: runsRowName}}}).WriteText(&with); err != nil {
		t.Fatal(err)
	}
	if err := (Report{Rows: []Row{{Name: "process, 1 loop"}}}).WriteText(&without); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(with.String(), "| runs, 3 steps |") || !strings.Contains(with.String(), "steps/s of three-step runs") {
		t.Errorf("text lacks the runs row or its note:\n%s", with.String())
	}
	if strings.Contains(without.String(), "three-step runs") {
		t.Errorf("the note is printed without a runs row:\n%s", without.String())
	}
}
