package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/internal/fakellm"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/redact"
)

// The fake API key of llmSetup's provider; no error may show it.
const testAPIKey = "sk-t3stK3yV4lue0123456789"

// Prices of llmSetup's model "small", per million tokens.
const (
	testInPerMTok  = 0.15
	testOutPerMTok = 0.60
)

type llmBundle struct {
	fake *fakellm.Server
	chat *LLMChat
}

// llmSetup starts a fakellm server requiring testAPIKey and returns a
// handler whose model "small" is fakellm's model id modelID (extra models
// by name in more).
func llmSetup(t *testing.T, o fakellm.Options, modelID string, more map[string]string) *llmBundle {
	t.Helper()
	o.APIKey = testAPIKey
	fake, err := fakellm.Start("", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	models := map[string]LLMModel{
		"small": {Provider: "fake", Model: modelID, InputPerMTok: testInPerMTok, OutputPerMTok: testOutPerMTok},
	}
	for name, id := range more {
		models[name] = LLMModel{Provider: "fake", Model: id, InputPerMTok: testInPerMTok, OutputPerMTok: testOutPerMTok}
	}
	cfg := Config{
		Now: func() time.Time { return testNow },
		LLM: LLMConfig{
			Providers: map[string]LLMProvider{"fake": {BaseURL: fake.URL, APIKeyEnv: "AGENTQ_TEST_FAKE_KEY"}},
			Models:    models,
		},
	}
	if err := cfg.LLM.Validate(); err != nil {
		t.Fatal(err)
	}
	chat := NewLLMChat(cfg)
	chat.getenv = fakeEnv(map[string]string{"AGENTQ_TEST_FAKE_KEY": testAPIKey})
	return &llmBundle{fake: fake, chat: chat}
}

func fakeEnv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func llmStep() *jobs.Step {
	return &jobs.Step{TaskID: "task-1", Kind: jobs.KindLLMChat, Key: "step-key-1", Attempt: 1, MaxAttempts: 3}
}

func chatArgs(model string, msgs ...string) LLMChatArgs {
	a := LLMChatArgs{Model: model, Messages: []LLMMessage{{Role: "system", Content: "be brief"}}}
	for _, m := range msgs {
		a.Messages = append(a.Messages, LLMMessage{Role: "user", Content: m})
	}
	return a
}

func fakeMessages(a LLMChatArgs) []fakellm.Message {
	var out []fakellm.Message
	for _, m := range a.Messages {
		out = append(out, fakellm.Message{Role: m.Role, Content: m.Content})
	}
	return out
}

// wantUsage is the usage fakellm reports for a, replying content.
func wantUsage(a LLMChatArgs, content string) jobs.Usage {
	in, out := int64(fakellm.PromptTokens(fakeMessages(a))), int64(fakellm.CompletionTokens(content))
	return jobs.Usage{Model: a.Model, TokensIn: in, TokensOut: out,
		CostUSD: float64(in)*testInPerMTok/1e6 + float64(out)*testOutPerMTok/1e6}
}

func sameUsage(a, b jobs.Usage) bool {
	return a.Model == b.Model && a.TokensIn == b.TokensIn && a.TokensOut == b.TokensOut &&
		math.Abs(a.CostUSD-b.CostUSD) < 1e-12
}

func noKey(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testAPIKey) {
		t.Errorf("error leaks the API key: %q", err)
	}
}

func TestLLMChatSuccess(t *testing.T) {
	t.Parallel()
	b := llmSetup(t, fakellm.Options{}, "gpt-fake", nil)
	temp := 0.2
	a := chatArgs("small", "summarize the quarterly report please")
	a.Temperature, a.MaxTokens = &temp, 50
	s := llmStep()
	if err := b.chat.Handle(t.Context(), s, a); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	content := fakellm.Reply(fakeMessages(a))
	want := wantUsage(a, content)
	if got := s.Usage(); !sameUsage(got, want) {
		t.Errorf("Usage = %+v, want %+v", got, want)
	}
	if want.CostUSD <= 0 {
		t.Fatalf("expected a positive cost, got %v", want.CostUSD)
	}
	var out LLMChatOutput
	if err := json.Unmarshal(s.Output(), &out); err != nil {
		t.Fatalf("output %s: %v", s.Output(), err)
	}
	if out.Content != content || out.Model != "gpt-fake" || out.FinishReason != "stop" || out.JSON != nil {
		t.Errorf("output = %+v, want content %q from gpt-fake, finish stop, no json", out, content)
	}
	if out.Usage.TokensIn != want.TokensIn || out.Usage.TokensOut != want.TokensOut || math.Abs(out.Usage.CostUSD-want.CostUSD) > 1e-12 {
		t.Errorf("output usage = %+v, want %+v", out.Usage, want)
	}
	if strings.Contains(string(s.Output()), `"json"`) {
		t.Errorf("output %s has a json field without a response_schema", s.Output())
	}

	reqs := b.fake.Requests()
	if len(reqs) != 1 {
		t.Fatalf("fake saw %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if !r.Authorized || r.IdempotencyKey != "step-key-1" || r.Model != "gpt-fake" || r.Path != "/v1/chat/completions" {
		t.Errorf("request = %+v, want authorized, key step-key-1, model gpt-fake at /v1/chat/completions", r)
	}
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body["temperature"] != 0.2 || body["max_tokens"] != float64(50) {
		t.Errorf("request body %s: want temperature 0.2 and max_tokens 50", r.Body)
	}
	if _, ok := body["response_format"]; ok {
		t.Errorf("request body %s asks for a response_format without a response_schema", r.Body)
	}
}

func TestLLMChatOmitsUnsetOptions(t *testing.T) {
	t.Parallel()
	b := llmSetup(t, fakellm.Options{}, "gpt-fake", nil)
	if err := b.chat.Handle(t.Context(), llmStep(), chatArgs("small", "hi")); err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(b.fake.Requests()[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"temperature", "max_tokens", "response_format"} {
		if _, ok := body[k]; ok {
			t.Errorf("request body has %s though the payload gives none", k)
		}
	}
}

func TestLLMChatRateLimitedThenSuccess(t *testing.T) {
	t.Parallel()
	b := llmSetup(t, fakellm.Options{FailFirst429: 1}, "gpt-fake", nil)
	a := chatArgs("small", "hello")
	s := llmStep()
	err := b.chat.Handle(t.Context(), s, a)
	if got := jobs.Classify(err); got != jobs.ClassRateLimited {
		t.Fatalf("first attempt: Classify = %q, want rate_limited (err: %v)", got, err)
	}
	if d, ok := jobs.RequestedDelay(err); !ok || d != time.Second {
		t.Errorf("RequestedDelay = %v, %v; want 1s from Retry-After", d, ok)
	}
	if !s.Usage().IsZero() || s.Output() != nil {
		t.Errorf("a 429 without usage recorded usage %+v, output %s", s.Usage(), s.Output())
	}
	s2 := llmStep()
	s2.Attempt = 2
	if err := b.chat.Handle(t.Context(), s2, a); err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	if got, want := s2.Usage(), wantUsage(a, fakellm.Reply(fakeMessages(a))); !sameUsage(got, want) {
		t.Errorf("Usage = %+v, want %+v", got, want)
	}
}

func TestLLMChatStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		modelID   string
		wantClass jobs.Class
		wantText  string
	}{
		{name: "400 is permanent", modelID: "status-400", wantClass: jobs.ClassPermanent, wantText: "http 400 Bad Request"},
		{name: "401 is permanent", modelID: "status-401", wantClass: jobs.ClassPermanent, wantText: "http 401"},
		{name: "404 is permanent", modelID: "status-404", wantClass: jobs.ClassPermanent, wantText: "http 404"},
		{name: "408 is retryable", modelID: "status-408", wantClass: jobs.ClassRetryable, wantText: "http 408"},
		{name: "425 is retryable", modelID: "status-425", wantClass: jobs.ClassRetryable, wantText: "http 425"},
		{name: "429 is rate limited", modelID: "status-429", wantClass: jobs.ClassRateLimited, wantText: "http 429"},
		{name: "503 is retryable", modelID: "always-503", wantClass: jobs.ClassRetryable, wantText: "fails with 503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := llmSetup(t, fakellm.Options{}, tt.modelID, nil)
			s := llmStep()
			err := b.chat.Handle(t.Context(), s, chatArgs("small", "hi"))
			if got := jobs.Classify(err); got != tt.wantClass {
				t.Fatalf("Classify = %q, want %q (err: %v)", got, tt.wantClass, err)
			}
			if !strings.Contains(err.Error(), tt.wantText) || !strings.Contains(err.Error(), "llm.chat small: POST http://127.0.0.1:") {
				t.Errorf("err = %q, want it to name the model, the endpoint and %q", err, tt.wantText)
			}
			noKey(t, err)
			if s.Output() != nil {
				t.Errorf("a failed step recorded output %s", s.Output())
			}
		})
	}
}

func TestLLMChatResponseSchema(t *testing.T) {
	t.Parallel()
	schema := json.RawMessage(`{"type":"object","additionalProperties":false,"required":["title","tags"],
		"properties":{"title":{"type":"string"},"tags":{"type":"array","items":{"type":"string"}}}}`)
	b := llmSetup(t, fakellm.Options{}, "gpt-fake", map[string]string{"broken": "bad-json"})

	t.Run("a reply that meets it", func(t *testing.T) {
		t.Parallel()
		a := chatArgs("small", "name this")
		a.ResponseSchema = schema
		s := llmStep()
		if err := b.chat.Handle(t.Context(), s, a); err != nil {
			t.Fatalf("Handle: %v", err)
		}
		var out struct {
			Content string
			JSON    struct {
				Title string
				Tags  []string
			}
		}
		if err := json.Unmarshal(s.Output(), &out); err != nil {
			t.Fatal(err)
		}
		if out.JSON.Title == "" || len(out.JSON.Tags) != 1 {
			t.Errorf("output %s: want json with a title and one tag", s.Output())
		}
		if got, want := s.Usage(), wantUsage(a, out.Content); !sameUsage(got, want) {
			t.Errorf("Usage = %+v, want %+v", got, want)
		}
	})

	t.Run("a reply that fails it", func(t *testing.T) {
		t.Parallel()
		a := chatArgs("broken", "name this")
		a.ResponseSchema = schema
		s := llmStep()
		err := b.chat.Handle(t.Context(), s, a)
		if got := jobs.Classify(err); got != jobs.ClassSchema {
			t.Fatalf("Classify = %q, want schema (err: %v)", got, err)
		}
		var se *jobs.SchemaError
		if !errors.As(err, &se) || !jobs.ClassSchema.Retryable() {
			t.Fatalf("err %v is not a retryable *jobs.SchemaError", err)
		}
		if !strings.Contains(err.Error(), "missing propert") || !strings.Contains(err.Error(), "title") {
			t.Errorf("err = %q, want it to name the missing property", err)
		}
		if got, want := s.Usage(), wantUsage(a, "{}"); !sameUsage(got, want) || got.IsZero() {
			t.Errorf("Usage = %+v, want %+v: a failed reply's tokens are spent", got, want)
		}
		if s.Output() != nil {
			t.Errorf("a failed step recorded output %s", s.Output())
		}
	})

	t.Run("a reply that is not JSON", func(t *testing.T) {
		t.Parallel()
		a := chatArgs("broken", "name this")
		a.ResponseSchema = json.RawMessage(`{"type":"object"}`)
		s := llmStep()
		err := b.chat.Handle(t.Context(), s, a)
		if got := jobs.Classify(err); got != jobs.ClassSchema || !strings.Contains(err.Error(), "content is not JSON") {
			t.Fatalf("Classify = %q, err %v; want schema, naming content that is not JSON", got, err)
		}
		if s.Usage().IsZero() {
			t.Error("no usage recorded for a reply that is not JSON")
		}
	})

	t.Run("the request asks for structured output", func(t *testing.T) {
		t.Parallel()
		fake := func() *fakellm.Server { return b.fake }()
		a := chatArgs("small", "structured please")
		a.ResponseSchema = schema
		if err := b.chat.Handle(t.Context(), llmStep(), a); err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, r := range fake.Requests() {
			var body struct {
				Messages       []LLMMessage
				ResponseFormat struct {
					Type       string
					JSONSchema struct {
						Name   string
						Schema json.RawMessage
						Strict bool
					} `json:"json_schema"`
				} `json:"response_format"`
			}
			if err := json.Unmarshal(r.Body, &body); err != nil {
				t.Fatal(err)
			}
			if body.Messages[len(body.Messages)-1].Content != "structured please" {
				continue
			}
			found = true
			rf := body.ResponseFormat
			if rf.Type != "json_schema" || rf.JSONSchema.Name != "output" || rf.JSONSchema.Strict {
				t.Errorf("response_format = %+v, want json_schema named output, strict", rf)
			}
			var got, want any
			_ = json.Unmarshal(rf.JSONSchema.Schema, &got)
			_ = json.Unmarshal(schema, &want)
			if g, _ := json.Marshal(got); string(g) != string(must(json.Marshal(want))) {
				t.Errorf("schema sent = %s, want %s", rf.JSONSchema.Schema, schema)
			}
		}
		if !found {
			t.Error("the fake saw no request with the message")
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestLLMChatConfigErrors(t *testing.T) {
	t.Parallel()
	fake, err := fakellm.Start("", fakellm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	cfg := Config{LLM: LLMConfig{
		Providers: map[string]LLMProvider{
			"fake":   {BaseURL: fake.URL, APIKeyEnv: "AGENTQ_TEST_UNSET_KEY"},
			"keyed":  {BaseURL: fake.URL, APIKeyEnv: "AGENTQ_TEST_SET_KEY"},
			"nl":     {BaseURL: fake.URL, APIKeyEnv: "AGENTQ_TEST_NL_KEY"},
			"broken": {BaseURL: "ftp://u:pw-s3cret@x"},
		},
		Models: map[string]LLMModel{
			"small":   {Provider: "fake", Model: "m"},
			"orphan":  {Provider: "gone", Model: "m"},
			"badbase": {Provider: "broken", Model: "m"},
			"ok":      {Provider: "keyed", Model: "m"},
			"newline": {Provider: "nl", Model: "m"},
		},
	}}
	chat := NewLLMChat(cfg)
	chat.getenv = fakeEnv(map[string]string{"AGENTQ_TEST_SET_KEY": testAPIKey, "AGENTQ_TEST_NL_KEY": testAPIKey + "\n"})
	tests := []struct {
		name  string
		model string
		want  []string
	}{
		{name: "unknown model", model: "large", want: []string{`model "large" is not configured`, "configured: badbase, newline, ok, orphan, small"}},
		{name: "unknown provider", model: "orphan", want: []string{`provider "gone" is not configured`, "configured: broken, fake, keyed, nl"}},
		{name: "bad base url", model: "badbase", want: []string{"base_url", "ftp://u:****@x"}},
		{name: "missing key", model: "small", want: []string{"AGENTQ_TEST_UNSET_KEY", "not set"}},
		{name: "key with a newline", model: "newline", want: []string{"AGENTQ_TEST_NL_KEY", "control character"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := llmStep()
			err := chat.Handle(t.Context(), s, chatArgs(tt.model, "hi"))
			if got := jobs.Classify(err); got != jobs.ClassPermanent {
				t.Fatalf("Classify = %q, want permanent (err: %v)", got, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to contain %q", err, w)
				}
			}
			noKey(t, err)
			if strings.Contains(err.Error(), "pw-s3cret") {
				t.Errorf("err leaks the base URL's password: %q", err)
			}
		})
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("fake saw %d requests, want none: config errors are found before calling", n)
	}
	if err := chat.Handle(t.Context(), llmStep(), chatArgs("ok", "hi")); err != nil {
		t.Errorf("the configured model: %v", err)
	}
}

// TestLLMChatKeyNotLeaked has a provider echo the request headers in its
// error answers; the key must not reach the step's error.
func TestLLMChatKeyNotLeaked(t *testing.T) {
	t.Parallel()
	for _, code := range []int{401, 500} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			_, _ = io.WriteString(w, `{"error":{"message":"Incorrect API key provided","headers":{"Authorization":"`+
				r.Header.Get("Authorization")+`"}}}`+"\nAuthorization: "+r.Header.Get("Authorization"))
		}))
		t.Cleanup(srv.Close)
		chat := NewLLMChat(Config{LLM: LLMConfig{
			Providers: map[string]LLMProvider{"p": {BaseURL: srv.URL, APIKeyEnv: "K"}},
			Models:    map[string]LLMModel{"m": {Provider: "p", Model: "x"}},
		}})
		chat.getenv = fakeEnv(map[string]string{"K": testAPIKey})
		err := chat.Handle(t.Context(), llmStep(), chatArgs("m", "hi"))
		if err == nil {
			t.Fatalf("%d: Handle succeeded", code)
		}
		noKey(t, err)
	}
}

// answering returns an LLMChat whose provider answers every request with
// code and body.
func answering(t *testing.T, code int, body string) *LLMChat {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return NewLLMChat(Config{MaxResponseBytes: 4096, LLM: LLMConfig{
		Providers: map[string]LLMProvider{"p": {BaseURL: srv.URL + "/v1/"}},
		Models:    map[string]LLMModel{"m": {Provider: "p", Model: "x", InputPerMTok: 1, OutputPerMTok: 2}},
	}})
}

func TestLLMChatReplies(t *testing.T) {
	t.Parallel()
	const usage = `"usage":{"prompt_tokens":1000,"completion_tokens":500}`
	spent := jobs.Usage{Model: "m", TokensIn: 1000, TokensOut: 500, CostUSD: 1000*1.0/1e6 + 500*2.0/1e6}
	tests := []struct {
		name      string
		code      int
		body      string
		wantClass jobs.Class
		wantText  string
		wantUsage jobs.Usage
	}{
		{name: "ok", code: 200, body: `{"model":"x-2025","choices":[{"message":{"content":"hi"},"finish_reason":"length"}],` + usage + `}`,
			wantClass: jobs.ClassNone, wantUsage: spent},
		{name: "ok without usage", code: 200, body: `{"choices":[{"message":{"content":"hi"}}]}`, wantClass: jobs.ClassNone},
		{name: "not JSON", code: 200, body: `<html>gateway</html>`, wantClass: jobs.ClassRetryable, wantText: "malformed reply: not a JSON object"},
		{name: "cut JSON", code: 200, body: `{"choices":[`, wantClass: jobs.ClassRetryable, wantText: "malformed reply: not JSON"},
		{name: "empty", code: 200, body: ``, wantClass: jobs.ClassRetryable, wantText: "malformed reply: empty body"},
		{name: "no choices", code: 200, body: `{"choices":[],` + usage + `}`, wantClass: jobs.ClassRetryable,
			wantText: "malformed reply: no choices", wantUsage: spent},
		{name: "choices of the wrong type", code: 200, body: `{"choices":{"a":1},` + usage + `}`, wantClass: jobs.ClassRetryable,
			wantText: "malformed reply: choices:", wantUsage: spent},
		{name: "null content", code: 200, body: `{"choices":[{"message":{"content":null}}]}`, wantClass: jobs.ClassRetryable,
			wantText: "content is missing or null"},
		{name: "refusal", code: 200, body: `{"choices":[{"message":{"content":null,"refusal":"I can't help with that"}}]}`,
			wantClass: jobs.ClassRetryable, wantText: "the model refused: I can't help with that"},
		{name: "negative tokens count as none", code: 200,
			body:      `{"choices":[{"message":{"content":"a"}}],"usage":{"prompt_tokens":-5,"completion_tokens":3}}`,
			wantClass: jobs.ClassNone, wantUsage: jobs.Usage{Model: "m", TokensOut: 3, CostUSD: 3 * 2.0 / 1e6}},
		{name: "too large", code: 200, body: `{"choices":[{"message":{"content":"` + strings.Repeat("x", 5000) + `"}}]}`,
			wantClass: jobs.ClassPermanent, wantText: "larger than max_response_bytes (4096)"},
		{name: "too large, usage first, is billed", code: 200, body: `{` + usage + `,"choices":[{"message":{"content":"` + strings.Repeat("x", 5000) + `"}}]}`,
			wantClass: jobs.ClassPermanent, wantText: "larger than max_response_bytes (4096)", wantUsage: spent},
		{name: "5xx with usage", code: 502, body: `{"error":{"message":"upstream cut"},` + usage + `}`,
			wantClass: jobs.ClassRetryable, wantText: "http 502", wantUsage: spent},
		{name: "3xx is permanent", code: 304, body: ``, wantClass: jobs.ClassPermanent, wantText: "http 304"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			chat := answering(t, tt.code, tt.body)
			s := llmStep()
			err := chat.Handle(t.Context(), s, chatArgs("m", "hi"))
			if got := jobs.Classify(err); got != tt.wantClass {
				t.Fatalf("Classify = %q, want %q (err: %v)", got, tt.wantClass, err)
			}
			if tt.wantText != "" && !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("err = %q, want it to contain %q", err, tt.wantText)
			}
			if got := s.Usage(); !sameUsage(got, tt.wantUsage) {
				t.Errorf("Usage = %+v, want %+v", got, tt.wantUsage)
			}
			if (err == nil) != (s.Output() != nil) {
				t.Errorf("err %v with output %s: want output exactly on success", err, s.Output())
			}
		})
	}

	t.Run("output names the provider's model", func(t *testing.T) {
		t.Parallel()
		chat := answering(t, 200, `{"model":"x-2025","choices":[{"message":{"content":"hi"},"finish_reason":"length"}],`+usage+`}`)
		s := llmStep()
		if err := chat.Handle(t.Context(), s, chatArgs("m", "hi")); err != nil {
			t.Fatal(err)
		}
		want := `{"content":"hi","model":"x-2025","usage":{"tokens_in":1000,"tokens_out":500,"cost_usd":0.002},"finish_reason":"length"}`
		if string(s.Output()) != want {
			t.Errorf("output = %s, want %s", s.Output(), want)
		}
	})
}

func TestLLMChatTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	chat := NewLLMChat(Config{LLM: LLMConfig{
		Providers: map[string]LLMProvider{"p": {BaseURL: srv.URL}},
		Models:    map[string]LLMModel{"m": {Provider: "p", Model: "x"}},
	}})
	a := chatArgs("m", "hi")
	a.Timeout = "20ms"
	err := chat.Handle(t.Context(), llmStep(), a)
	if got := jobs.Classify(err); got != jobs.ClassTimeout {
		t.Fatalf("Classify = %q, want timeout (err: %v)", got, err)
	}
	if !strings.Contains(err.Error(), "no answer within the 20ms timeout") {
		t.Errorf("err = %q, want it to name the timeout", err)
	}
}

func TestLLMChatNetworkError(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	chat := NewLLMChat(Config{LLM: LLMConfig{
		Providers: map[string]LLMProvider{"p": {BaseURL: url}},
		Models:    map[string]LLMModel{"m": {Provider: "p", Model: "x"}},
	}})
	err := chat.Handle(t.Context(), llmStep(), chatArgs("m", "hi"))
	if got := jobs.Classify(err); got != jobs.ClassRetryable {
		t.Fatalf("Classify = %q, want retryable (err: %v)", got, err)
	}
}

func TestLLMChatArgsValidate(t *testing.T) {
	t.Parallel()
	f := func(v float64) *float64 { return &v }
	tests := []struct {
		name string
		args LLMChatArgs
		want string // substring of the error; "" for valid
	}{
		{name: "valid", args: chatArgs("m", "hi")},
		{name: "valid with everything", args: LLMChatArgs{Model: "m", Messages: []LLMMessage{{Role: "tool", Content: ""}},
			Temperature: f(0), MaxTokens: 1, Timeout: "1m", ResponseSchema: json.RawMessage(`{"type":"object"}`)}},
		{name: "no model", args: LLMChatArgs{Messages: []LLMMessage{{Role: "user"}}}, want: "model: is required"},
		{name: "no messages", args: LLMChatArgs{Model: "m"}, want: "messages: at least one"},
		{name: "bad role", args: LLMChatArgs{Model: "m", Messages: []LLMMessage{{Role: "user"}, {Role: "bot"}}},
			want: `messages[1].role: "bot" is not one of system, user, assistant, tool`},
		{name: "temperature too high", args: LLMChatArgs{Model: "m", Messages: []LLMMessage{{Role: "user"}}, Temperature: f(2.5)},
			want: "temperature: must be between 0 and 2, got 2.5"},
		{name: "temperature NaN", args: LLMChatArgs{Model: "m", Messages: []LLMMessage{{Role: "user"}}, Temperature: f(math.NaN())},
			want: "temperature"},
		{name: "negative max_tokens", args: LLMChatArgs{Model: "m", Messages: []LLMMessage{{Role: "user"}}, MaxTokens: -1},
			want: "max_tokens"},
		{name: "bad timeout", args: LLMChatArgs{Model: "m", Messages: []LLMMessage{{Role: "user"}}, Timeout: "soon"},
			want: `timeout: "soon" is not a duration`},
		{name: "zero timeout", args: LLMChatArgs{Model: "m", Messages: []LLMMessage{{Role: "user"}}, Timeout: "0s"},
			want: "timeout: must be positive"},
		{name: "schema not an object", args: LLMChatArgs{Model: "m", Messages: []LLMMessage{{Role: "user"}}, ResponseSchema: json.RawMessage(`[1]`)},
			want: "response_schema: must be a JSON object"},
		{name: "schema not JSON", args: LLMChatArgs{Model: "m", Messages: []LLMMessage{{Role: "user"}}, ResponseSchema: json.RawMessage(`{`)},
			want: "response_schema: is not JSON"},
		{name: "schema invalid", args: LLMChatArgs{Model: "m", Messages: []LLMMessage{{Role: "user"}}, ResponseSchema: json.RawMessage(`{"type":"thing"}`)},
			want: "response_schema:"},
		{name: "schema refers to a file", args: LLMChatArgs{Model: "m", Messages: []LLMMessage{{Role: "user"}},
			ResponseSchema: json.RawMessage(`{"$ref":"file:///etc/passwd"}`)}, want: "response_schema:"},
		{name: "schema refers to the network", args: LLMChatArgs{Model: "m", Messages: []LLMMessage{{Role: "user"}},
			ResponseSchema: json.RawMessage(`{"$ref":"https://example.com/s.json"}`)}, want: "response_schema:"},
		{name: "schema refers to itself", args: LLMChatArgs{Model: "m", Messages: []LLMMessage{{Role: "user"}},
			ResponseSchema: json.RawMessage(`{"$defs":{"a":{"type":"string"}},"type":"object","properties":{"x":{"$ref":"#/$defs/a"}}}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.args.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "root:") {
				t.Errorf("Validate = %q leaks a file's content", err)
			}
		})
	}
}

func TestLLMChatRegistered(t *testing.T) {
	t.Parallel()
	reg := queue.NewRegistry()
	if err := Register(reg, Config{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		payload string
		want    []string // substrings of the error; nil for valid
	}{
		{name: "valid", payload: `{"model":"small","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"max_tokens":10,` +
			`"response_schema":{"type":"object"},"timeout":"1m"}`},
		{name: "no model", payload: `{"messages":[{"role":"user","content":"hi"}]}`, want: []string{"model"}},
		{name: "empty messages", payload: `{"model":"m","messages":[]}`, want: []string{"/messages"}},
		{name: "bad role", payload: `{"model":"m","messages":[{"role":"bot","content":"x"}]}`, want: []string{"/messages/0/role"}},
		{name: "no content", payload: `{"model":"m","messages":[{"role":"user"}]}`, want: []string{"/messages/0", "content"}},
		{name: "temperature too high", payload: `{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}`,
			want: []string{"/temperature"}},
		{name: "max_tokens zero", payload: `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}`,
			want: []string{"/max_tokens"}},
		{name: "schema not an object", payload: `{"model":"m","messages":[{"role":"user","content":"x"}],"response_schema":"s"}`,
			want: []string{"/response_schema"}},
		{name: "schema does not compile", payload: `{"model":"m","messages":[{"role":"user","content":"x"}],"response_schema":{"minLength":-1}}`,
			want: []string{"response_schema:"}},
		{name: "unknown field", payload: `{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":1}`, want: []string{"top_p"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args, err := reg.Validate(jobs.KindLLMChat, []byte(tt.payload))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, ok := args.(LLMChatArgs); !ok {
					t.Fatalf("Validate returned %T, want LLMChatArgs", args)
				}
				return
			}
			var ve *queue.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want a *queue.ValidationError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q, want it to contain %q", err, w)
				}
			}
		})
	}

	// The registered handler runs with the worker's configuration: with
	// none, the model is unknown and the step fails permanently.
	err := reg.Handler().ProcessStep(t.Context(), &jobs.Step{Kind: jobs.KindLLMChat,
		Payload: []byte(`{"model":"small","messages":[{"role":"user","content":"hi"}]}`)})
	if got := jobs.Classify(err); got != jobs.ClassPermanent || !strings.Contains(err.Error(), "configured: none") {
		t.Errorf("llm.chat without models: Classify = %q, err %v; want permanent naming none configured", got, err)
	}
	if err := Register(queue.NewRegistry(), Config{LLM: LLMConfig{Models: map[string]LLMModel{"a": {Provider: "x", Model: "m"}}}}); err == nil ||
		!strings.Contains(err.Error(), `llm.models.a.provider: no provider "x" (configured: none)`) {
		t.Errorf("Register with a bad LLM config = %v, want the key named", err)
	}
}

func TestLLMConfigValidate(t *testing.T) {
	t.Parallel()
	openai := map[string]LLMProvider{"openai": {BaseURL: "https://api.openai.com/v1", APIKeyEnv: "OPENAI_API_KEY"}}
	tests := []struct {
		name string
		cfg  LLMConfig
		want string // substring of the error; "" for valid
	}{
		{name: "zero", cfg: LLMConfig{}},
		{name: "valid", cfg: LLMConfig{Providers: openai, Models: map[string]LLMModel{
			"small": {Provider: "openai", Model: "gpt-4o-mini", InputPerMTok: 0.15, OutputPerMTok: 0.6}}}},
		{name: "unknown provider", cfg: LLMConfig{Providers: openai, Models: map[string]LLMModel{"small": {Provider: "x", Model: "m"}}},
			want: `llm.models.small.provider: no provider "x" (configured: openai)`},
		{name: "no provider", cfg: LLMConfig{Providers: openai, Models: map[string]LLMModel{"small": {Model: "m"}}},
			want: `llm.models.small.provider: is required`},
		{name: "no model id", cfg: LLMConfig{Providers: openai, Models: map[string]LLMModel{"small": {Provider: "openai"}}},
			want: `llm.models.small.model: is required`},
		{name: "negative price", cfg: LLMConfig{Providers: openai, Models: map[string]LLMModel{"small": {Provider: "openai", Model: "m", OutputPerMTok: -1}}},
			want: `llm.models.small.output_per_mtok: must be a finite price >= 0, got -1`},
		{name: "NaN price", cfg: LLMConfig{Providers: openai, Models: map[string]LLMModel{"small": {Provider: "openai", Model: "m", InputPerMTok: math.NaN()}}},
			want: `llm.models.small.input_per_mtok`},
		{name: "no base url", cfg: LLMConfig{Providers: map[string]LLMProvider{"p": {}}}, want: "llm.providers.p.base_url: is required"},
		{name: "relative base url", cfg: LLMConfig{Providers: map[string]LLMProvider{"p": {BaseURL: "api.openai.com/v1"}}},
			want: `llm.providers.p.base_url: "api.openai.com/v1" is not an absolute http or https URL`},
		{name: "base url with a query", cfg: LLMConfig{Providers: map[string]LLMProvider{"p": {BaseURL: "https://h/v1?key=s3cretv4lue"}}},
			want: `llm.providers.p.base_url: "https://h/v1?key=****" must not have a query`},
		{name: "key instead of a variable name", cfg: LLMConfig{Providers: map[string]LLMProvider{"p": {BaseURL: "https://h", APIKeyEnv: "sk-s3cretv4lue"}}},
			want: "llm.providers.p.api_key_env: must name an environment variable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cretv4lue") {
				t.Errorf("Validate leaks a secret: %q", err)
			}
		})
	}
}

// ExampleLLMChat runs an llm.chat step against the fake model server: the
// configuration maps the name steps use ("small") to a provider and its
// prices, the step reports its usage and records its output.
func ExampleLLMChat() {
	fake, err := fakellm.Start("", fakellm.Options{})
	if err != nil {
		panic(err)
	}
	defer fake.Close()

	chat := NewLLMChat(Config{LLM: LLMConfig{
		Providers: map[string]LLMProvider{"local": {BaseURL: fake.URL}}, // APIKeyEnv: "OPENAI_API_KEY" for a real one
		Models: map[string]LLMModel{
			"small": {Provider: "local", Model: "gpt-4o-mini", InputPerMTok: 0.15, OutputPerMTok: 0.60},
		},
	}})
	s := &jobs.Step{TaskID: "t-1", Kind: jobs.KindLLMChat, Attempt: 1, MaxAttempts: 3}
	err = chat.Handle(context.Background(), s, LLMChatArgs{
		Model:          "small",
		Messages:       []LLMMessage{{Role: "user", Content: "name a colour"}},
		ResponseSchema: json.RawMessage(`{"type":"object","required":["colour"],"properties":{"colour":{"type":"string"}},"additionalProperties":false}`),
	})
	fmt.Println("error:", err)
	fmt.Printf("usage: %+v\n", s.Usage())
	fmt.Println("output:", string(s.Output()))
	// Output:
	// error: <nil>
	// usage: {Model:small TokensIn:4 TokensOut:5 CostUSD:3.6e-06}
	// output: {"content":"{\"colour\":\"reply to: name a colour\"}","json":{"colour":"reply to: name a colour"},"model":"gpt-4o-mini","usage":{"tokens_in":4,"tokens_out":5,"cost_usd":0.0000036},"finish_reason":"stop"}
}

// errReader yields its data, then fails.
type errReader struct{ data io.Reader }

func (r errReader) Read(p []byte) (int, error) {
	n, err := r.data.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset")
	}
	return n, err
}

func TestLLMChatBodyCutShort(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		code      int
		wantClass jobs.Class
	}{{code: 400, wantClass: jobs.ClassPermanent}, {code: 429, wantClass: jobs.ClassRateLimited}, {code: 200, wantClass: jobs.ClassRetryable}} {
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: tt.code, Header: http.Header{},
				Body: io.NopCloser(errReader{strings.NewReader(`{"error":`)}), Request: r}, nil
		})}
		chat := NewLLMChat(Config{Client: client, LLM: LLMConfig{
			Providers: map[string]LLMProvider{"p": {BaseURL: "https://llm.example/v1"}},
			Models:    map[string]LLMModel{"m": {Provider: "p", Model: "x"}},
		}})
		err := chat.Handle(t.Context(), llmStep(), chatArgs("m", "hi"))
		if got := jobs.Classify(err); got != tt.wantClass {
			t.Errorf("%d with its body cut: Classify = %q, want %q (err: %v)", tt.code, got, tt.wantClass, err)
		}
	}
}

// TestLLMChatKeyQuotedBackIsMasked: a provider that quotes the API key in
// its error ("Incorrect API key provided: sk-...") does not put it into the
// error, which logs, dead letters and run show print.
func TestLLMChatKeyQuotedBackIsMasked(t *testing.T) {
	t.Parallel()
	for _, code := range []int{http.StatusUnauthorized, http.StatusOK} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(code)
				key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
				_, _ = io.WriteString(w, `{"error":{"message":"Incorrect API key provided: `+key+`"}}`)
			}))
			t.Cleanup(srv.Close)
			chat := NewLLMChat(Config{LLM: LLMConfig{
				Providers: map[string]LLMProvider{"p": {BaseURL: srv.URL + "/v1", APIKeyEnv: "K"}},
				Models:    map[string]LLMModel{"m": {Provider: "p", Model: "x"}},
			}})
			chat.getenv = fakeEnv(map[string]string{"K": testAPIKey})
			err := chat.Handle(t.Context(), llmStep(), chatArgs("m", "hi"))
			if err == nil || strings.Contains(err.Error(), testAPIKey) {
				t.Fatalf("err = %v: the key must not be in it", err)
			}
			if !strings.Contains(err.Error(), "provided: "+redact.Mask) && code != http.StatusOK {
				t.Errorf("err = %v, want the quoted key masked", err)
			}
		})
	}
}
