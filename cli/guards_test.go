package cli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/budget"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
)

const guardsConfig = `
workflows:
  publish:
    queue: publish
    budget: {slo: 0.9, window: 1m, min_events: 5, on_exhausted: pause}
  ingest:
    queue: ingest
    budget: {slo: 0.9, window: 1m, min_events: 5, on_exhausted: reject}
  plain:
    queue: plain
breakers:
  failures: 2
  overrides:
    api.example.com:
      cooldown: 1m
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agentq.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fail counts n failed attempts of workflow in Redis, as a worker would.
func fail(t *testing.T, b *budget.Budgets, workflow string, n int) {
	t.Helper()
	for range n {
		b.Observer().Observe(context.Background(), &jobs.Step{Workflow: workflow, Attempt: 1, MaxAttempts: 1},
			&jobs.Result{Outcome: jobs.OutcomeDead, Class: jobs.ClassRetryable, Err: errors.New("503")})
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestBudgetCommands(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	cfgPath := writeConfig(t, guardsConfig)
	env := []string{"AGENTQ_REDIS_URL=" + srv.URL, "AGENTQ_LOG_FORMAT=json"}
	b, err := budget.New(rdb, budget.Config{Workflows: map[string]budget.Policy{
		"publish": {SLO: 0.9, Window: time.Minute, MinEvents: 5, OnExhausted: budget.ActionPause, Queue: "publish"},
		"ingest":  {SLO: 0.9, Window: time.Minute, MinEvents: 5, OnExhausted: budget.ActionReject},
	}})
	if err != nil {
		t.Fatal(err)
	}
	fail(t, b, "publish", 6)
	fail(t, b, "ingest", 6)

	// Usage errors exit 2 before connecting.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"budget", "nope"}, `unknown workflow "nope" (configured: ingest, plain, publish)`},
		{[]string{"budget", "plain"}, `workflow "plain" has no error budget (set workflows.plain.budget.slo`},
		{[]string{"budget", "resume", "nope"}, `unknown workflow "nope"`},
		{[]string{"budget", "reset"}, "budget reset needs a workflow name"},
	} {
		r := run(t, []string{"AGENTQ_REDIS_URL=redis://127.0.0.1:1/0"}, "", append([]string{"--config", cfgPath}, tt.args...)...)
		if r.code != ExitUsage || !strings.Contains(r.err, tt.want) {
			t.Errorf("%v: exit %d stderr %q, want 2 and %q", tt.args, r.code, r.err, tt.want)
		}
	}

	r := run(t, env, "", "--config", cfgPath, "budget", "--json")
	var all []map[string]any
	if err := json.Unmarshal([]byte(r.out), &all); r.code != 0 || err != nil || len(all) != 2 {
		t.Fatalf("budget --json: exit %d %s %s (%v)", r.code, r.out, r.err, err)
	}
	if all[1]["workflow"] != "publish" || all[1]["state"] != "exhausted" || all[1]["events"] != 6.0 || all[1]["failures"] != 6.0 ||
		all[1]["budget"] != 0.6 || all[1]["burn_rate_long"] != 10.0 || all[1]["window"] != "1m" || all[1]["short_window"] != "5s" || all[1]["until"] == nil {
		t.Errorf("publish budget = %v", all[1])
	}

	// reject refuses enqueues, with a message that says why and until when.
	r = run(t, env, "", "--config", cfgPath, "enqueue", "noop", "--payload", "{}", "--workflow", "ingest")
	if r.code != ExitError || !strings.Contains(r.err, `workflow "ingest" refuses new tasks: its error budget is exhausted (6 failures of 6 attempts over the last 1m`) ||
		!strings.Contains(r.err, "refused until about") {
		t.Errorf("enqueue to an exhausted reject workflow: exit %d stderr %q", r.code, r.err)
	}
	if r = run(t, env, "", "--config", cfgPath, "enqueue", "noop", "--payload", "{}", "--workflow", "publish"); r.code != 0 {
		t.Errorf("enqueue to a pause workflow: exit %d %s", r.code, r.err)
	}

	// Nothing paused it yet: resume says so.
	r = run(t, env, "", "--config", cfgPath, "budget", "resume", "publish")
	if r.code != 0 || !strings.Contains(r.out, `queue "publish" of workflow "publish" was not paused; nothing to resume`) ||
		!strings.Contains(r.out, "still exhausted") {
		t.Errorf("resume of a queue not paused: exit %d out %q err %q", r.code, r.out, r.err)
	}
	// The checker pauses it (a new failure ends the hold the resume set).
	fail(t, b, "publish", 1)
	if _, err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if info, err := insp.GetQueueInfo("publish"); err != nil || !info.Paused {
		t.Fatalf("queue publish not paused: %+v %v", info, err)
	}
	r = run(t, env, "", "--config", cfgPath, "budget", "publish")
	if r.code != 0 || !strings.Contains(r.out, "paused by the budget, exhausted") || !strings.Contains(r.out, "BURN LONG") {
		t.Errorf("budget publish: exit %d out %q", r.code, r.out)
	}
	r = run(t, env, "", "--config", cfgPath, "budget", "resume", "publish")
	if r.code != 0 || !strings.Contains(r.out, `resumed queue "publish" of workflow "publish".`) || !strings.Contains(r.out, "will not pause the queue again until new failures arrive") {
		t.Errorf("resume: exit %d out %q", r.code, r.out)
	}
	if info, _ := insp.GetQueueInfo("publish"); info.Paused {
		t.Error("queue still paused after budget resume")
	}
	r = run(t, env, "", "--config", cfgPath, "budget", "publish", "--json")
	var one map[string]any
	if err := json.Unmarshal([]byte(r.out), &one); err != nil || one["held"] != true || one["state"] != "exhausted" {
		t.Errorf("budget publish --json after resume: %q (%v)", r.out, err)
	}
	r = run(t, env, "", "--config", cfgPath, "budget", "reset", "ingest")
	if r.code != 0 || !strings.Contains(r.out, `reset the error budget of workflow "ingest": cleared 6 attempts and 6 failures (it was exhausted)`) {
		t.Errorf("reset: exit %d out %q err %q", r.code, r.out, r.err)
	}
	if r = run(t, env, "", "--config", cfgPath, "enqueue", "noop", "--payload", "{}", "--workflow", "ingest"); r.code != 0 {
		t.Errorf("enqueue after reset: exit %d %s", r.code, r.err)
	}
	// --json: small JSON results.
	r = run(t, env, "", "--config", cfgPath, "budget", "reset", "ingest", "--json")
	var reset map[string]any
	if err := json.Unmarshal([]byte(r.out), &reset); r.code != 0 || err != nil || reset["workflow"] != "ingest" || reset["cleared_failures"] != 0.0 || reset["resumed"] != false {
		t.Errorf("reset --json: exit %d out %q err %q", r.code, r.out, r.err)
	}
	r = run(t, env, "", "--config", cfgPath, "budget", "resume", "publish", "--json")
	var resumed map[string]any
	if err := json.Unmarshal([]byte(r.out), &resumed); r.code != 0 || err != nil || resumed["workflow"] != "publish" || resumed["resumed"] != false || resumed["budget"] == nil {
		t.Errorf("resume --json: exit %d out %q err %q", r.code, r.out, r.err)
	}
}

func TestBreakerList(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cfgPath := writeConfig(t, guardsConfig)
	env := []string{"AGENTQ_REDIS_URL=" + srv.URL}
	r := run(t, env, "", "--config", cfgPath, "breaker", "list")
	if r.code != 0 || !strings.Contains(r.out, "no breaker has recorded a failure") {
		t.Fatalf("empty list: exit %d out %q err %q", r.code, r.out, r.err)
	}
	set, err := breaker.New(srv.Client(t), breaker.Config{Default: breaker.Settings{Failures: 2}, Overrides: map[string]breaker.Settings{"api.example.com": {Cooldown: time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_ = set.Do(context.Background(), "api.example.com", func(context.Context) error { return &jobs.HTTPError{Status: 503} })
	}
	_ = set.Do(context.Background(), "db", func(context.Context) error { return &jobs.HTTPError{Status: 503} })
	r = run(t, env, "", "--config", cfgPath, "breaker", "list", "--json")
	var out []map[string]any
	if err := json.Unmarshal([]byte(r.out), &out); r.code != 0 || err != nil || len(out) != 2 {
		t.Fatalf("list --json: exit %d %q %q (%v)", r.code, r.out, r.err, err)
	}
	api, db := out[0], out[1]
	if api["name"] != "api.example.com" || api["state"] != "open" || api["consecutive_failures"] != 2.0 || api["cooldown"] != "1m" ||
		api["next_probe"] == nil || api["opened_at"] == nil {
		t.Errorf("api breaker = %v", api)
	}
	if db["name"] != "db" || db["state"] != "closed" || db["consecutive_failures"] != 1.0 || db["cooldown"] != "30s" || db["next_probe"] != nil {
		t.Errorf("db breaker = %v", db)
	}
	r = run(t, env, "", "--config", cfgPath, "breaker", "list")
	if r.code != 0 || !strings.Contains(r.out, "api.example.com") || !strings.Contains(r.out, "open") || !strings.Contains(r.out, "2/2") {
		t.Errorf("list: %q", r.out)
	}
}
