package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/runs"
)

// runsFile is a config file with a run workflow, llm settings and runs keys.
const runsFile = `runs:
  retention: 48h
  max_output_bytes: 1024
  max_steps: 12
llm:
  providers:
    openai.eu: {base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY}
  models:
    small.v1: {provider: openai.eu, model: gpt-4o-mini, input_per_mtok: 0.15, output_per_mtok: 0.6}
workflows:
  article:
    queue: articles
    caps: {max_cost_usd: 45, max_tokens: 200000, max_duration: 30m, max_steps: 20, max_attempts: 60}
    schedule: {cron: "0 9 * * MON", timezone: Europe/Berlin, input: {topic: weekly}}
    steps:
      - name: research
        kind: llm.chat
        queue: q2
        max_attempts: 3
        retry_base: 2s
        retry_max: 1m
        timeout: 90s
        fallback: research_small
        payload:
          model: small.v1
          temperature: 0.5
          messages:
            - role: user
              content: "Research {{ .input.topic }}"
      - name: research_small
        kind: llm.chat
        payload: {model: small.v1, messages: [{role: user, content: "{{ .input.topic }}"}]}
`

// withoutOrigins drops the file positions, which differ between a file and
// its printed copy.
func withoutOrigins(c Config) Config {
	c.origins = nil
	return c
}

func TestRunWorkflowLoads(t *testing.T) {
	t.Parallel()
	opts, path := setup(t, testBundle{file: runsFile})
	cfg, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Runs != (Runs{Retention: 48 * time.Hour, MaxOutputBytes: 1024, MaxSteps: 12}) {
		t.Errorf("runs = %+v", cfg.Runs)
	}
	wantLLM := LLM{
		Providers: map[string]LLMProvider{"openai.eu": {BaseURL: "https://api.openai.com/v1", APIKeyEnv: "OPENAI_API_KEY"}},
		Models:    map[string]LLMModel{"small.v1": {Provider: "openai.eu", Model: "gpt-4o-mini", InputPerMTok: 0.15, OutputPerMTok: 0.6}},
	}
	if !reflect.DeepEqual(cfg.LLM, wantLLM) {
		t.Errorf("llm = %+v", cfg.LLM)
	}
	if h := cfg.LLM.Handlers(); h.Models["small.v1"].Model != "gpt-4o-mini" || h.Providers["openai.eu"].APIKeyEnv != "OPENAI_API_KEY" {
		t.Errorf("handlers' llm config = %+v", h)
	}
	rws := cfg.RunWorkflows()
	rw, ok := rws["article"]
	if !ok || len(rws) != 1 {
		t.Fatalf("RunWorkflows = %+v", rws)
	}
	if rw.Name != "article" || rw.Queue != "articles" ||
		rw.Caps != (runs.Caps{MaxCostUSD: 45, MaxTokens: 200000, MaxDuration: 30 * time.Minute, MaxSteps: 20, MaxAttempts: 60}) {
		t.Errorf("workflow = %+v", rw)
	}
	if rw.Schedule == nil || rw.Schedule.Cron != "0 9 * * MON" || rw.Schedule.Timezone != "Europe/Berlin" || string(rw.Schedule.Input) != `{"topic":"weekly"}` {
		t.Errorf("schedule = %+v", rw.Schedule)
	}
	if len(rw.Steps) != 2 {
		t.Fatalf("steps = %+v", rw.Steps)
	}
	s := rw.Steps[0]
	if s.Name != "research" || s.Kind != "llm.chat" || s.Queue != "q2" || s.MaxAttempts != 3 || s.RetryBase != 2*time.Second ||
		s.RetryMax != time.Minute || s.Timeout != 90*time.Second || s.Fallback != "research_small" {
		t.Errorf("step = %+v", s)
	}
	// Key order is kept as written.
	want := `{"model":"small.v1","temperature":0.5,"messages":[{"role":"user","content":"Research {{ .input.topic }}"}]}`
	if string(s.Payload) != want {
		t.Errorf("payload = %s\nwant      %s", s.Payload, want)
	}
	origins := map[string]int{
		"workflows.article":                                      11,
		"workflows.article.caps.max_tokens":                      13,
		"workflows.article.steps[0]":                             16,
		"workflows.article.steps[0].fallback":                    23,
		"workflows.article.steps[0].payload.messages[0].content": 29,
		"workflows.article.steps[0].payload.messages[0].nope":    28, // nearest: the message
		"workflows.article.steps[1].payload":                     32,
		"workflows.article.caps":                                 13,
	}
	for key, line := range origins {
		if got, want := cfg.Origin(key), path+", line "+itoa(line); got != want {
			t.Errorf("Origin(%q) = %q, want %q", key, got, want)
		}
	}
	if got := cfg.Origin("workflows.nosuch.steps[0]"); got != "" {
		t.Errorf("Origin of an unknown workflow = %q, want none", got)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestRunWorkflowOutputLoadsBack(t *testing.T) {
	t.Parallel()
	cfg := mustLoad(t, testBundle{file: runsFile})
	for _, write := range []func(*bytes.Buffer) error{
		func(b *bytes.Buffer) error { return cfg.WriteYAML(b) },
	} {
		var y bytes.Buffer
		if err := write(&y); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"retention: 48h", "max_output_bytes: 1024", "max_steps: 12", "openai.eu:", "small.v1:",
			"cron: 0 9 * * MON", "content: Research {{ .input.topic }}", "max_duration: 30m"} {
			if !strings.Contains(y.String(), s) {
				t.Errorf("YAML lacks %q:\n%s", s, y.String())
			}
		}
		back := mustLoad(t, testBundle{file: y.String()})
		if !reflect.DeepEqual(withoutOrigins(back), withoutOrigins(cfg.Masked())) {
			t.Errorf("loads back as\n%+v\nwant\n%+v\n%s", back, cfg.Masked(), y.String())
		}
	}
	var j bytes.Buffer
	if err := cfg.WriteJSON(&j); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Runs      map[string]any `json:"runs"`
		Workflows map[string]struct {
			Steps []struct {
				Payload map[string]any `json:"payload"`
			} `json:"steps"`
		} `json:"workflows"`
	}
	if err := json.Unmarshal(j.Bytes(), &doc); err != nil {
		t.Fatalf("WriteJSON: %v\n%s", err, j.String())
	}
	if doc.Runs["retention"] != "48h" || doc.Workflows["article"].Steps[0].Payload["model"] != "small.v1" {
		t.Errorf("JSON output = %s", j.String())
	}
}

func TestRunWorkflowErrors(t *testing.T) {
	t.Parallel()
	step := "workflows:\n  a:\n    steps:\n      - name: s\n        kind: noop\n"
	tests := []struct{ name, file, want string }{
		{"unknown step key", step + "        fallbak: x\n",
			`unknown key "workflows.a.steps[0].fallbak" in {file}, line 6 (did you mean "workflows.a.steps[0].fallback"?)`},
		{"unknown caps key", "workflows:\n  a:\n    caps: {max_cost: 1}\n" + "    steps: [{name: s, kind: noop}]\n",
			`unknown key "workflows.a.caps.max_cost" in {file}, line 3`},
		{"unknown schedule key", "workflows:\n  a:\n    schedule: {crn: x}\n    steps: [{name: s, kind: noop}]\n",
			`unknown key "workflows.a.schedule.crn" in {file}, line 3`},
		{"steps not a list", "workflows:\n  a:\n    steps: {name: s}\n",
			`config: workflows.a.steps: must be a list of steps`},
		{"step not a mapping", "workflows:\n  a:\n    steps:\n      - s\n",
			`config: workflows.a.steps[0]: must be a mapping with name, kind and payload, got "s" (from {file}, line 4)`},
		{"bad duration", step + "        timeout: 10\n",
			`config: workflows.a.steps[0].timeout: 10 is not a duration: add a unit, e.g. "10s" (from {file}, line 6)`},
		{"bad cap", "workflows:\n  a:\n    caps: {max_tokens: lots}\n    steps: [{name: s, kind: noop}]\n",
			`config: workflows.a.caps.max_tokens: "lots" is not a whole number (from {file}, line 3)`},
		{"number key", step + "        payload:\n          1: x\n",
			`config: workflows.a.steps[0].payload: has the key 1, which is not a string: JSON keys are strings (quote it: "1") (from {file}, line 7)`},
		{"nested number key", step + "        payload:\n          a:\n            - {true: x}\n",
			`config: workflows.a.steps[0].payload.a[0]: has the key true, which is not a string`},
		{"infinity", step + "        payload: {x: .inf}\n",
			`config: workflows.a.steps[0].payload.x: .inf is not a finite number`},
		{"merge key", step + "        payload: {<<: {a: 1}}\n",
			`config: workflows.a.steps[0].payload: has the key <<, which is not a string`},
		{"schedule input key", "workflows:\n  a:\n    schedule: {cron: '@hourly', input: {2: x}}\n    steps: [{name: s, kind: noop}]\n",
			`config: workflows.a.schedule.input: has the key 2`},
		{"caps without steps", "workflows:\n  a:\n    caps: {max_steps: 3}\n",
			`config: workflows.a.caps: needs steps: caps bound the runs of a workflow that defines steps (from {file}, line 3)`},
		{"schedule without steps", "workflows:\n  a:\n    schedule: {cron: '@hourly'}\n",
			`config: workflows.a.schedule: needs steps`},
		{"runs retention", "runs:\n  retention: 0s\n", `config: runs.retention: must be greater than 0, got 0s (from {file}, line 2)`},
		{"runs max steps", "runs:\n  max_steps: 0\n", `config: runs.max_steps: must be at least 1, got 0`},
		{"runs max output", "runs:\n  max_output_bytes: -1\n", `config: runs.max_output_bytes: must be at least 1, got -1`},
		{"unknown runs key", "runs:\n  retension: 1h\n", `unknown key "runs.retension" in {file}, line 2 (did you mean "runs.retention"?)`},
		{"unknown llm key", "llm:\n  provider: {}\n", `unknown key "llm.provider" in {file}, line 2 (did you mean "llm.providers"?)`},
		{"unknown provider key", "llm:\n  providers:\n    open.ai: {base_ur: x}\n",
			`unknown key "llm.providers.open.ai.base_ur" in {file}, line 3 (did you mean "llm.providers.open.ai.base_url"?)`},
		{"unknown model key", "llm:\n  models:\n    small: {price: 1}\n", `unknown key "llm.models.small.price" in {file}, line 3`},
		{"bad model price", "llm:\n  models:\n    small: {input_per_mtok: cheap}\n",
			`config: llm.models.small.input_per_mtok: "cheap" is not a number (from {file}, line 3)`},
		{"providers not a mapping", "llm:\n  providers: [a]\n", `config: llm.providers: must be a mapping of names to settings`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts, path := setup(t, testBundle{file: tt.file})
			_, err := Load(opts)
			want := strings.ReplaceAll(tt.want, "{file}", path)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Load error = %v\nwant it to contain %q", err, want)
			}
		})
	}
}

// TestRunErrors: package runs' problems, with paths relative to the
// workflow, become keys of the config with the line that sets them.
func TestRunErrors(t *testing.T) {
	t.Parallel()
	opts, path := setup(t, testBundle{file: runsFile})
	cfg, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	in := errors.Join(
		&runs.FieldError{Path: "steps[0].fallback", Reason: `no step "draft_smal" (steps: research, research_small)`},
		errors.Join(&runs.FieldError{Path: "steps[0].payload.messages[0].content", Reason: "template: unexpected EOF"}),
		&runs.FieldError{Path: "", Reason: "has no steps"},
		errors.New("plain"),
	)
	got := RunErrors(cfg, "article", in)
	want := []string{
		`config: workflows.article.steps[0].fallback: no step "draft_smal" (steps: research, research_small) (from ` + path + `, line 23)`,
		`config: workflows.article.steps[0].payload.messages[0].content: template: unexpected EOF (from ` + path + `, line 29)`,
		`config: workflows.article: has no steps (from ` + path + `, line 11)`,
		`config: workflows.article: plain (from ` + path + `, line 11)`,
	}
	if len(got) != len(want) {
		t.Fatalf("RunErrors = %v", got)
	}
	for i := range want {
		var fe *FieldError
		if got[i].Error() != want[i] || !errors.As(got[i], &fe) {
			t.Errorf("error %d = %q\nwant       %q", i, got[i], want[i])
		}
	}
}

func TestLLMBaseURLMasked(t *testing.T) {
	t.Parallel()
	cfg := mustLoad(t, testBundle{file: "llm:\n  providers:\n    p: {base_url: \"https://u:s3cret@h.example/v1\"}\n"})
	var y bytes.Buffer
	if err := cfg.WriteYAML(&y); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(y.String(), "s3cret") || !strings.Contains(y.String(), "https://u:****@h.example/v1") {
		t.Errorf("output:\n%s", y.String())
	}
	if cfg.LLM.Providers["p"].BaseURL != "https://u:s3cret@h.example/v1" {
		t.Error("Masked changed the config")
	}
}

func TestPayloadSecretsMasked(t *testing.T) {
	t.Parallel()
	cfg := mustLoad(t, testBundle{file: `http:
  redact_fields: [ssn]
workflows:
  a:
    steps:
      - name: call
        kind: http.call
        payload:
          url: https://api.example.com/x
          headers: {Authorization: "Bearer sk-live-1", Accept: json}
          body: {ssn: 123-45, keep: visible}
`})
	var y bytes.Buffer
	if err := cfg.WriteYAML(&y); err != nil {
		t.Fatal(err)
	}
	out := y.String()
	if strings.Contains(out, "sk-live-1") || strings.Contains(out, "123-45") || !strings.Contains(out, "keep: visible") || !strings.Contains(out, "Accept: json") {
		t.Errorf("output:\n%s", out)
	}
	if !strings.Contains(string(cfg.Workflows["a"].Steps[0].Payload), "sk-live-1") {
		t.Error("Masked changed the config")
	}
	back := mustLoad(t, testBundle{file: out})
	if !reflect.DeepEqual(withoutOrigins(back), withoutOrigins(cfg.Masked())) {
		t.Errorf("masked output loads back as %s", back.Workflows["a"].Steps[0].Payload)
	}
}
