package metrics

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentq/agentq/jobs"
)

// TestUsageCounters: what an attempt reports spending raises the token and
// cost counters by workflow, step and model, whatever its outcome; an
// attempt that spent nothing leaves no series; the run id is no label.
func TestUsageCounters(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := New(Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	obs := m.Observer()
	used := jobs.Usage{Model: "small", TokensIn: 100, TokensOut: 20, CostUSD: 0.25}
	for _, tc := range []struct {
		name    string
		outcome jobs.Outcome
		usage   jobs.Usage
	}{
		{"success", jobs.OutcomeSuccess, used},
		{"retry", jobs.OutcomeRetry, used},
		{"dead", jobs.OutcomeDead, used},
		{"abandoned", jobs.OutcomeAbandoned, used},
		{"nothing spent", jobs.OutcomeSuccess, jobs.Usage{}},
	} {
		s := &jobs.Step{Kind: jobs.KindLLMChat, Workflow: "research", RunID: "run-" + tc.name, Name: "draft"}
		obs.Observe(context.Background(), s, &jobs.Result{Outcome: tc.outcome, Usage: tc.usage})
	}
	// A task in no run: step "".
	obs.Observe(context.Background(), &jobs.Step{Kind: jobs.KindLLMChat}, &jobs.Result{Outcome: jobs.OutcomeSuccess, Usage: jobs.Usage{Model: "big", TokensIn: 7}})

	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"agentq_tokens_total", map[string]string{"workflow": "research", "step": "draft", "model": "small", "direction": "in"}, 400},
		{"agentq_tokens_total", map[string]string{"workflow": "research", "step": "draft", "model": "small", "direction": "out"}, 80},
		{"agentq_cost_usd_total", map[string]string{"workflow": "research", "step": "draft", "model": "small"}, 1},
		{"agentq_tokens_total", map[string]string{"workflow": "", "step": "", "model": "big", "direction": "in"}, 7},
	} {
		if got := counter(t, reg, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// 3 series of "small" and the "big" one's "in": no "out" or cost
	// series for a zero, none for the attempt that spent nothing.
	if n := series(t, reg, "agentq_tokens_total"); n != 3 {
		t.Errorf("%d token series, want 3", n)
	}
	if n := series(t, reg, "agentq_cost_usd_total"); n != 1 {
		t.Errorf("%d cost series, want 1", n)
	}
	out := scrape(t, Handler(reg))
	wantLines(t, out,
		`agentq_tokens_total{direction="in",model="small",step="draft",workflow="research"} 400`,
		`agentq_cost_usd_total{model="small",step="draft",workflow="research"} 1`,
	)
	if strings.Contains(out, "run_id") || strings.Contains(out, "run-success") {
		t.Errorf("a run id reached the metrics:\n%s", out)
	}
	if !strings.Contains(out, "agentq run show") {
		t.Errorf("the help does not say where per-run numbers are:\n%s", out)
	}
}

// TestUsageLabelsBounded: past MaxLabelValues distinct models (or steps),
// usage is counted under OtherLabel; a value not valid UTF-8 does not
// panic.
func TestUsageLabelsBounded(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := New(Config{Registerer: reg, MaxLabelValues: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		s := &jobs.Step{Workflow: "w", RunID: "r", Name: fmt.Sprintf("added-%d", i)}
		m.Observer().Observe(context.Background(), s, &jobs.Result{Outcome: jobs.OutcomeSuccess,
			Usage: jobs.Usage{Model: fmt.Sprintf("m%d", i%2), TokensIn: 1}})
	}
	tok := func(step, model string) float64 {
		return counter(t, reg, "agentq_tokens_total", map[string]string{"workflow": "w", "step": step, "model": model, "direction": "in"})
	}
	if got := tok(OtherLabel, "m0") + tok(OtherLabel, "m1"); got != 7 {
		t.Errorf("steps past the bound counted %v under %s, want 7", got, OtherLabel)
	}
	if got := tok("added-0", "m0"); got != 1 {
		t.Errorf("a step within the bound counted %v, want 1", got)
	}
	m.Observer().Observe(context.Background(), &jobs.Step{Workflow: "w", Name: "added-0"},
		&jobs.Result{Outcome: jobs.OutcomeDead, Usage: jobs.Usage{Model: "bad\xff", CostUSD: 1}})
	if got := counter(t, reg, "agentq_cost_usd_total", map[string]string{"workflow": "w", "step": "added-0", "model": "bad\uFFFD"}); got != 1 {
		t.Errorf("invalid UTF-8 model counted %v, want 1 under its repaired name", got)
	}
	if _, err := New(Config{Registerer: prometheus.NewRegistry(), MaxLabelValues: -1}); err == nil || !strings.Contains(err.Error(), "max_label_values") {
		t.Errorf("negative MaxLabelValues: %v", err)
	}
}

// counter returns the value of the series of metric name whose labels are
// exactly labels; -1 when there is none.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; !ok || v != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// series counts the series of a metric family in reg.
func series(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}
