package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentq/agentq/internal/binarytest"
)

// chatServer is a small OpenAI-compatible chat completions endpoint for
// the run tests: every reply costs 100 prompt and 50 completion tokens;
// model "fail-400" is refused, "once-429" answers 429 once per
// Idempotency-Key, "bad-json" answers text where JSON was asked for.
type chatServer struct {
	mu    sync.Mutex
	calls map[string]int // Idempotency-Key -> requests
	seen  []string       // request bodies
}

func newChatServer(t *testing.T) (*chatServer, *httptest.Server) {
	cs := &chatServer{calls: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			Model    string `json:"model"`
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
			ResponseFormat json.RawMessage `json:"response_format"`
		}
		_ = json.Unmarshal(body, &req)
		key := r.Header.Get("Idempotency-Key")
		cs.mu.Lock()
		cs.calls[key]++
		n := cs.calls[key]
		cs.seen = append(cs.seen, string(body))
		cs.mu.Unlock()
		switch {
		case r.Header.Get("Authorization") != "Bearer test-key":
			http.Error(w, `{"error":"bad key"}`, http.StatusUnauthorized)
			return
		case req.Model == "fail-400":
			http.Error(w, `{"error":{"message":"model overloaded with nonsense"}}`, http.StatusBadRequest)
			return
		case req.Model == "once-429" && n == 1:
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":"slow down"}`, http.StatusTooManyRequests)
			return
		}
		last := ""
		if len(req.Messages) > 0 {
			last = req.Messages[len(req.Messages)-1].Content
		}
		content := "reply to: " + last
		if len(req.ResponseFormat) > 0 {
			content = `{"title":"a title"}`
			if req.Model == "bad-json" {
				content = "no JSON here"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"model": req.Model,
			"choices": []any{map[string]any{
				"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": content},
			}},
			"usage": map[string]any{"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
		})
	}))
	t.Cleanup(srv.Close)
	return cs, srv
}

// runEnv is an env with a config file holding the workflows in wf (YAML
// under "workflows:") and llm models on the chat server at chatURL.
func runEnv(t *testing.T, chatURL, wf string) *env {
	t.Helper()
	e := newEnv(t)
	cfg := fmt.Sprintf(`llm:
  providers:
    fake: {base_url: "%s/v1", api_key_env: FAKE_LLM_KEY}
  models:
    small: {provider: fake, model: small-1, input_per_mtok: 1.0, output_per_mtok: 2.0}
    large: {provider: fake, model: large-1, input_per_mtok: 10.0, output_per_mtok: 20.0}
    broken: {provider: fake, model: fail-400, input_per_mtok: 1.0, output_per_mtok: 1.0}
    limited: {provider: fake, model: once-429, input_per_mtok: 1.0, output_per_mtok: 2.0}
    sloppy: {provider: fake, model: bad-json, input_per_mtok: 1.0, output_per_mtok: 2.0}
breakers:
  failures: 1000
  min_calls: 1000
workflows:
%s`, chatURL, wf)
	if err := os.WriteFile(filepath.Join(e.dir, "agentq.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.vars = append(e.vars, "FAKE_LLM_KEY=test-key")
	return e
}

// runView is what the tests read of `agentq run show --json`.
type runView struct {
	ID        string  `json:"run_id"`
	Status    string  `json:"status"`
	Reason    string  `json:"reason"`
	TokensIn  int64   `json:"tokens_in"`
	TokensOut int64   `json:"tokens_out"`
	CostUSD   float64 `json:"cost_usd"`
	Steps     []struct {
		Name       string          `json:"name"`
		Status     string          `json:"status"`
		Attempts   int             `json:"attempts"`
		TokensIn   int64           `json:"tokens_in"`
		CostUSD    float64         `json:"cost_usd"`
		Output     json.RawMessage `json:"output"`
		LastError  string          `json:"last_error"`
		LastClass  string          `json:"last_class"`
		DeadLetter string          `json:"dead_letter"`
		TaskID     string          `json:"task_id"`
	} `json:"steps"`
	History []struct {
		Kind string `json:"kind"`
		Step string `json:"step"`
	} `json:"history"`
}

func (v runView) step(t *testing.T, name string) int {
	t.Helper()
	for i, s := range v.Steps {
		if s.Name == name {
			return i
		}
	}
	t.Fatalf("run %s has no step %q: %+v", v.ID, name, v.Steps)
	return -1
}

func (e *env) startRun(workflow string, args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run("", append([]string{"run", "start", workflow, "--json"}, args...)...)
	if code != 0 {
		e.t.Fatalf("run start %s: exit %d: %s", workflow, code, errOut)
	}
	var st struct {
		RunID     string `json:"run_id"`
		Duplicate bool   `json:"duplicate"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.RunID == "" {
		e.t.Fatalf("run start --json printed %q (%v)", out, err)
	}
	return st.RunID
}

func (e *env) showRun(id string) runView {
	e.t.Helper()
	out, errOut, code := e.run("", "run", "show", id, "--json")
	if code != 0 {
		e.t.Fatalf("run show %s: exit %d: %s", id, code, errOut)
	}
	var v runView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		e.t.Fatalf("run show --json printed %q: %v", out, err)
	}
	return v
}

// waitRun waits until the run's status is want and returns it.
func (e *env) waitRun(id, want string, within time.Duration) runView {
	e.t.Helper()
	var v runView
	binarytest.WaitFor(e.t, within, "run "+id+" to be "+want, func() bool {
		v = e.showRun(id)
		return v.Status == want
	})
	return v
}

// TestEndToEndRunThreeStepsWithFlakyStep: a model step, a flaky tool step
// fed by the model's output, and a last tool step; the flaky step is
// retried; outputs flow through templates; tokens and cost add up; the
// tool sees the Idempotency-Key derived from run and step.
func TestEndToEndRunThreeStepsWithFlakyStep(t *testing.T) {
	t.Parallel()
	_, chat := newChatServer(t)
	tool, ts := newFlakyTool(t)
	e := runEnv(t, chat.URL, fmt.Sprintf(`
  article:
    steps:
      - name: research
        kind: llm.chat
        payload: {model: limited, messages: [{role: user, content: "Research {{ .input.topic }}"}]}
      - name: save
        kind: http.call
        payload: {method: POST, url: "%s/flaky?fail=2", body: {text: "{{ .steps.research.output.content }}"}}
      - name: publish
        kind: http.call
        payload: {method: POST, url: "%s/publish", body: {status: "{{ .steps.save.output.status }}", run: "{{ .run_id }}"}}
`, ts.URL, ts.URL))
	e.startWorker("--concurrency", "4")
	id := e.startRun("article", "--input", `{"topic":"queues"}`)
	v := e.waitRun(id, "succeeded", 60*time.Second)

	if got := tool.count("/flaky"); got != 3 {
		t.Errorf("flaky step called the tool %d times, want 3 (two 503s, then success)", got)
	}
	if got := tool.count("/publish"); got != 1 {
		t.Errorf("publish called %d times, want 1", got)
	}
	if got, want := tool.key("/flaky"), id+"/save"; got != want {
		t.Errorf("Idempotency-Key of step save = %q, want %q", got, want)
	}
	save := v.Steps[v.step(t, "save")]
	if save.Status != "succeeded" || save.Attempts != 3 {
		t.Errorf("step save: %+v, want succeeded after 3 attempts", save)
	}
	research := v.Steps[v.step(t, "research")]
	if research.Attempts != 2 || !strings.Contains(string(research.Output), "reply to: Research queues") {
		t.Errorf("step research: %+v, want 2 attempts (one 429) and the model's reply as output", research)
	}
	// One successful model call (the 429 carried no usage): 100 in, 50
	// out, at $1 and $2 per million.
	if v.TokensIn != 100 || v.TokensOut != 50 || v.CostUSD < 0.000199 || v.CostUSD > 0.000201 {
		t.Errorf("run totals: %d in, %d out, $%v; want 100, 50, $0.0002", v.TokensIn, v.TokensOut, v.CostUSD)
	}
}

// TestEndToEndRunFallbackAndFailureAndReplay: a dead step with a fallback
// goes on with the fallback's output; a dead step without one fails the
// run, and replaying its dead letter once the tool recovers finishes it.
func TestEndToEndRunFallbackAndFailureAndReplay(t *testing.T) {
	t.Parallel()
	_, chat := newChatServer(t)
	var healthy sync.Map // set "up" to make /toggle answer 200
	var got sync.Map
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(r.URL.Path, string(b))
		if _, up := healthy.Load("up"); !up && r.URL.Path == "/toggle" {
			http.Error(w, "not found (yet)", http.StatusNotFound)
			return
		}
		fmt.Fprintln(w, `{"ok":true}`)
	}))
	t.Cleanup(ts.Close)
	e := runEnv(t, chat.URL, fmt.Sprintf(`
  fallback:
    steps:
      - name: draft
        kind: llm.chat
        fallback: draft_small
        payload: {model: broken, messages: [{role: user, content: "Draft {{ .input.topic }}"}]}
      - name: draft_small
        kind: llm.chat
        payload: {model: small, messages: [{role: user, content: "Short draft {{ .input.topic }}"}]}
      - name: publish
        kind: http.call
        payload: {method: POST, url: "%s/publish", body: {text: "{{ .steps.draft.output.content }}"}}
  failing:
    steps:
      - name: first
        kind: http.call
        payload: {method: POST, url: "%s/ok"}
      - name: flaky_publish
        kind: http.call
        payload: {method: POST, url: "%s/toggle"}
      - name: last
        kind: http.call
        payload: {method: POST, url: "%s/last"}
`, ts.URL, ts.URL, ts.URL, ts.URL))
	e.startWorker("--concurrency", "4")

	fb := e.startRun("fallback", "--input", `{"topic":"birds"}`)
	v := e.waitRun(fb, "succeeded", 60*time.Second)
	if s := v.Steps[v.step(t, "draft")]; s.Status != "replaced" || s.DeadLetter == "" || s.LastClass != "permanent" {
		t.Errorf("step draft: %+v, want replaced, dead-lettered, class permanent", s)
	}
	if s := v.Steps[v.step(t, "draft_small")]; s.Status != "succeeded" {
		t.Errorf("step draft_small: %+v, want succeeded", s)
	}
	if body, _ := got.Load("/publish"); !strings.Contains(fmt.Sprint(body), "reply to: Short draft birds") {
		t.Errorf("publish got %q, want the fallback's output in place of draft's", body)
	}

	fl := e.startRun("failing")
	v = e.waitRun(fl, "failed", 60*time.Second)
	s := v.Steps[v.step(t, "flaky_publish")]
	if s.Status != "dead" || s.DeadLetter == "" || !strings.Contains(s.LastError, "404") {
		t.Fatalf("step flaky_publish: %+v, want dead with a dead letter and the 404", s)
	}
	if _, seen := got.Load("/last"); seen {
		t.Fatalf("the step after a dead one ran")
	}
	healthy.Store("up", true)
	if _, errOut, code := e.run("", "dlq", "replay", s.DeadLetter); code != 0 {
		t.Fatalf("dlq replay %s: exit %d: %s", s.DeadLetter, code, errOut)
	}
	v = e.waitRun(fl, "succeeded", 60*time.Second)
	if _, seen := got.Load("/last"); !seen {
		t.Errorf("the replay did not continue the run to its last step")
	}
	replayed := false
	for _, h := range v.History {
		replayed = replayed || h.Kind == "replayed"
	}
	if !replayed {
		t.Errorf("run history %+v has no replay", v.History)
	}
}

// TestEndToEndRunCapsAndCancel: a run over its cost cap stops with the due
// step dead-lettered as cap_exceeded; a cancelled run starts no further
// step; a keyed start twice is one run.
func TestEndToEndRunCapsAndCancel(t *testing.T) {
	t.Parallel()
	_, chat := newChatServer(t)
	var hold = make(chan struct{})
	var calls sync.Map
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Store(r.URL.Path, true)
		if r.URL.Path == "/hold" {
			select {
			case <-hold:
			case <-r.Context().Done():
			}
		}
		fmt.Fprintln(w, `{"ok":true}`)
	}))
	t.Cleanup(func() { close(hold); ts.Close() })
	e := runEnv(t, chat.URL, fmt.Sprintf(`
  pricey:
    caps: {max_cost_usd: 0.001}
    steps:
      - name: think
        kind: llm.chat
        payload: {model: large, messages: [{role: user, content: "Think hard"}]}
      - name: publish
        kind: http.call
        payload: {method: POST, url: "%s/capped-publish"}
  slow:
    steps:
      - name: wait
        kind: http.call
        payload: {method: POST, url: "%s/hold", timeout: 30s}
      - name: after
        kind: http.call
        payload: {method: POST, url: "%s/after-cancel"}
`, ts.URL, ts.URL, ts.URL))
	e.startWorker("--concurrency", "4")

	// 100 in at $10/M + 50 out at $20/M = $0.002 > $0.001.
	id := e.startRun("pricey")
	v := e.waitRun(id, "capped", 60*time.Second)
	if !strings.Contains(v.Reason, "max_cost_usd") {
		t.Errorf("capped run's reason %q does not name the cap", v.Reason)
	}
	pub := v.Steps[v.step(t, "publish")]
	binarytest.WaitFor(t, 20*time.Second, "the due step's dead letter", func() bool {
		pub = e.showRun(id).Steps[v.step(t, "publish")]
		return pub.DeadLetter != ""
	})
	if pub.LastClass != "cap_exceeded" {
		t.Errorf("due step: %+v, want class cap_exceeded", pub)
	}
	if _, ran := calls.Load("/capped-publish"); ran {
		t.Errorf("the step after the cap ran")
	}
	out, _, code := e.run("", "dlq", "show", pub.DeadLetter, "--json")
	if code != 0 || !strings.Contains(out, "cap_exceeded") || !strings.Contains(out, id) {
		t.Errorf("dlq show %s: exit %d, %s; want class cap_exceeded and the run id", pub.DeadLetter, code, out)
	}

	// Cancel while the first step holds: the second never starts.
	first := e.startRun("slow", "--key", "slow-1")
	if again := e.startRun("slow", "--key", "slow-1"); again != first {
		t.Fatalf("keyed start twice gave %s and %s", first, again)
	}
	binarytest.WaitFor(t, 20*time.Second, "the held step to start", func() bool { _, ok := calls.Load("/hold"); return ok })
	if _, errOut, code := e.run("", "run", "cancel", first, "--reason", "changed my mind"); code != 0 {
		t.Fatalf("run cancel: exit %d: %s", code, errOut)
	}
	select { // the running step finishes
	case hold <- struct{}{}:
	case <-time.After(20 * time.Second):
		t.Fatal("the held step was not waiting at the tool")
	}
	v = e.waitRun(first, "cancelled", 20*time.Second)
	if !strings.Contains(v.Reason, "changed my mind") {
		t.Errorf("cancel reason %q", v.Reason)
	}
	time.Sleep(2 * time.Second) // give a wrongly enqueued step time to run
	if _, ran := calls.Load("/after-cancel"); ran {
		t.Errorf("a step started after the run was cancelled")
	}
	out, errOut, code := e.run("", "run", "list", "--status", "cancelled", "--json")
	if code != 0 || !strings.Contains(out, first) || strings.Contains(out, id) {
		t.Errorf("run list --status cancelled: exit %d %s %s", code, out, errOut)
	}
}

// TestEndToEndRunBadStepsGiveClearErrors: a template that fails at run
// time, a rendered payload that fails the kind's schema and a model reply
// that fails response_schema each name the step and the problem; a
// config error names file and line.
func TestEndToEndRunBadStepsGiveClearErrors(t *testing.T) {
	t.Parallel()
	_, chat := newChatServer(t)
	e := runEnv(t, chat.URL, `
  missing_input:
    steps:
      - name: ask
        kind: llm.chat
        payload: {model: small, messages: [{role: user, content: "About {{ .input.topic.deep }}"}]}
  bad_method:
    steps:
      - name: call
        kind: http.call
        payload: {method: "{{ .input.method }}", url: "http://127.0.0.1:1/x"}
  bad_reply:
    steps:
      - name: extract
        kind: llm.chat
        max_attempts: 2
        payload: {model: sloppy, messages: [{role: user, content: "Extract"}], response_schema: {type: object, required: [title], properties: {title: {type: string}}}}
`)
	e.startWorker("--concurrency", "4")

	v := e.waitRun(e.startRun("missing_input", "--input", `{"other":1}`), "failed", 60*time.Second)
	if s := v.Steps[0]; !strings.Contains(s.LastError, `step "ask"`) || !strings.Contains(s.LastError, "messages[0].content") || s.LastClass != "permanent" {
		t.Errorf("template error: %+v; want the step, the field and class permanent", s)
	}
	v = e.waitRun(e.startRun("bad_method", "--input", `{"method":"FETCH"}`), "failed", 60*time.Second)
	if s := v.Steps[0]; !strings.Contains(s.LastError, `step "call"`) || !strings.Contains(s.LastError, "method") || s.LastClass != "permanent" {
		t.Errorf("schema error: %+v; want the step, the field and class permanent", s)
	}
	v = e.waitRun(e.startRun("bad_reply"), "failed", 60*time.Second)
	if s := v.Steps[0]; s.LastClass != "schema" || s.Attempts != 2 || s.TokensIn != 200 {
		t.Errorf("response_schema violation: %+v; want class schema after 2 attempts with both attempts' 200 tokens in counted", s)
	}

	// A fallback that names no step is refused at load, naming file and line.
	bad := filepath.Join(e.dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("workflows:\n  w:\n    steps:\n      - name: a\n        kind: noop\n        fallback: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := e.run("", "--config", bad, "run", "start", "w")
	if code == 0 || !strings.Contains(errOut, "bad.yaml, line 6") || !strings.Contains(errOut, "nope") {
		t.Errorf("bad fallback: exit %d, %q; want an error naming bad.yaml, line 6 and the missing step", code, errOut)
	}
}

// TestEndToEndRunWorkerKilledBetweenSteps: a worker killed (kill -9) while
// a run's second step is in flight loses nothing: after a new worker takes
// over, the run succeeds, the first step never runs again and the second
// reaches the tool again only with the same Idempotency-Key.
func TestEndToEndRunWorkerKilledBetweenSteps(t *testing.T) {
	t.Parallel()
	_, chat := newChatServer(t)
	tool, ts := newHangTool(t)
	var mu sync.Mutex
	count := map[string]int{}
	keys := map[string]map[string]bool{}
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		count[r.URL.Path]++
		if keys[r.URL.Path] == nil {
			keys[r.URL.Path] = map[string]bool{}
		}
		keys[r.URL.Path][r.Header.Get("Idempotency-Key")] = true
		mu.Unlock()
		fmt.Fprintln(w, `{"ok":true}`)
	}))
	t.Cleanup(ok.Close)
	e := runEnv(t, chat.URL, fmt.Sprintf(`
  killme:
    steps:
      - name: one
        kind: http.call
        payload: {method: POST, url: "%s/one"}
      - name: two
        kind: http.call
        payload: {method: POST, url: "%s/two"}
      - name: three
        kind: http.call
        payload: {method: POST, url: "%s/three"}
`, ok.URL, ts.URL, ok.URL))
	vars := append(e.vars, "AGENTQ_WORKER_RECOVER_INTERVAL=2s")
	e.vars = vars
	a := startProc(t, e.bin, e.dir, vars, "worker")
	id := e.startRun("killme")
	binarytest.WaitFor(t, 30*time.Second, "step two in flight", func() bool { return tool.keysWith(1) == 1 })
	a.Kill(t)
	tool.releaseAll()
	binarytest.Start(t, e.bin, []string{"worker"}, binarytest.Options{Dir: e.dir, Env: vars})
	v := e.waitRun(id, "succeeded", 180*time.Second)
	mu.Lock()
	defer mu.Unlock()
	if count["/one"] != 1 || count["/three"] != 1 {
		t.Errorf("steps one and three reached the tool %d and %d times, want once each", count["/one"], count["/three"])
	}
	for k := range tool.runs() {
		if k != id+"/two" {
			t.Errorf("step two reached the tool with Idempotency-Key %q, want %q", k, id+"/two")
		}
	}
	if s := v.Steps[v.step(t, "two")]; s.Status != "succeeded" {
		t.Errorf("step two: %+v", s)
	}
}

// TestEndToEndRunScheduleOncePerTick: two workers with a scheduled
// workflow start each tick's run once: a schedule seen for the first time
// starts its latest tick (at most a minute old) at once, and every run's
// key names its tick, never twice.
func TestEndToEndRunScheduleOncePerTick(t *testing.T) {
	t.Parallel()
	_, chat := newChatServer(t)
	e := runEnv(t, chat.URL, `
  ticking:
    schedule: {cron: "@every 1m", input: {topic: ticks}}
    steps:
      - name: only
        kind: noop
`)
	e.startWorker()
	e.startWorker()
	var ids []string
	binarytest.WaitFor(t, 30*time.Second, "a scheduled run", func() bool {
		out, _, code := e.run("", "run", "list", "--workflow", "ticking", "--json")
		var l struct {
			Runs []struct {
				ID string `json:"run_id"`
			} `json:"runs"`
			NextTicks map[string]string `json:"next_ticks"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &l) != nil {
			return false
		}
		ids = ids[:0]
		for _, r := range l.Runs {
			ids = append(ids, r.ID)
		}
		return len(ids) > 0 && l.NextTicks["ticking"] != ""
	})
	time.Sleep(3 * time.Second) // both workers have looked by now
	out, _, _ := e.run("", "run", "list", "--workflow", "ticking", "--json")
	keys := map[string]string{}
	var l struct {
		Runs []struct {
			ID string `json:"run_id"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatal(err)
	}
	for _, r := range l.Runs {
		v := e.waitRun(r.ID, "succeeded", 30*time.Second)
		showOut, _, _ := e.run("", "run", "show", r.ID, "--json")
		var k struct {
			Key string `json:"key"`
		}
		_ = json.Unmarshal([]byte(showOut), &k)
		if !strings.HasPrefix(k.Key, "schedule:") {
			t.Errorf("run %s has key %q, want one derived from its tick", v.ID, k.Key)
		}
		if other, dup := keys[k.Key]; dup {
			t.Errorf("tick %s started twice: runs %s and %s", k.Key, other, r.ID)
		}
		keys[k.Key] = r.ID
	}
	if len(keys) == 0 {
		t.Fatal("no scheduled run")
	}
}
