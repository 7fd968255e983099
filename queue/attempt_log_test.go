package queue

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/logbuf"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
)

// TestAttemptLineFields pins the attempt line's field set: run_id and step
// always, the usage fields when the attempt reported usage (a failed one
// too), nothing else new.
func TestAttemptLineFields(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	reg := NewRegistry()
	err := Register(reg, echoSchema, func(_ context.Context, s *jobs.Step, a echoArgs) error {
		if a.N > 0 {
			s.ReportUsage(jobs.Usage{Model: "small", TokensIn: 120, TokensOut: 30, CostUSD: 0.0015})
		}
		if a.Mode == "permanent" {
			return jobs.Permanent(errors.New("bad request"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	log := zerolog.New(logs)
	w, err := NewWorker(rdb, reg, WorkerConfig{Logger: &log})
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"level", "message", "task_id", "kind", "queue", "workflow", "run_id", "step", "attempt", "max_attempts", "duration_ms", "outcome"}
	usage := []string{"tokens_in", "tokens_out", "cost_usd", "model"}
	tests := []struct {
		name     string
		payload  string
		headers  map[string]string
		want     []string
		wantStep string
	}{
		{"plain task, no usage", `{"n":0}`, nil, base, ""},
		{"run step with usage", `{"n":1}`, map[string]string{jobs.HeaderRunID: "run-1", jobs.HeaderStep: "draft", jobs.HeaderWorkflow: ""},
			append(slices.Clone(base), usage...), "draft"},
		{"failed run step keeps its usage", `{"n":1,"mode":"permanent"}`, map[string]string{jobs.HeaderRunID: "run-2", jobs.HeaderStep: "review"},
			append(slices.Clone(base), append(usage, "class", "error")...), "review"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(logs.String())
			_ = w.ProcessTask(context.Background(), asynq.NewTaskWithHeaders("test.echo", []byte(tc.payload), tc.headers))
			out := strings.TrimSpace(logs.String()[before:])
			var line map[string]any
			if err := json.Unmarshal([]byte(out), &line); err != nil {
				t.Fatalf("not one JSON line: %q", out)
			}
			got := slices.Sorted(maps.Keys(line))
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Fatalf("fields %q, want %q", got, want)
			}
			if line["step"] != tc.wantStep || line["run_id"] != tc.headers[jobs.HeaderRunID] {
				t.Fatalf("step %v run_id %v, want %q %q", line["step"], line["run_id"], tc.wantStep, tc.headers[jobs.HeaderRunID])
			}
			if _, ok := line["tokens_in"]; ok {
				if line["tokens_in"] != 120.0 || line["tokens_out"] != 30.0 || line["cost_usd"] != 0.0015 || line["model"] != "small" {
					t.Fatalf("usage fields: %v", line)
				}
			}
		})
	}
}
