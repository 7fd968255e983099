package jobs

import (
	"context"
	"encoding/json"
	"time"
)

// Well-known task kinds shipped with agentq.
const (
	// KindHTTPCall is the built-in tool call: one HTTP request with
	// classification of the response.
	KindHTTPCall = "http.call"
	// KindNoop does nothing and succeeds; it is used for smoke tests and
	// benchmarks.
	KindNoop = "noop"
)

// Header names under which agentq stores step metadata on a task. They are
// part of the wire format between enqueuers and workers.
const (
	HeaderWorkflow  = "agentq-workflow"
	HeaderRunID     = "agentq-run-id"
	HeaderKey       = "agentq-idempotency-key"
	HeaderReplayOf  = "agentq-replay-of"
	HeaderRetryBase = "agentq-retry-base"
	HeaderRetryMax  = "agentq-retry-max"
	HeaderTimeout   = "agentq-timeout"
)

// Args is implemented by every typed payload. Kind returns the task kind the
// payload belongs to (river's JobArgs.Kind).
type Args interface {
	Kind() string
}

// Validator is implemented by payloads that check themselves beyond their
// JSON schema. Validate runs at enqueue, before anything reaches Redis.
type Validator interface {
	Validate() error
}

// Step is one attempt of one task as a handler sees it.
type Step struct {
	// TaskID is the task's id in the queue; stable across attempts.
	TaskID string
	// Kind is the task kind, e.g. "http.call".
	Kind string
	// Queue is the queue the task was taken from.
	Queue string
	// Workflow is the workflow the task belongs to; empty when none.
	Workflow string
	// RunID groups the steps of one run; empty when none.
	RunID string
	// Key is the idempotency key given at enqueue; empty when none.
	Key string
	// ReplayOf is the id of the dead letter this task replays; empty when none.
	ReplayOf string
	// Attempt is the 1-based number of this attempt.
	Attempt int
	// MaxAttempts is the number of attempts the task may use in all.
	MaxAttempts int
	// Payload is the task's JSON payload.
	Payload json.RawMessage
	// Headers are the task's headers, agentq's own included.
	Headers map[string]string
	// Name is the run step this task is (its StepDef's name); empty when
	// the task is not part of a run.
	Name string
	// Answered is set by a middleware that ended this attempt with the
	// record of an earlier success (the idempotency ledger answering a
	// repeated delivery) without calling the handler: observers that record
	// successes do not record it again.
	Answered bool

	usage  Usage           // ReportUsage
	output json.RawMessage // SetOutput
	added  []StepDef       // AddSteps
}

// LastAttempt reports whether a failure of this attempt leaves no retries.
func (s *Step) LastAttempt() bool { return s.Attempt >= s.MaxAttempts }

// Handler processes one step. It has the shape of asynq's Handler with a
// typed step instead of a raw task.
type Handler interface {
	ProcessStep(ctx context.Context, s *Step) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, s *Step) error

// ProcessStep calls fn(ctx, s).
func (fn HandlerFunc) ProcessStep(ctx context.Context, s *Step) error { return fn(ctx, s) }

// Middleware wraps a Handler. In a chain the first middleware given is the
// outermost.
type Middleware func(Handler) Handler

// Chain wraps h in mws so that mws[0] runs first.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Now is the clock type injected wherever timing decides behaviour.
type Now func() time.Time
