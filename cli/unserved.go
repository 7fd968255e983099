package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/runs"
)

// servedLookupTimeout bounds the one lookup of served queues an enqueue
// or run start makes for its warning.
const servedLookupTimeout = 2 * time.Second

// unservedWarnings returns a warning for each of queues that no live worker
// serves (Runtime.UnservedQueues), and prints it to Stderr. It says nothing
// when the lookup fails.
func (m *Main) unservedWarnings(ctx context.Context, rt *agentq.Runtime, queues []string) []string {
	ctx, cancel := context.WithTimeout(ctx, servedLookupTimeout)
	defer cancel()
	unserved, err := rt.UnservedQueues(ctx, queues)
	if err != nil {
		return nil
	}
	var out []string
	for _, u := range unserved {
		w := u.Warning()
		fmt.Fprintln(m.Stderr, m.name()+": warning: "+w)
		out = append(out, w)
	}
	return out
}

// startedJSON is run start's --json document: the run and, when no worker
// serves a queue of the workflow's steps, the warning.
type startedJSON struct {
	runs.Started
	Warning string `json:"warning,omitempty"`
}

// warnUnservedRun warns, as enqueue does, when no live worker serves a
// queue of workflow's steps (Runtime.WorkflowQueues), and returns st with
// the warnings for --json.
func (m *Main) warnUnservedRun(ctx context.Context, rt *agentq.Runtime, workflow string, st runs.Started) startedJSON {
	return startedJSON{Started: st, Warning: strings.Join(m.unservedWarnings(ctx, rt, rt.WorkflowQueues(workflow)), "; ")}
}
