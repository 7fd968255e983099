package agentq_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// loadFile loads body as a config file, with no environment.
func loadFile(t *testing.T, body string) (config.Config, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agentq.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Options{File: path, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, path
}

// TestRunKindsChecked: a step whose kind is not registered is refused at
// New with the key, the file's line and the registered kinds; the kinds a
// Go program registers are accepted.
func TestRunKindsChecked(t *testing.T) {
	t.Parallel()
	cfg, path := loadFile(t, `workflows:
  article:
    steps:
      - name: research
        kind: noop
      - name: draft
        kind: publsh
`)
	cfg.Redis.URL = "redis://127.0.0.1:1/0" // never dialled
	_, err := agentq.New(cfg, agentq.Options{LogTo: io.Discard})
	var ce *agentq.ConfigError
	want := `config: workflows.article.steps[1].kind: unknown kind "publsh" of step "draft" (registered kinds: `
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "(from "+path+", line 7)") ||
		!strings.Contains(err.Error(), "noop") {
		t.Fatalf("New error = %v\nwant a ConfigError containing %q and the line", err, want)
	}

	rt, err := agentq.New(cfg, agentq.Options{LogTo: io.Discard, Register: registerPublsh})
	if err != nil {
		t.Fatalf("New with the kind registered: %v", err)
	}
	defer rt.Close()
	if wf := rt.Workflows()["article"]; len(wf.Steps) != 2 || wf.Name != "article" {
		t.Errorf("Workflows() = %+v", rt.Workflows())
	}
}

// PublshArgs is a kind a program registers, spelled as the test's step.
type PublshArgs struct{}

func (PublshArgs) Kind() string { return "publsh" }

func registerPublsh(reg *queue.Registry) error {
	return queue.Register(reg, `{"type":"object"}`, func(context.Context, *jobs.Step, PublshArgs) error { return nil })
}

// TestCodeWorkflows: Options.Workflows are merged with the file's; one name
// in both, or a kind not registered, is refused.
func TestCodeWorkflows(t *testing.T) {
	t.Parallel()
	cfg, _ := loadFile(t, "workflows:\n  article:\n    steps: [{name: a, kind: noop}]\n")
	cfg.Redis.URL = "redis://127.0.0.1:1/0"
	code := map[string]runs.Workflow{"digest": {Queue: "digests", Steps: []jobs.StepDef{{Name: "s", Kind: "noop", Queue: "fast"}}}}
	rt, err := agentq.New(cfg, agentq.Options{LogTo: io.Discard, Workflows: code})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	wfs := rt.Workflows()
	if len(wfs) != 2 || wfs["digest"].Name != "digest" || wfs["article"].Steps[0].Kind != "noop" {
		t.Errorf("Workflows() = %+v", wfs)
	}
	// The client knows the code workflow's queue.
	if err := rt.Check("noop", []byte(`{}`), queue.EnqueueOptions{Workflow: "digest"}); err != nil {
		t.Errorf("Check of a code workflow's step: %v", err)
	}

	_, err = agentq.New(cfg, agentq.Options{LogTo: io.Discard, Workflows: map[string]runs.Workflow{"article": code["digest"]}})
	if err == nil || !strings.Contains(err.Error(), `workflow "article" is defined in Options.Workflows and in the config file`) {
		t.Errorf("same name twice: %v", err)
	}
	bad := map[string]runs.Workflow{"digest": {Steps: []jobs.StepDef{{Name: "s", Kind: "nosuch"}}}}
	_, err = agentq.New(cfg, agentq.Options{LogTo: io.Discard, Workflows: bad})
	if err == nil || !strings.Contains(err.Error(), `Options.Workflows["digest"].steps[0].kind: unknown kind "nosuch"`) {
		t.Errorf("unknown kind in code: %v", err)
	}
}

// TestRunsShared: Runs is built once and shared.
func TestRunsShared(t *testing.T) {
	t.Parallel()
	b := setup(t, agentq.Options{})
	r1, err := b.rt.Runs()
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := b.rt.Runs()
	if r1 == nil || r1 != r2 {
		t.Fatalf("Runs() = %p, %p: want one engine", r1, r2)
	}
}

// TestWorkerChainHasRuns: the worker's chain holds the runs middleware
// (between the ledger and the breaker) and observer (after the ledger's).
func TestWorkerChainHasRuns(t *testing.T) {
	t.Parallel()
	b := setup(t, agentq.Options{})
	w, err := b.rt.NewWorker(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if n := len(w.Middleware()); n != 3 {
		t.Errorf("chain has %d middleware, want ledger, runs, breaker", n)
	}
	if n := len(w.Observers()); n != 5 {
		t.Errorf("chain has %d observers, want dlq, metrics, budgets, ledger, runs", n)
	}
}

// TestScheduledWorkflowLoads: a worker of a config with a schedule builds
// and stops its scheduler.
func TestScheduledWorkflowLoads(t *testing.T) {
	t.Parallel()
	cfg, _ := loadFile(t, "workflows:\n  nightly:\n    schedule: {cron: '0 3 * * *', timezone: Europe/Berlin, input: {x: 1}}\n    steps: [{name: a, kind: noop}]\n")
	b := setup(t, agentq.Options{})
	cfg.Redis.URL = b.cfg.Redis.URL
	cfg.Log.Level = "error"
	rt, err := agentq.New(cfg, agentq.Options{LogTo: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if s := rt.Workflows()["nightly"].Schedule; s == nil || string(s.Input) != `{"x":1}` {
		t.Fatalf("schedule = %+v", s)
	}
	w, err := rt.NewWorker(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
}
