package runs

import (
	"testing"

	"github.com/agentq/agentq/jobs"
)

// TestAddUsageCountsModelAttempts: an attempt that reports usage on a
// model counts once in that model's attempts (by_model), failed or not,
// also with no tokens; a snooze's does not; usage with no model counts in
// the totals only.
func TestAddUsageCountsModelAttempts(t *testing.T) {
	t.Parallel()
	type add struct {
		u       jobs.Usage
		attempt bool
	}
	tests := []struct {
		name     string
		adds     []add
		want     map[string]Totals
		tokensIn int64
	}{
		{"one attempt", []add{{jobs.Usage{Model: "small", TokensIn: 10, TokensOut: 2}, true}},
			map[string]Totals{"small": {TokensIn: 10, TokensOut: 2, Attempts: 1}}, 10},
		{"two models, three attempts", []add{
			{jobs.Usage{Model: "small", TokensIn: 1}, true}, {jobs.Usage{Model: "small", TokensIn: 2}, true}, {jobs.Usage{Model: "large", TokensIn: 4}, true}},
			map[string]Totals{"small": {TokensIn: 3, Attempts: 2}, "large": {TokensIn: 4, Attempts: 1}}, 7},
		{"a model call that billed nothing", []add{{jobs.Usage{Model: "small"}, true}},
			map[string]Totals{"small": {Attempts: 1}}, 0},
		{"a snooze spends no attempt", []add{{jobs.Usage{Model: "small", TokensIn: 5}, false}},
			map[string]Totals{"small": {TokensIn: 5}}, 5},
		{"no model", []add{{jobs.Usage{TokensIn: 5}, true}}, nil, 5},
		{"nothing", []add{{jobs.Usage{}, true}}, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &doc{Steps: []stepRec{{}}}
			for _, a := range tc.adds {
				d.addUsage(0, a.u, a.attempt)
			}
			if d.Totals.TokensIn != tc.tokensIn || d.Steps[0].Totals.TokensIn != tc.tokensIn {
				t.Fatalf("tokens in: run %d step %d, want %d", d.Totals.TokensIn, d.Steps[0].Totals.TokensIn, tc.tokensIn)
			}
			for _, got := range []map[string]Totals{d.ByModel, d.Steps[0].ByModel} {
				if len(got) != len(tc.want) {
					t.Fatalf("by model %+v, want %+v", got, tc.want)
				}
				for m, w := range tc.want {
					if got[m] != w {
						t.Fatalf("by model %s = %+v, want %+v", m, got[m], w)
					}
				}
			}
		})
	}
}
