package dev

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/internal/fakellm"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/runs"
)

// Names the run demo adds to the configuration of `agentq dev`.
const (
	// LLMProvider is the provider name of the fake model server.
	LLMProvider = "agentq-dev"
	// SmallModel and LargeModel are the model names the demo's steps use.
	SmallModel = "dev-small"
	LargeModel = "dev-large"
	// RunWorkflow is the demo's workflow, defined in code.
	RunWorkflow = "agentq-dev-article"
)

// Made-up prices of the demo's models in US dollars per million tokens,
// high enough that a run of a few hundred tokens shows a cost.
const (
	smallInPerMTok, smallOutPerMTok = 1.0, 4.0
	largeInPerMTok, largeOutPerMTok = 15.0, 60.0
)

// FakeLLM is the model server of the run demo: internal/fakellm
// (deterministic replies with a usage block) behind a wrapper that answers
// the very first chat request with 429 and Retry-After: 1, so that exactly
// one step of the demo is rate limited once, whichever key it carries.
type FakeLLM struct {
	fake *fakellm.Server
	srv  *httptest.Server

	mu      sync.Mutex
	limited int // 429s answered
}

// StartFakeLLM starts the fake on free loopback ports.
func StartFakeLLM() (*FakeLLM, error) {
	fake, err := fakellm.Start("", fakellm.Options{})
	if err != nil {
		return nil, err
	}
	f := &FakeLLM{fake: fake}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	return f, nil
}

func (f *FakeLLM) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/chat/completions") {
		f.mu.Lock()
		first := f.limited == 0
		if first {
			f.limited++
		}
		f.mu.Unlock()
		if first {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprintln(w, `{"error":{"message":"rate limited (agentq dev: the first request always is)","type":"rate_limit_exceeded"}}`)
			return
		}
	}
	f.fake.ServeHTTP(w, r)
}

// URL is the API root to configure as the provider's base_url.
func (f *FakeLLM) URL() string { return f.srv.URL + "/v1" }

// RateLimited returns how many requests got the 429: 0 or 1.
func (f *FakeLLM) RateLimited() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.limited
}

// Requests returns the requests the fake answered (the 429 not counted).
func (f *FakeLLM) Requests() []fakellm.Request { return f.fake.Requests() }

// Close stops the fake.
func (f *FakeLLM) Close() {
	f.srv.Close()
	_ = f.fake.Close()
}

// AddTo returns l with the fake's provider (no API key) and the demo's
// models added; maps are copied, and same-named entries are replaced.
func (f *FakeLLM) AddTo(l config.LLM) config.LLM {
	l.Providers = maps.Clone(l.Providers)
	if l.Providers == nil {
		l.Providers = map[string]config.LLMProvider{}
	}
	l.Providers[LLMProvider] = config.LLMProvider{BaseURL: f.URL()}
	l.Models = maps.Clone(l.Models)
	if l.Models == nil {
		l.Models = map[string]config.LLMModel{}
	}
	l.Models[SmallModel] = config.LLMModel{Provider: LLMProvider, Model: "fake-small", InputPerMTok: smallInPerMTok, OutputPerMTok: smallOutPerMTok}
	l.Models[LargeModel] = config.LLMModel{Provider: LLMProvider, Model: "fake-large", InputPerMTok: largeInPerMTok, OutputPerMTok: largeOutPerMTok}
	return l
}

// researchSystem and draftSystem are the demo's system prompts; their
// words are prompt tokens, so the run's cost shows.
const (
	researchSystem = "You are a research assistant for a small engineering blog. Collect the facts a reader needs " +
		"before reading an article on the topic: what it is, why it matters in production, how it fails, and " +
		"what a careful engineer does about it. Be brief, concrete and accurate; name sources where you can."
	draftSystem = "You are a technical writer for a small engineering blog. Write a short, plain article from the " +
		"research notes you are given: a title, then three short paragraphs. Keep to the facts in the notes, " +
		"explain every term a newcomer may not know, and end with one practical piece of advice."
)

// ArticleWorkflow returns the demo's workflow on queue q: research
// (llm.chat on SmallModel), draft (llm.chat on LargeModel, from the
// research) and publish (http.call POSTing the draft to the tool server's
// /publish?id=<run id>).
func ArticleWorkflow(q string, ts *ToolServer) runs.Workflow {
	chat := func(model, system, user string) json.RawMessage {
		b, _ := json.Marshal(map[string]any{
			"model":    model,
			"messages": []map[string]string{{"role": "system", "content": system}, {"role": "user", "content": user}},
			"timeout":  "10s",
		})
		return b
	}
	publish, _ := json.Marshal(map[string]any{
		"method":  "POST",
		"url":     ts.URL() + "/publish?id={{ .run_id }}",
		"body":    "{{ .steps.draft.output.content }}",
		"timeout": "5s",
	})
	step := func(name, kind string, payload json.RawMessage) jobs.StepDef {
		return jobs.StepDef{Name: name, Kind: kind, Payload: payload, MaxAttempts: 3,
			RetryBase: 200 * time.Millisecond, RetryMax: 2 * time.Second}
	}
	return runs.Workflow{
		Name:  RunWorkflow,
		Queue: q,
		Caps:  runs.Caps{MaxCostUSD: 0.05, MaxTokens: 10_000},
		Steps: []jobs.StepDef{
			step("research", jobs.KindLLMChat, chat(SmallModel, researchSystem, "Research {{ .input.topic }}.")),
			step("draft", jobs.KindLLMChat, chat(LargeModel, draftSystem, "Draft an article on {{ .input.topic }} from these notes: {{ .steps.research.output.content }}")),
			step("publish", jobs.KindHTTPCall, publish),
		},
	}
}

// RunDemo starts a run of workflow wf with input {"topic": topic} and
// waits up to within for it to end. It records the run (and its steps'
// idempotency keys) in own (nil: nowhere) once started. It returns the run
// as last read; an error when it did not start, could not be read or did
// not end in time.
func RunDemo(ctx context.Context, rn *runs.Runs, wf runs.Workflow, topic string, within time.Duration, own *Owned) (*runs.Run, error) {
	input, _ := json.Marshal(map[string]string{"topic": topic})
	st, err := rn.Start(ctx, wf.Name, input, runs.StartOptions{})
	if err != nil {
		return nil, fmt.Errorf("start a run of %s: %w", wf.Name, err)
	}
	steps := make([]string, len(wf.Steps))
	for i, s := range wf.Steps {
		steps[i] = s.Name
	}
	own.AddRun(st.RunID, steps...)
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var (
		run    *runs.Run
		getErr error
	)
	ended := func() bool {
		run, getErr = rn.Get(ctx, st.RunID)
		return getErr != nil || run.Status.Terminal()
	}
	if err := wait(ctx, ended); err != nil {
		if run == nil {
			return nil, fmt.Errorf("run %s did not end within %v: %w", st.RunID, within, err)
		}
		return run, fmt.Errorf("run %s is still %s after %v: %w", st.RunID, run.Status, within, err)
	}
	if getErr != nil {
		return nil, fmt.Errorf("read run %s: %w", st.RunID, getErr)
	}
	return run, nil
}
