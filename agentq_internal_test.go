package agentq

import (
	"context"
	"testing"
	"time"

	"github.com/agentq/agentq/budget"
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
