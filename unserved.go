package agentq

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// UnservedQueue is a queue that no live worker serves, with the command
// that starts a worker serving it.
type UnservedQueue struct {
	// Queue is the queue's name.
	Queue string
	// Hint is the command that starts a worker serving Queue, beginning
	// with the runtime's CommandLine (so with Options.Name), and a note in
	// parentheses.
	Hint string
}

// Warning is the sentence `agentq enqueue` and `agentq run start` print
// for u: that its tasks wait, and the command that starts a worker.
func (u UnservedQueue) Warning() string {
	return fmt.Sprintf("no worker serves queue %q: its tasks wait until one does; start one with: %s", u.Queue, u.Hint)
}

// UnservedQueues returns those of queues that no live worker serves, in
// the order given, each with the command that starts a worker serving
// it. It reads the served queues once (ServedQueues), bounded by ctx; any
// asynq server on this Redis counts as a worker.
func (r *Runtime) UnservedQueues(ctx context.Context, queues []string) ([]UnservedQueue, error) {
	if len(queues) == 0 {
		return nil, nil
	}
	served, err := r.ServedQueues(ctx)
	if err != nil {
		return nil, err
	}
	var out []UnservedQueue
	for _, q := range queues {
		if !served[q] {
			out = append(out, UnservedQueue{Queue: q, Hint: r.workerHint(q)})
		}
	}
	return out, nil
}

// workerHint is the command that starts a worker serving queue q: a
// worker of this configuration when it serves q, else one whose --queues
// are the queues such a worker serves (with their priorities) and q, so
// that the worker serves q without leaving the others.
func (r *Runtime) workerHint(q string) string {
	cmd := r.CommandLine() + " worker"
	wq := r.WorkerQueues()
	if wq[q] > 0 {
		return cmd + " (a worker of this configuration serves it)"
	}
	wq[q] = 1
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(wq)) {
		parts = append(parts, name+"="+strconv.Itoa(wq[name]))
	}
	return cmd + " --queues " + ShellQuote(strings.Join(parts, ",")) + " (or add " + q + " to worker.queues)"
}

// WorkflowQueues returns the queues the steps of run workflow workflow are
// enqueued to: the workflow's queue (or enqueue.queue) first, then those
// its steps name, each once. A workflow the runtime does not know has
// enqueue.queue alone.
func (r *Runtime) WorkflowQueues(workflow string) []string {
	wf := r.runWfs[workflow]
	base := cmp.Or(wf.Queue, r.cfg.Enqueue.Queue)
	queues := []string{base}
	for _, s := range wf.Steps {
		if q := cmp.Or(s.Queue, base); !slices.Contains(queues, q) {
			queues = append(queues, q)
		}
	}
	return queues
}
