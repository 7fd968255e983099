package dev

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// TestCleanupKeepsOtherClientsKeys runs the dev demo and the run demo on a
// Redis that another client uses at the same time: while dev runs, the
// other client records dead letters (after dev's first dead letter created
// the store's counter and index), starts a run and records a breaker. Dev's
// cleanup removes its own dead letter, run, queue, ledger entries and
// breaker, and leaves the other client's records, run, queue and breaker,
// and the shared keys, intact: the store's next id follows the others.
func TestCleanupKeepsOtherClientsKeys(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	f, err := StartFakeLLM()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ts := NewToolServer()
	defer ts.Close()

	const q, otherQ, otherWF = "agentq-dev", "other", "other-wf"
	cfg := config.Default()
	cfg.Redis.URL = srv.URL
	cfg.Log.Level = "error"
	cfg.LLM = f.AddTo(cfg.LLM)
	cfg.Worker.Queues = map[string]int{q: 1}
	rt, err := agentq.New(cfg, agentq.Options{LogTo: io.Discard,
		Workflows: map[string]runs.Workflow{RunWorkflow: ArticleWorkflow(q, ts)}})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	w, err := rt.NewWorker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	created, own := NewCreated(), NewOwned(q)
	own.AddBreakers(BreakerName(ts.URL()), BreakerName(f.URL()))
	own.AddWorkflows(RunWorkflow)
	rt.Redis().AddHook(created.Hook())
	since := time.Now()
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}

	// The other client: a runtime of its own (its own Redis client) with a
	// workflow on its own queue, and no worker.
	otherCfg := config.Default()
	otherCfg.Redis.URL = srv.URL
	otherCfg.Log.Level = "error"
	step, _ := json.Marshal(map[string]string{"url": "http://127.0.0.1:9/never"})
	other, err := agentq.New(otherCfg, agentq.Options{LogTo: io.Discard, Workflows: map[string]runs.Workflow{
		otherWF: {Name: otherWF, Queue: otherQ, Steps: []jobs.StepDef{{Name: "call", Kind: jobs.KindHTTPCall, Payload: step}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tasks := 0
	dead := func(n int) []string {
		t.Helper()
		var ids []string
		for range n {
			tasks++
			id, _, err := other.DeadLetters().Dead(ctx, dlq.Death{
				Queue: otherQ, TaskID: fmt.Sprintf("task-%d", tasks), Kind: jobs.KindHTTPCall, Payload: []byte(`{}`),
				Final: dlq.Attempt{At: time.Now(), Attempt: 1, Class: jobs.ClassPermanent, Error: "other's failure"},
			})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		return ids
	}

	// Dev's demo dead-letters one step: dev creates the store's counter
	// and index. Then the other client records three dead letters.
	if _, err := Demo(ctx, rt.Client(), rt.Redis(), ts, q, 60*time.Second, own); err != nil {
		t.Fatal(err)
	}
	theirs := dead(3)
	otherRuns, err := other.Runs()
	if err != nil {
		t.Fatal(err)
	}
	theirRun, err := otherRuns.Start(ctx, otherWF, json.RawMessage(`{}`), runs.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Redis().SAdd(ctx, breaker.NamesKey(), "api.example.com").Err(); err != nil {
		t.Fatal(err)
	}
	rn, err := rt.Runs()
	if err != nil {
		t.Fatal(err)
	}
	ours, err := RunDemo(ctx, rn, ArticleWorkflow(q, ts), "queues", 60*time.Second, own)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()

	rm, err := Cleanup(ctx, rt.Redis(), rt.DeadLetters(), created, own, since)
	if err != nil {
		t.Fatal(err)
	}
	if rm.Keys == 0 || rm.Members == 0 {
		t.Errorf("cleanup removed %+v: want dev's keys and its members of shared sets", rm)
	}
	raw := srv.Client(t)

	// Nothing dev owns is left, and none of its members of shared sets.
	all, err := raw.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range all {
		if own.Owns(k) {
			t.Errorf("dev's key %s is left", k)
		}
	}
	if _, err := rn.Get(ctx, ours.ID); err == nil {
		t.Errorf("dev's run %s is still there", ours.ID)
	}
	if err := raw.ZScore(ctx, runs.IndexKey(), ours.ID).Err(); err == nil {
		t.Errorf("dev's run %s is still in the runs index", ours.ID)
	}
	queues, err := queue.NewInspector(raw).Queues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(queues, q) {
		t.Errorf("dev's queue %s is still in asynq's queues %q", q, queues)
	}
	if raw.SIsMember(ctx, breaker.NamesKey(), BreakerName(ts.URL())).Val() {
		t.Errorf("dev's breaker %s is still listed", BreakerName(ts.URL()))
	}
	if recs, err := rt.DeadLetters().List(ctx, dlq.Filter{Queue: q}); err != nil || len(recs) != 0 {
		t.Errorf("dev's dead letters left: %d, %v", len(recs), err)
	}

	// The other client's dead letters, run, queue and breaker are intact.
	got, err := other.DeadLetters().List(ctx, dlq.Filter{Queue: otherQ})
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, r := range got {
		gotIDs = append(gotIDs, r.ID)
	}
	slices.Sort(gotIDs)
	slices.Sort(theirs)
	if !slices.Equal(gotIDs, theirs) {
		t.Errorf("other's dead letters after dev: %q, want %q", gotIDs, theirs)
	}
	if n, err := other.DeadLetters().Count(ctx); err != nil || n != 3 {
		t.Errorf("dead letters counted after dev: %d, %v; want the other's 3", n, err)
	}
	// The store's counter was left: new ids do not reuse any.
	more := dead(3)
	for _, id := range more {
		if slices.Contains(theirs, id) {
			t.Errorf("new dead letter got id %s, already the other client's (%q): the counter was reset", id, theirs)
		}
	}
	if n, err := other.DeadLetters().Count(ctx); err != nil || n != 6 {
		t.Errorf("dead letters after 3 more: %d, %v; want 6", n, err)
	}
	if _, err := otherRuns.Get(ctx, theirRun.RunID); err != nil {
		t.Errorf("other's run %s after dev: %v", theirRun.RunID, err)
	}
	if err := raw.ZScore(ctx, runs.IndexKey(), theirRun.RunID).Err(); err != nil {
		t.Errorf("other's run %s is not in the runs index after dev: %v", theirRun.RunID, err)
	}
	if !slices.Contains(queues, otherQ) {
		t.Errorf("other's queue %s is gone from asynq's queues %q", otherQ, queues)
	}
	if !raw.SIsMember(ctx, breaker.NamesKey(), "api.example.com").Val() {
		t.Errorf("other's breaker is gone from %s", breaker.NamesKey())
	}
	for _, k := range rm.Shared {
		if own.Owns(k) {
			t.Errorf("owned key %s reported as shared", k)
		}
	}
}
