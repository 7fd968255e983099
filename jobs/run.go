package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// KindLLMChat is the built-in model call: one request to an
// OpenAI-compatible chat completions endpoint, with its usage recorded.
const KindLLMChat = "llm.chat"

// HeaderStep names the run step a task is; HeaderRunVersion is the run's
// state version the task was enqueued against (see package runs).
const (
	HeaderStep       = "agentq-step"
	HeaderRunVersion = "agentq-run-v"
)

// Classes of run failures.
const (
	// ClassSchema is a reply that fails the JSON Schema its step asked for
	// (llm.chat's response_schema): retryable, the next reply may meet it.
	ClassSchema Class = "schema"
	// ClassCapExceeded is a step not run because its run is over one of
	// its caps: it dead-letters at once.
	ClassCapExceeded Class = "cap_exceeded"
)

// Usage is what work spent: tokens and money. Handlers report it on the
// step (Step.ReportUsage); runs add it up per step, run, workflow and model.
type Usage struct {
	// Model is the model the tokens were spent on; empty when none.
	Model string `json:"model,omitempty"`
	// TokensIn and TokensOut are prompt and completion tokens.
	TokensIn  int64 `json:"tokens_in"`
	TokensOut int64 `json:"tokens_out"`
	// CostUSD is what the tokens cost, in US dollars.
	CostUSD float64 `json:"cost_usd"`
}

// Tokens is TokensIn plus TokensOut.
func (u Usage) Tokens() int64 { return u.TokensIn + u.TokensOut }

// IsZero reports whether u records nothing spent.
func (u Usage) IsZero() bool { return u.TokensIn == 0 && u.TokensOut == 0 && u.CostUSD == 0 }

// Add returns u plus v; the model is v's when v names one.
func (u Usage) Add(v Usage) Usage {
	u.TokensIn += v.TokensIn
	u.TokensOut += v.TokensOut
	u.CostUSD += v.CostUSD
	if v.Model != "" {
		u.Model = v.Model
	}
	return u
}

// StepDef defines one step of a workflow: the kind that runs it, where and
// how often, and its payload template. Workflows in config and steps a
// handler adds at run time (Step.AddSteps) share it.
type StepDef struct {
	// Name is unique within the run; templates see its output as
	// .steps.<name>.output.
	Name string `json:"name"`
	// Kind is the task kind, e.g. "llm.chat".
	Kind string `json:"kind"`
	// Queue overrides the workflow's queue; empty keeps it.
	Queue string `json:"queue,omitempty"`
	// Payload is the payload template: JSON whose string values are Go
	// text/templates over .input, .run_id and .steps.<name>.output.
	Payload json.RawMessage `json:"payload,omitempty"`
	// Fallback names the step run instead of this one when this one is
	// dead-lettered; empty for none.
	Fallback string `json:"fallback,omitempty"`
	// MaxAttempts, RetryBase and RetryMax override the workflow's retry
	// policy; 0 keeps it.
	MaxAttempts int           `json:"max_attempts,omitempty"`
	RetryBase   time.Duration `json:"retry_base,omitempty"`
	RetryMax    time.Duration `json:"retry_max,omitempty"`
	// Timeout bounds one attempt; 0 keeps the default.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// ReportUsage adds u to what this attempt spent. Handlers call it for
// every model call, failed ones too: tokens spent on a failed attempt are
// real cost.
func (s *Step) ReportUsage(u Usage) { s.usage = s.usage.Add(u) }

// Usage is what this attempt reported spending.
func (s *Step) Usage() Usage { return s.usage }

// SetOutput records the step's output, which later steps of its run see as
// .steps.<name>.output. v is marshalled to JSON at once.
func (s *Step) SetOutput(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("step output: %w", err)
	}
	s.output = b
	return nil
}

// Output is the output the handler recorded; nil when none.
func (s *Step) Output() json.RawMessage { return s.output }

// AddSteps asks the step's run to run defs after this step, in order, when
// this attempt succeeds (a planner step deciding what comes next). The
// run's caps bound them; a step not in a run refuses them.
func (s *Step) AddSteps(defs ...StepDef) error {
	if s.RunID == "" || s.Name == "" {
		return errors.New("add steps: this step is not part of a run")
	}
	s.added = append(s.added, defs...)
	return nil
}

// Added is what AddSteps recorded in this attempt.
func (s *Step) Added() []StepDef { return s.added }

// CapExceededError is a step not run because its run is over a cap.
type CapExceededError struct {
	// Cap names the cap: "max_cost_usd", "max_tokens", "max_duration",
	// "max_steps" or "max_attempts".
	Cap string
	// Limit and Value say what the cap is and where the run stands.
	Limit, Value string
}

func (e *CapExceededError) Error() string {
	return fmt.Sprintf("run over its cap %s: %s, limit %s", e.Cap, e.Value, e.Limit)
}

// SchemaError is a reply that fails the JSON Schema its step asked for.
type SchemaError struct{ Err error }

func (e *SchemaError) Error() string { return "reply does not meet response_schema: " + e.Err.Error() }
func (e *SchemaError) Unwrap() error { return e.Err }
