package agentq

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/agentq/agentq/budget"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/runs"
)

func TestBudgetAlerts(t *testing.T) {
	t.Parallel()
	var got []any
	budgetAlerts(func(v any) { got = append(got, v) })(context.Background(), budget.Event{
		Kind: budget.EventExhausted, Message: "workflow publish exhausted",
		Status: budget.Status{Workflow: "publish", Events: 10, Failures: 4, SLO: 0.9, Window: time.Minute},
	})
	if len(got) != 1 {
		t.Fatalf("sent %d alerts, want 1", len(got))
	}
	a, ok := got[0].(budgetAlert)
	if !ok || a.Event != "budget_exhausted" || a.Workflow != "publish" || a.Failures != 4 || a.Window != "1m0s" || a.Text != "agentq: workflow publish exhausted" {
		t.Fatalf("alert = %#v", got[0])
	}
}

func TestCapAlert(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	a := newCapAlert(runs.CapEvent{RunID: "r1", Workflow: "article", Step: "draft", At: at,
		Err: &jobs.CapExceededError{Cap: "max_cost_usd", Limit: "$45.00", Value: "$45.20"}})
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"event":"run_capped","text":"agentq: run r1 of workflow article is over its cap max_cost_usd: $45.20, limit $45.00; no further step starts (step draft dead-lettered)","run_id":"r1","workflow":"article","step":"draft","cap":"max_cost_usd","limit":"$45.00","value":"$45.20","at":"2026-12-01T09:00:00Z"}`
	if string(b) != want {
		t.Errorf("alert = %s\nwant    %s", b, want)
	}
}

func TestWorkerQueuesServeRunQueues(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	wfs := map[string]runs.Workflow{"a": {Queue: "articles", Steps: []jobs.StepDef{{Name: "s", Kind: "noop", Queue: "fast"}}}}
	q := workerQueues(cfg, wfs)
	if q["articles"] != 1 || q["fast"] != 1 || q["default"] != 1 {
		t.Errorf("queues = %v, want default, articles and fast", q)
	}
	cfg.Worker.Queues = map[string]int{"only": 1}
	if q := workerQueues(cfg, wfs); len(q) != 1 {
		t.Errorf("explicit worker.queues = %v, want it as given", q)
	}
}

// TestOnCappedPostsWithWebhook: with alerts.webhook_url, a run over a cap
// is posted by the runtime's webhook (built in New, no worker needed);
// without one it is only logged.
func TestOnCappedPostsWithWebhook(t *testing.T) {
	t.Parallel()
	e := runs.CapEvent{RunID: "r1", Workflow: "w", Err: &jobs.CapExceededError{Cap: "max_tokens", Limit: "10", Value: "12"}}
	(&Runtime{log: zerolog.Nop()}).onCapped(context.Background(), e) // no webhook: logged only

	posted := make(chan capAlert, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var a capAlert
		if err := json.NewDecoder(req.Body).Decode(&a); err == nil {
			posted <- a
		}
	}))
	t.Cleanup(srv.Close)
	cfg := config.Default()
	cfg.Alerts.WebhookURL = srv.URL
	r, err := New(cfg, Options{LogTo: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	r.runsConfig().OnCapped(context.Background(), e)
	if a := <-posted; a.Cap != "max_tokens" || a.Event != "run_capped" || a.RunID != "r1" {
		t.Fatalf("posted %#v", a)
	}
}
