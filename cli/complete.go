package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/runs"
)

// completeTimeout bounds one shell completion from the moment it starts:
// loading the configuration, dialling Redis (go-redis's dial retries
// included: they end with the context) and every read. With Redis down or
// slow, completion offers what the configuration alone knows (or nothing)
// rather than hang the shell; with the program's start the whole
// completion stays within a second.
const completeTimeout = 750 * time.Millisecond

// completeLimit bounds how many dead letters or runs a completion offers.
const completeLimit = 100

// completer returns the values a completion offers, each optionally
// followed by a tab and a description. It gets a runtime built from the
// command's configuration and a context bounded by completeTimeout.
type completer func(ctx context.Context, rt *agentq.Runtime) []string

// argCompleters complete positional arguments, by command path below the
// root ("dlq show"); many says the command takes more than one.
var argCompleters = map[string]struct {
	values completer
	many   bool
}{
	"enqueue":       {completeKinds, false},
	"dlq show":      {completeDeadLetters, false},
	"dlq replay":    {completeDeadLetters, true},
	"dlq purge":     {completeDeadLetters, true},
	"run start":     {completeWorkflows, false},
	"run show":      {completeRuns, false},
	"run cancel":    {completeRuns, false},
	"budget":        {completeWorkflows, false},
	"budget resume": {completeWorkflows, false},
	"budget reset":  {completeWorkflows, false},
}

// flagCompleters complete flag values, by flag name, on every command that
// has the flag.
var flagCompleters = map[string]completer{
	"kind":     completeKinds,
	"queue":    completeQueues,
	"workflow": completeWorkflows,
	"run":      completeRunIDs,
}

// registerCompletions walks the command tree below root and gives every
// command in argCompleters, and every flag in flagCompleters, a dynamic
// completion, unless the command set one of its own. Commands are found by
// name, so the files that define them need not know about completion.
func (m *Main) registerCompletions(root *cobra.Command, rf *rootFlags) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), root.Name()), " ")
		if ac, ok := argCompleters[path]; ok && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				if len(args) > 0 && !ac.many {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return m.complete(cmd, rf, ac.values, args, toComplete), cobra.ShellCompDirectiveNoFileComp
			}
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			values, ok := flagCompleters[f.Name]
			if !ok {
				return
			}
			// An error means the flag has a completion already: keep it.
			_ = c.RegisterFlagCompletionFunc(f.Name, func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				return m.complete(cmd, rf, values, nil, toComplete), cobra.ShellCompDirectiveNoFileComp
			})
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// complete runs values for cmd quietly: the configuration is loaded as the
// command would load it (its --config and --redis-url count), nothing is
// printed, a bad configuration offers nothing, and everything together
// gets at most completeTimeout. It offers the values that start with
// toComplete and are not among given, each once.
func (m *Main) complete(cmd *cobra.Command, rf *rootFlags, values completer, given []string, toComplete string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
	defer cancel()
	quiet := *m
	quiet.Stderr = io.Discard
	cfg, err := quiet.load(cmd, rf)
	if err != nil {
		return nil
	}
	// A client of its own that dials and tries each call once: with Redis
	// refusing connections, go-redis's command retries and dial retries
	// (5, 100 ms apart) would sleep until the deadline.
	ro, err := agentq.RedisOptions(cfg)
	if err != nil {
		return nil
	}
	ro.MaxRetries, ro.DialerRetries, ro.DialTimeout = -1, 1, completeTimeout
	rdb := redis.NewUniversalClient(ro)
	defer rdb.Close()
	rt, err := quiet.newRuntimeWith(cfg, rf.configFile, true, nil, func(o *agentq.Options) { o.Redis = rdb })
	if err != nil {
		return nil
	}
	defer rt.Close()
	var out []string
	seen := map[string]bool{}
	for _, g := range given {
		seen[g] = true
	}
	for _, v := range values(ctx, rt) {
		name, _, _ := strings.Cut(v, "\t")
		if seen[name] || !strings.HasPrefix(name, toComplete) {
			continue
		}
		seen[name] = true
		out = append(out, v)
	}
	return out
}

// completeKinds offers the registered task kinds (no Redis).
func completeKinds(_ context.Context, rt *agentq.Runtime) []string {
	return rt.Registry().Kinds()
}

// completeWorkflows offers the configured workflows and the run workflows
// (no Redis).
func completeWorkflows(_ context.Context, rt *agentq.Runtime) []string {
	names := map[string]bool{}
	for name := range rt.Config().Workflows {
		names[name] = true
	}
	for name := range rt.Workflows() {
		names[name] = true
	}
	return slices.Sorted(maps.Keys(names))
}

// completeQueues offers the queues the configuration names, then those
// asynq knows in Redis.
func completeQueues(ctx context.Context, rt *agentq.Runtime) []string {
	cfg := rt.Config()
	names := map[string]bool{cfg.Enqueue.Queue: true}
	for q := range cfg.Worker.Queues {
		names[q] = true
	}
	for _, wf := range cfg.Workflows {
		names[wf.Queue] = true
	}
	for _, wf := range rt.Workflows() {
		names[wf.Queue] = true
		for _, s := range wf.Steps {
			names[s.Queue] = true
		}
	}
	delete(names, "")
	out := slices.Sorted(maps.Keys(names))
	known, err := rt.KnownQueues(ctx)
	if err != nil {
		return out
	}
	for _, q := range known {
		if !names[q] {
			out = append(out, q)
		}
	}
	return out
}

// completeDeadLetters offers the newest dead letters' ids, each described
// by its status, kind and queue.
func completeDeadLetters(ctx context.Context, rt *agentq.Runtime) []string {
	recs, err := rt.DeadLetters().List(ctx, dlq.Filter{Limit: completeLimit})
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, fmt.Sprintf("%s\t%s %s in %s", r.ID, r.Status, r.Kind, r.Queue))
	}
	return out
}

// completeRuns offers the newest runs' ids, each described by its
// workflow and status.
func completeRuns(ctx context.Context, rt *agentq.Runtime) []string {
	rn, err := rt.Runs()
	if err != nil {
		return nil
	}
	sums, err := rn.List(ctx, runs.ListOptions{Limit: completeLimit})
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(sums))
	for _, s := range sums {
		out = append(out, fmt.Sprintf("%s\t%s %s", s.ID, s.Workflow, s.Status))
	}
	return out
}

// completeRunIDs offers, for --run, the newest runs' ids, then the run ids
// the newest dead letters carry (at most completeLimit records), which
// include the ids tasks were enqueued with (enqueue --run) that no run
// started; complete drops repeats.
func completeRunIDs(ctx context.Context, rt *agentq.Runtime) []string {
	out := completeRuns(ctx, rt)
	if ctx.Err() != nil {
		return out
	}
	recs, err := rt.DeadLetters().List(ctx, dlq.Filter{Limit: completeLimit})
	if err != nil {
		return out
	}
	for _, r := range recs {
		if r.RunID != "" {
			out = append(out, r.RunID+"\tdead letter "+r.ID+" ("+r.Kind+")")
		}
	}
	return out
}
