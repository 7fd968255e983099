//go:build unix

package scaletest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/budget"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/ledger"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// clusterQueues are queues whose asynq keys ({queue} tag) land on each of
// the three masters of the test cluster (slots split evenly), checked by
// TestClusterFeatures.
var clusterQueues = []string{"default", "scale-b", "scale-c"}

// TestClusterFeatures runs every feature of agentq's runtime against a
// 3-master Redis Cluster, one after another on one runtime and worker:
// enqueue, keyed enqueue, batch, dead letters and replay, breakers,
// budgets, ledger and runs; then the command line on the same cluster.
func TestClusterFeatures(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	rdb := c.Client(t)
	ctx := context.Background()

	masters := map[string]bool{}
	for _, q := range clusterQueues {
		masters[c.MasterOf(t, "asynq:{"+q+"}:pending").Addr] = true
	}
	if len(masters) < 2 {
		t.Fatalf("queues %v all live on one master: the test would not spread over the cluster", clusterQueues)
	}

	rec := newRecorder()
	cfg := baseConfig()
	cfg.Redis.ClusterAddrs = c.Addrs
	cfg.Worker.Queues = map[string]int{}
	for _, q := range clusterQueues {
		cfg.Worker.Queues[q] = 1
	}
	cfg.Breakers.Failures = 2
	cfg.Breakers.Cooldown = time.Hour
	cfg.Workflows = map[string]config.Workflow{
		"budgeted": {Queue: "scale-b", Budget: config.Budget{SLO: 0.99, Window: time.Hour, MinEvents: 1}},
	}
	wfs := map[string]runs.Workflow{
		"two_steps": {
			Queue: "scale-c",
			Steps: []jobs.StepDef{
				{Name: "first", Kind: "scale.work", Payload: json.RawMessage(`{"id":"{{ .input.id }}-1"}`)},
				{Name: "second", Kind: "scale.work", Payload: json.RawMessage(`{"id":"{{ .steps.first.output.id }}-2"}`)},
			},
		},
	}
	rt := newRuntime(t, cfg, rec, wfs)
	runWorker(t, rt)
	cl := rt.Client()
	processed := func(id string) func() bool { return func() bool { return rec.count(id) > 0 } }

	t.Run("enqueue", func(t *testing.T) {
		for _, q := range clusterQueues {
			res, err := cl.EnqueueArgs(ctx, WorkArgs{ID: "single-" + q}, queue.EnqueueOptions{Queue: q})
			if err != nil {
				t.Fatalf("enqueue to %s: %v", q, err)
			}
			waitFor(t, 20*time.Second, "task "+res.ID+" in "+q+" processed", processed(res.ID))
		}
	})

	t.Run("keyed", func(t *testing.T) {
		var first queue.Result
		for i := range 3 {
			res, err := cl.EnqueueArgs(ctx, WorkArgs{ID: "keyed"}, queue.EnqueueOptions{Queue: "scale-b", Key: "order-7"})
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = res
				if res.Duplicate {
					t.Fatal("first keyed enqueue reported a duplicate")
				}
			} else if !res.Duplicate || res.ID != first.ID {
				t.Fatalf("repeat %d = %+v, want a duplicate of %s", i, res, first.ID)
			}
		}
		waitFor(t, 20*time.Second, "keyed task processed", processed(first.ID))
		// The ledger records the keyed success, in the key's own slot.
		l, err := ledger.New(rdb, ledger.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		payload, _ := json.Marshal(WorkArgs{ID: "keyed"})
		waitFor(t, 10*time.Second, "ledger entry of order-7", func() bool {
			e, ok, err := l.Lookup(ctx, "order-7", ledger.Digest("scale.work", payload))
			return err == nil && ok && e.TaskID == first.ID
		})
		if n := rec.count(first.ID); n != 1 {
			t.Errorf("keyed task ran %d times, want 1", n)
		}
	})

	t.Run("batch", func(t *testing.T) {
		// 30 tasks over the three queues, then the first three lines again:
		// duplicates of their keys in their queues.
		var b strings.Builder
		for i := range 33 {
			q := clusterQueues[i%30%len(clusterQueues)]
			fmt.Fprintf(&b, `{"kind":"scale.work","payload":{"id":"b%d"},"queue":%q,"key":"batch-%d"}`+"\n", i%30, q, i%30)
		}
		sum, err := cl.EnqueueBatch(ctx, strings.NewReader(b.String()), nil)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Enqueued != 30 || sum.Duplicates != 3 || len(sum.Rejected) != 0 {
			t.Fatalf("batch summary %+v, want 30 enqueued, 3 duplicates", sum)
		}
		for _, r := range sum.Results {
			waitFor(t, 20*time.Second, "batch task "+r.ID+" processed", processed(r.ID))
		}
		// The same file again: every line is a duplicate.
		again, err := cl.EnqueueBatch(ctx, strings.NewReader(b.String()), nil)
		if err != nil {
			t.Fatal(err)
		}
		if again.Duplicates != 33 {
			t.Errorf("batch again: %d duplicates of 33 (%+v)", again.Duplicates, again)
		}
	})

	var deadID string
	t.Run("dead letter and replay", func(t *testing.T) {
		res, err := cl.EnqueueArgs(ctx, WorkArgs{ID: "doomed", Fail: true}, queue.EnqueueOptions{Queue: "scale-c", Key: "doomed-1"})
		if err != nil {
			t.Fatal(err)
		}
		var recs []dlq.Record
		waitFor(t, 20*time.Second, "dead letter of "+res.ID, func() bool {
			recs, err = rt.DeadLetters().List(ctx, dlq.Filter{Queue: "scale-c"})
			return err == nil && len(recs) == 1
		})
		deadID = recs[0].ID
		got, err := rt.DeadLetters().Get(ctx, deadID)
		if err != nil || got.TaskID != res.ID || got.Status != dlq.StatusDead {
			t.Fatalf("dead letter %s = %+v, %v", deadID, got, err)
		}
		rep, err := rt.DeadLetters().Replay(ctx, deadID, dlq.ReplayOptions{Payload: json.RawMessage(`{"id":"doomed"}`)})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "replay "+rep.TaskID+" processed", processed(rep.TaskID))
		waitFor(t, 20*time.Second, "dead letter resolved", func() bool {
			got, err = rt.DeadLetters().Get(ctx, deadID)
			return err == nil && got.Status == dlq.StatusResolved
		})
	})

	t.Run("breaker", func(t *testing.T) {
		for i := range 3 {
			if _, err := cl.EnqueueArgs(ctx, WorkArgs{ID: fmt.Sprint("dep", i), Dep: true}, queue.EnqueueOptions{Queue: "default", MaxAttempts: 1}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 20*time.Second, "breaker scale-dep open", func() bool {
			l, err := rt.Breakers().List(ctx)
			return err == nil && slices.ContainsFunc(l, func(s breaker.Status) bool {
				return s.Name == "scale-dep" && s.State == breaker.Open
			})
		})
	})

	t.Run("budget", func(t *testing.T) {
		for i := range 3 {
			if _, err := cl.EnqueueArgs(ctx, WorkArgs{ID: fmt.Sprint("wf", i), Fail: i == 0}, queue.EnqueueOptions{Workflow: "budgeted"}); err != nil {
				t.Fatal(err)
			}
		}
		var st []budget.Status
		waitFor(t, 20*time.Second, "budget of budgeted counts 3 events, 1 failure", func() bool {
			var err error
			st, err = rt.Budgets().Statuses(ctx, "budgeted")
			return err == nil && len(st) == 1 && st[0].Events == 3 && st[0].Failures == 1
		})
		// Reset touches the workflow's keys in one transaction.
		if _, _, err := rt.Budgets().Reset(ctx, "budgeted"); err != nil {
			t.Fatalf("reset: %v", err)
		}
		if st, err := rt.Budgets().Statuses(ctx, "budgeted"); err != nil || st[0].Failures != 0 {
			t.Errorf("after reset: %+v, %v", st, err)
		}
	})

	var runID string
	t.Run("run", func(t *testing.T) {
		engine, err := rt.Runs()
		if err != nil {
			t.Fatal(err)
		}
		started, err := engine.Start(ctx, "two_steps", json.RawMessage(`{"id":"r"}`), runs.StartOptions{Key: "run-1"})
		if err != nil {
			t.Fatal(err)
		}
		runID = started.RunID
		var run *runs.Run
		waitFor(t, 30*time.Second, "run "+started.RunID+" ends", func() bool {
			run, err = engine.Get(ctx, started.RunID)
			return err == nil && run.Status.Terminal()
		})
		if run.Status != runs.StatusSucceeded || len(run.Steps) != 2 || string(run.Steps[1].Output) != `{"id":"r-1-2"}` {
			t.Fatalf("run = %s, steps %+v", run.Status, run.Steps)
		}
		list, err := engine.List(ctx, runs.ListOptions{})
		if err != nil || !slices.ContainsFunc(list, func(s runs.Summary) bool { return s.ID == started.RunID }) {
			t.Fatalf("run list %+v, %v", list, err)
		}
	})

	t.Run("command line", func(t *testing.T) {
		bin := binarytest.Build(t)
		env := binarytest.Environ("AGENTQ_REDIS_CLUSTER_ADDRS="+strings.Join(c.Addrs, ","), "AGENTQ_LOG_LEVEL=error")
		conf := filepath.Join(t.TempDir(), "agentq.yaml")
		if err := os.WriteFile(conf, []byte("workflows:\n  budgeted:\n    queue: scale-b\n    budget: {slo: 0.99, window: 1h, min_events: 1}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		run := func(args ...string) string {
			t.Helper()
			args = append([]string{"--config", conf}, args...)
			r := binarytest.Run(t, bin, args, binarytest.Options{Env: env, Timeout: time.Minute})
			if r.Code != 0 {
				t.Fatalf("agentq %s: exit %d\n%s%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
			}
			return r.Stdout
		}
		file := filepath.Join(t.TempDir(), "batch.jsonl")
		var b strings.Builder
		for i := range 9 {
			fmt.Fprintf(&b, `{"kind":"noop","payload":{},"queue":%q,"key":"cli-%d"}`+"\n", clusterQueues[i%3], i)
		}
		if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		out := run("enqueue", "--batch", file)
		if !strings.Contains(out, "9") {
			t.Errorf("enqueue --batch said %q", out)
		}
		run("enqueue", "noop", "--payload", "{}", "--queue", "scale-b")
		if out := run("dlq", "list"); deadID == "" || !strings.Contains(out, deadID) {
			t.Errorf("dlq list does not show %q:\n%s", deadID, out)
		}
		if deadID != "" {
			if out := run("dlq", "show", deadID); !strings.Contains(out, "doomed") {
				t.Errorf("dlq show %s:\n%s", deadID, out)
			}
		}
		run("dlq", "stats")
		if out := run("run", "list"); !strings.Contains(out, "two_steps") {
			t.Errorf("run list:\n%s", out)
		}
		if runID != "" {
			if out := run("run", "show", runID); !strings.Contains(out, "succeeded") {
				t.Errorf("run show %s:\n%s", runID, out)
			}
		}
		if deadID != "" {
			run("dlq", "purge", deadID)
			if _, err := rt.DeadLetters().Get(ctx, deadID); err == nil {
				t.Errorf("dead letter %s still there after dlq purge", deadID)
			}
		}
		if out := run("breaker", "list"); !strings.Contains(out, "scale-dep") {
			t.Errorf("breaker:\n%s", out)
		}
		if out := run("budget"); !strings.Contains(out, "budgeted") {
			t.Errorf("budget:\n%s", out)
		}
	})
}
