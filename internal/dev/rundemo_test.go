package dev

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/runs"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// chat posts one chat request to the fake and returns status, Retry-After
// and body.
func chat(t *testing.T, url, key string) (int, string, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/chat/completions",
		strings.NewReader(`{"model":"fake-small","messages":[{"role":"user","content":"hello there"}]}`))
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), body
}

func TestDevFakeLLMRateLimitsOnlyTheFirstRequest(t *testing.T) {
	t.Parallel()
	f, err := StartFakeLLM()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if code, ra, _ := chat(t, f.URL(), "a"); code != http.StatusTooManyRequests || ra != "1" {
		t.Fatalf("first request: %d Retry-After %q, want 429 and 1", code, ra)
	}
	// The same key and other keys are served from now on: one 429 in all.
	for _, key := range []string{"a", "b", "a"} {
		code, _, body := chat(t, f.URL(), key)
		var reply struct {
			Usage struct {
				Total int `json:"total_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(body, &reply); code != http.StatusOK || err != nil || reply.Usage.Total == 0 {
			t.Fatalf("key %s: %d %s", key, code, body)
		}
	}
	if f.RateLimited() != 1 || len(f.Requests()) != 3 {
		t.Fatalf("rate limited %d, served %d; want 1 and 3", f.RateLimited(), len(f.Requests()))
	}
}

func TestDevRunDemoConfigIsValid(t *testing.T) {
	t.Parallel()
	f, err := StartFakeLLM()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	user := config.LLM{Models: map[string]config.LLMModel{"mine": {Provider: "p", Model: "m"}},
		Providers: map[string]config.LLMProvider{"p": {BaseURL: "https://example.com/v1"}}}
	l := f.AddTo(user)
	if err := l.Handlers().Validate(); err != nil {
		t.Fatal(err)
	}
	if len(user.Models) != 1 || len(user.Providers) != 1 {
		t.Fatal("AddTo changed the maps it was given")
	}
	if _, ok := l.Models["mine"]; !ok || l.Models[LargeModel].InputPerMTok == 0 || l.Providers[LLMProvider].BaseURL != f.URL() {
		t.Fatalf("llm = %+v", l)
	}
	ts := NewToolServer()
	defer ts.Close()
	w := ArticleWorkflow("agentq-dev", ts)
	known := func(k string) bool { return k == jobs.KindLLMChat || k == jobs.KindHTTPCall }
	if err := w.Validate(known); err != nil {
		t.Fatal(err)
	}
	if w.Queue != "agentq-dev" || len(w.Steps) != 3 {
		t.Fatalf("workflow = %+v", w)
	}
}

// TestDevRunDemo runs the demo's workflow on a real Redis with a worker:
// research gets the one 429 and takes 2 attempts, and publish POSTs the
// draft's reply.
func TestDevRunDemo(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	f, err := StartFakeLLM()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ts := NewToolServer()
	defer ts.Close()
	cfg := config.Default()
	cfg.Redis.URL = srv.URL
	cfg.Log.Level = "error"
	cfg.LLM = f.AddTo(cfg.LLM)
	q := "agentq-dev"
	cfg.Worker.Queues = map[string]int{q: 1}
	rt, err := agentq.New(cfg, agentq.Options{LogTo: io.Discard,
		Workflows: map[string]runs.Workflow{RunWorkflow: ArticleWorkflow(q, ts)}})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx := context.Background()
	w, err := rt.NewWorker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	rn, err := rt.Runs()
	if err != nil {
		t.Fatal(err)
	}
	r, err := RunDemo(ctx, rn, ArticleWorkflow(q, ts), "queues", 60*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != runs.StatusSucceeded {
		t.Fatalf("run %s: %s", r.Status, r.Reason)
	}
	attempts := map[string]int{}
	for _, s := range r.Steps {
		attempts[s.Name] = s.Attempts
		if s.Kind == jobs.KindLLMChat && (s.TokensIn == 0 || s.TokensOut == 0 || s.CostUSD <= 0) {
			t.Errorf("step %s spent nothing: %+v", s.Name, s.Totals)
		}
	}
	if attempts["research"] != 2 || attempts["draft"] != 1 || attempts["publish"] != 1 {
		t.Errorf("attempts = %v, want research 2, draft 1, publish 1", attempts)
	}
	var draft struct{ Content string }
	for _, s := range r.Steps {
		if s.Name == "draft" {
			_ = json.Unmarshal(s.Output, &draft)
		}
	}
	if got := ts.Published(r.ID); draft.Content == "" || got != draft.Content {
		t.Errorf("published %q, draft %q", got, draft.Content)
	}
	if !bytes.Contains([]byte(draft.Content), []byte("Draft an article on queues")) {
		t.Errorf("draft %q does not come from the run's input", draft.Content)
	}
	if f.RateLimited() != 1 {
		t.Errorf("429s = %d, want 1", f.RateLimited())
	}
}
