package cli

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/runs"
)

// servedLookupTimeout bounds the one lookup of served queues an enqueue
// or run start makes for its warning.
const servedLookupTimeout = 2 * time.Second

// unservedWarnings returns a warning for each of queues that no live worker
// serves, and prints it to Stderr. It looks the served queues up once (one
// read of asynq's server records), and says nothing when that fails.
func (m *Main) unservedWarnings(ctx context.Context, rt *agentq.Runtime, queues []string) []string {
	if len(queues) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, servedLookupTimeout)
	defer cancel()
	served, err := rt.ServedQueues(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for _, q := range queues {
		if served[q] {
			continue
		}
		w := fmt.Sprintf("no worker serves queue %q: its tasks wait until one does; start one with: %s", q, workerHint(rt, q))
		fmt.Fprintln(m.Stderr, m.name()+": warning: "+w)
		out = append(out, w)
	}
	return out
}

// workerHint is the command that starts a worker serving queue q: a
// worker of this configuration when it serves q, else one whose --queues
// are the queues such a worker serves (with their priorities) and q, so
// that the worker serves q without leaving the others.
func workerHint(rt *agentq.Runtime, q string) string {
	cmd := rt.CommandLine() + " worker"
	wq := rt.WorkerQueues()
	if wq[q] > 0 {
		return cmd + " (a worker of this configuration serves it)"
	}
	wq[q] = 1
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(wq)) {
		parts = append(parts, name+"="+strconv.Itoa(wq[name]))
	}
	return cmd + " --queues " + shellQuote(strings.Join(parts, ",")) + " (or add " + q + " to worker.queues)"
}

// startedJSON is run start's --json document: the run and, when no worker
// serves a queue of the workflow's steps, the warning.
type startedJSON struct {
	runs.Started
	Warning string `json:"warning,omitempty"`
}

// warnUnservedRun warns, as enqueue does, when no live worker serves a
// queue of workflow's steps (its queue, or enqueue.queue, and the queues
// its steps name), and returns st with the warnings for --json.
func (m *Main) warnUnservedRun(ctx context.Context, rt *agentq.Runtime, workflow string, st runs.Started) startedJSON {
	wf := rt.Workflows()[workflow]
	base := cmp.Or(wf.Queue, rt.Config().Enqueue.Queue)
	queues := []string{base}
	for _, s := range wf.Steps {
		if q := cmp.Or(s.Queue, base); !slices.Contains(queues, q) {
			queues = append(queues, q)
		}
	}
	return startedJSON{Started: st, Warning: strings.Join(m.unservedWarnings(ctx, rt, queues), "; ")}
}
