package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestBudgetAndBreakers(t *testing.T) {
	t.Parallel()
	cfg := mustLoad(t, testBundle{
		file: `
breakers:
  failures: 3
  cooldown: 10s
  overrides:
    api.example.com:443:
      failures: 2
      failure_rate: 0.25
    "127.0.0.1:8080":
      cooldown: 1s
workflows:
  publish:
    queue: publish
    budget: {slo: 0.99, window: 1h, min_events: 50, on_exhausted: pause}
  lax:
    budget:
      slo: 0.9
`,
		env: []string{"AGENTQ_BREAKERS_FAILURE_RATE=0.75", "AGENTQ_BREAKERS_MIN_CALLS=4"},
	})
	if got, want := cfg.Workflows["publish"].Budget, (Budget{SLO: 0.99, Window: time.Hour, MinEvents: 50, OnExhausted: "pause"}); got != want {
		t.Errorf("publish budget = %+v, want %+v", got, want)
	}
	if got, want := cfg.Workflows["lax"].Budget, (Budget{SLO: 0.9}); got != want {
		t.Errorf("lax budget = %+v, want %+v (unset fields stay zero: the budget package fills defaults)", got, want)
	}
	b := cfg.Breakers
	if b.Failures != 3 || b.FailureRate != 0.75 || b.MinCalls != 4 || b.Cooldown != 10*time.Second || b.RateWindow != time.Minute {
		t.Errorf("breakers = %+v", b)
	}
	tests := []struct {
		name string
		want Breaker
	}{
		{"api.example.com:443", Breaker{Failures: 2, FailureRate: 0.25, RateWindow: time.Minute, MinCalls: 4, Cooldown: 10 * time.Second}},
		{"127.0.0.1:8080", Breaker{Failures: 3, FailureRate: 0.75, RateWindow: time.Minute, MinCalls: 4, Cooldown: time.Second}},
		{"other", Breaker{Failures: 3, FailureRate: 0.75, RateWindow: time.Minute, MinCalls: 4, Cooldown: 10 * time.Second}},
	}
	for _, tt := range tests {
		if got := cfg.Breaker(tt.name); got != tt.want {
			t.Errorf("Breaker(%q) = %+v, want %+v", tt.name, got, tt.want)
		}
	}

	// The output loads back, overrides and budgets included.
	var y bytes.Buffer
	if err := cfg.WriteYAML(&y); err != nil {
		t.Fatal(err)
	}
	back := mustLoad(t, testBundle{file: y.String()})
	if !reflect.DeepEqual(back, cfg.Masked()) {
		t.Errorf("loading WriteYAML's output gave\n%+v\nwant\n%+v\nYAML:\n%s", back, cfg.Masked(), y.String())
	}
	for _, want := range []string{"slo: 0.99", "failure_rate: 0.75", "api.example.com:443:"} {
		if !strings.Contains(y.String(), want) {
			t.Errorf("YAML output lacks %q:\n%s", want, y.String())
		}
	}
}

func TestBudgetAndBreakerBadValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		b    testBundle
		want string
	}{
		{"slo of 1", testBundle{file: "workflows:\n  w:\n    budget: {slo: 1}\n"},
			`config: workflows.w.budget.slo: must be between 0 and 1 (exclusive), e.g. 0.99, got 1 (from {file}, line 3)`},
		{"slo as percent", testBundle{file: "workflows:\n  w:\n    budget:\n      slo: 99.9\n"},
			`config: workflows.w.budget.slo: must be between 0 and 1 (exclusive), e.g. 0.99, got 99.9 (from {file}, line 4)`},
		{"slo not a number", testBundle{file: "workflows:\n  w:\n    budget:\n      slo: high\n"},
			`config: workflows.w.budget.slo: "high" is not a number (from {file}, line 4)`},
		{"budget without slo", testBundle{file: "workflows:\n  w:\n    budget:\n      window: 1h\n"},
			`config: workflows.w.budget.slo: must be set (between 0 and 1, e.g. 0.99) when other budget keys are`},
		{"on_exhausted", testBundle{file: "workflows:\n  w:\n    budget:\n      slo: 0.9\n      on_exhausted: panic\n"},
			`config: workflows.w.budget.on_exhausted: "panic" is not one of alert, pause, reject (from {file}, line 5)`},
		{"short window", testBundle{file: "workflows:\n  w:\n    budget:\n      slo: 0.9\n      window: 1s\n"},
			`config: workflows.w.budget.window: must be at least 10s, got 1s (from {file}, line 5)`},
		{"negative min events", testBundle{file: "workflows:\n  w:\n    budget:\n      slo: 0.9\n      min_events: -1\n"},
			`config: workflows.w.budget.min_events: must not be negative (leave it out for 20), got -1 (from {file}, line 5)`},
		{"unknown budget key", testBundle{file: "workflows:\n  w:\n    budget:\n      sol: 0.9\n"},
			`config: unknown key "workflows.w.budget.sol" in {file}, line 4 (did you mean "workflows.w.budget.slo"?)`},
		{"failure rate from env", testBundle{env: []string{"AGENTQ_BREAKERS_FAILURE_RATE=1.5"}},
			`config: breakers.failure_rate: must be above 0 and at most 1, got 1.5 (from AGENTQ_BREAKERS_FAILURE_RATE)`},
		{"failure rate not a number", testBundle{env: []string{"AGENTQ_BREAKERS_FAILURE_RATE=half"}},
			`config: breakers.failure_rate: "half" is not a number (from AGENTQ_BREAKERS_FAILURE_RATE)`},
		{"failures", testBundle{file: "breakers:\n  failures: 0\n"},
			`config: breakers.failures: must not be 0 (leave it out for the default, 5) (from {file}, line 2)`},
		{"cooldown", testBundle{env: []string{"AGENTQ_BREAKERS_COOLDOWN=0s"}},
			`config: breakers.cooldown: must not be 0 (leave it out for the default, 30s) (from AGENTQ_BREAKERS_COOLDOWN)`},
		{"override value", testBundle{file: "breakers:\n  overrides:\n    api.example.com:\n      min_calls: -3\n"},
			`config: breakers.overrides.api.example.com.min_calls: must be at least 1, got -3 (from {file}, line 4)`},
		{"override key", testBundle{file: "breakers:\n  overrides:\n    api.example.com:\n      cooldwn: 1s\n"},
			`config: unknown key "breakers.overrides.api.example.com.cooldwn" in {file}, line 4 (did you mean "breakers.overrides.api.example.com.cooldown"?)`},
		{"override not a mapping", testBundle{file: "breakers:\n  overrides:\n    api.example.com: 3\n"},
			`config: breakers.overrides.api.example.com: must be a mapping of keys, got 3 (from {file}, line 3)`},
		{"override duration", testBundle{file: "breakers:\n  overrides:\n    h:\n      cooldown: 5\n"},
			`config: breakers.overrides.h.cooldown: 5 is not a duration: add a unit, e.g. "5s" (from {file}, line 4)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts, path := setup(t, tt.b)
			_, err := Load(opts)
			if err == nil {
				t.Fatalf("Load succeeded, want error %q", tt.want)
			}
			want := strings.ReplaceAll(tt.want, "{file}", path)
			for _, line := range strings.Split(err.Error(), "\n") {
				if line == want {
					return
				}
			}
			t.Errorf("Load error =\n%v\nwant a line %q", err, want)
		})
	}
}

func TestDLQAndLedgerKeys(t *testing.T) {
	t.Parallel()
	cfg, err := Load(Options{Dir: t.TempDir(), Environ: []string{
		"AGENTQ_DLQ_RETENTION_AGE=720h", "AGENTQ_DLQ_RETENTION_COUNT=50000", "AGENTQ_LEDGER_RETENTION=48h",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DLQ.RetentionAge != 720*time.Hour || cfg.DLQ.RetentionCount != 50000 || cfg.Ledger.Retention != 48*time.Hour ||
		cfg.DLQ.ReconcileInterval != 30*time.Second || cfg.DLQ.Grace != time.Minute {
		t.Fatalf("dlq %+v ledger %+v", cfg.DLQ, cfg.Ledger)
	}
	for env, want := range map[string]string{
		"AGENTQ_DLQ_RETENTION_COUNT=-1":    "dlq.retention_count",
		"AGENTQ_DLQ_RETENTION_AGE=-1h":     "dlq.retention_age",
		"AGENTQ_DLQ_RECONCILE_INTERVAL=0s": "dlq.reconcile_interval",
		"AGENTQ_LEDGER_RETENTION=soon":     `ledger.retention: "soon"`,
	} {
		_, err := Load(Options{Dir: t.TempDir(), Environ: []string{env}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to name %q", env, err, want)
		}
	}
}

func TestPauseBudgetNeedsItsOwnQueue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := "workflows:\n  publish:\n    budget: {slo: 0.99, on_exhausted: pause}\n"
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(Options{Dir: dir, Environ: []string{}})
	if err == nil || !strings.Contains(err.Error(), "workflows.publish.budget.on_exhausted: pause needs workflows.publish.queue") {
		t.Fatalf("err = %v", err)
	}
}
