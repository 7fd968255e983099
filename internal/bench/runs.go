package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// The runs row: three-step runs of noop steps through the run engine
// against the same number of plain noop tasks.
const (
	// runsRowName names the row.
	runsRowName = "runs, 3 steps"
	// runsWorkflow is the workflow the row's runs start.
	runsWorkflow = RunsWorkflowName
	// runSteps is the number of steps per run.
	runSteps = 3
)

// RunsWorkflowName names the workflow of the runs row: a runtime whose
// run engine measures the row (Options.Runs) must know it, as
// RunsWorkflow defines it.
const RunsWorkflowName = "bench3"

// RunsWorkflow is the runs row's workflow: three noop steps.
func RunsWorkflow() runs.Workflow { return runsWorkflowDef() }

// runsWorkflowDef is bench3: three noop steps with the noop payload.
func runsWorkflowDef() runs.Workflow {
	wf := runs.Workflow{Name: runsWorkflow}
	for i := range runSteps {
		wf.Steps = append(wf.Steps, jobs.StepDef{Name: fmt.Sprintf("s%d", i+1), Kind: jobs.KindNoop, Payload: json.RawMessage(payload)})
	}
	return wf
}

// runsCount is the number of runs of the row: a third of the tasks of a
// throughput phase, at least one; the row's plain side processes as many
// tasks as the runs have steps.
func (b *bench) runsCount() int { return max(1, b.opts.Tasks/runSteps) }

// runsRow compares steps per second of three-step runs with tasks per
// second of plain noop tasks, both with K loops and the full chain, and the
// round trips each step costs against a plain task's, enqueue included
// on both sides (a plain task's enqueue; a run's start and the engine's
// enqueue of each next step): the run engine's share is what a step costs
// beyond that.
func (b *bench) runsRow() row {
	k := b.opts.Loops
	steps := runSteps * b.runsCount()
	return row{
		name:   runsRowName,
		raw:    fmt.Sprintf("agentq, %d loops, full chain, plain noop tasks", k),
		agentq: fmt.Sprintf("agentq, %d loops, full chain, runs of %d noop steps (steps/s)", k, runSteps),
		runRaw: func(ctx context.Context) (Throughput, error) {
			b.rt.start()
			err := b.fill(ctx, b.agentqK, steps)
			enqueued := b.rt.stop()
			if err != nil {
				return Throughput{}, fmt.Errorf("pre-fill: %w", err)
			}
			t, err := b.process(ctx, b.agentqK, steps)
			if err != nil {
				return t, err
			}
			return t.withRoundTrips(*t.RoundTrips + enqueued), nil
		},
		runAgentq: b.runsPhase,
		// Issue 9's target: a run's bookkeeping adds at most one round
		// trip per step.
		targets: []target{{kind: targetExtraRoundTrips, bound: 1}},
	}
}

// runsPhase starts the row's runs (their first steps wait in the queue),
// then times a worker with the run engine's middleware and observer until
// every run's last step has succeeded, counting the Redis commands and
// round trips of the starts and the whole processing (the plain side
// counts its enqueues likewise). Afterwards, untimed, it checks that the engine
// reports every run succeeded.
func (b *bench) runsPhase(ctx context.Context) (Throughput, error) {
	eng, own := b.opts.Engine, false
	if eng == nil {
		var err error
		eng, err = runs.New(b.rdb, b.runsQC, queue.NewInspector(b.rdb), runs.Config{
			Workflows: map[string]runs.Workflow{runsWorkflow: runsWorkflowDef()},
			Logger:    &b.log,
		})
		if err != nil {
			return Throughput{}, fmt.Errorf("run engine: %w", err)
		}
		own = true
	}
	n := b.runsCount()
	ids := make([]string, n)
	b.rt.start()
	err := parallel(ctx, b.opts.Enqueuers, n, func(ctx context.Context, i int) error {
		st, err := eng.Start(ctx, runsWorkflow, json.RawMessage(`{}`), runs.StartOptions{})
		if err != nil {
			return fmt.Errorf("start run %d of %d of workflow %s: %w", i+1, n, runsWorkflow, err)
		}
		ids[i] = st.RunID
		return nil
	})
	started := b.rt.stop()
	if err != nil {
		return Throughput{}, err
	}

	if err := resetStats(ctx, b.rdb); err != nil {
		return Throughput{}, err
	}
	tl := newTally()
	tl.expect(int64(n))
	b.rt.start()
	start := time.Now()
	w, err := b.runsWorker(eng, own, tl)
	if err == nil {
		err = w.Start()
	}
	if err != nil {
		b.rt.stop()
		return Throughput{}, err
	}
	err = tl.wait(ctx)
	elapsed := time.Since(start)
	w.Shutdown()
	trips := b.rt.stop()
	if err != nil {
		return Throughput{}, fmt.Errorf("%d of %d runs finished: %w", tl.count(), n, err)
	}
	cmds, err := commandCount(ctx, b.rdb)
	if err != nil {
		return Throughput{}, err
	}
	if err := checkRunsSucceeded(ctx, eng, ids); err != nil {
		return Throughput{}, err
	}
	return throughput(runSteps*n, elapsed, cmds).withRoundTrips(started + trips), nil
}

// runsWorker builds the runs row's worker: the agentq worker of the K-loop
// row with the run engine's middleware outermost and its observer after
// the chain's, then an observer that counts each run whose last step
// succeeded (the engine has stored that by then: observers run in order)
// and ends the phase at a failed step.
func (b *bench) runsWorker(eng *runs.Runs, own bool, tl *tally) (*queue.Worker, error) {
	last := fmt.Sprintf("s%d", runSteps)
	finish := jobs.ObserverFunc(func(_ context.Context, s *jobs.Step, r *jobs.Result) {
		if s.RunID == "" {
			return
		}
		switch r.Outcome {
		case jobs.OutcomeSuccess:
			if s.Name == last && !s.Answered {
				tl.add(nil)
			}
		case jobs.OutcomeRetry, jobs.OutcomeDead:
			tl.finish(fmt.Errorf("run %s step %s: %s (%s): %s", s.RunID, s.Name, r.Outcome, r.Class, r.Message))
		}
	})
	o := b.opts
	if own {
		// No chain of a runtime: the engine's middleware outermost, its
		// observer after the chain's.
		o.Middleware = append([]jobs.Middleware{eng.Middleware()}, o.Middleware...)
		o.Observers = append(slices.Clone(o.Observers), eng.Observer())
	}
	o.Observers = append(slices.Clone(o.Observers), finish)
	return newAgentqWorker(b.rdb, b.reg, b.log, o, b.opts.Loops, hooks{done: func(err error) {
		if err != nil {
			tl.finish(fmt.Errorf("a noop step failed: %w", err))
		}
	}})
}

// checkRunsSucceeded asks the engine for each run, waiting for any not
// ended yet, and fails at a run that ended other than succeeded.
func checkRunsSucceeded(ctx context.Context, eng *runs.Runs, ids []string) error {
	for _, id := range ids {
		for {
			r, err := eng.Get(ctx, id)
			if err != nil {
				return fmt.Errorf("run %s: %w", id, err)
			}
			if r.Status == runs.StatusSucceeded {
				break
			}
			if r.Status.Terminal() {
				return fmt.Errorf("run %s ended %s after its last step succeeded: %s", id, r.Status, r.Reason)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("run %s still %s after its last step succeeded: %w", id, r.Status, context.Cause(ctx))
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}
