package jobs

import (
	"context"
	"encoding/json"
	"time"
)

// Outcome is what became of one attempt.
type Outcome string

// Outcomes of an attempt.
const (
	// OutcomeSuccess: the step is done.
	OutcomeSuccess Outcome = "success"
	// OutcomeRetry: the attempt failed and the step runs again after Delay.
	OutcomeRetry Outcome = "retry"
	// OutcomeSnooze: the step runs again after Delay without spending an
	// attempt.
	OutcomeSnooze Outcome = "snooze"
	// OutcomeDead: the step is dead-lettered.
	OutcomeDead Outcome = "dead"
	// OutcomeAbandoned is an attempt the queue gave up on while it ran (a
	// shutdown requeued it, or the queue's own timeout or a lease expiry
	// ended it): the queue has decided what happens next, so observers
	// count it as neither success nor failure.
	OutcomeAbandoned Outcome = "abandoned"
)

// Result is the outcome of one attempt, decided once by the queue and
// handed, as a value, to every Observer. Observers read it; none of them
// decides the outcome again.
type Result struct {
	// Outcome is what becomes of the step.
	Outcome Outcome
	// Class is the class of Err (ClassNone on success).
	Class Class
	// Err is what the chain returned; nil on success.
	Err error
	// Message is Err's text with secrets masked: what logs, dead letters
	// and the queue's stored last error show. Empty on success.
	Message string
	// Delay is how long until the next attempt (retry and snooze).
	Delay time.Duration
	// Started is when the attempt started; Duration is how long it ran.
	Started  time.Time
	Duration time.Duration
	// Usage is what the attempt reported spending (Step.ReportUsage),
	// whatever its outcome.
	Usage Usage
	// Output is the step's output (Step.SetOutput); nil when none.
	Output json.RawMessage

	// atCompletion, set by the queue, commits writes with the queue's own
	// completion of the task (one round trip, atomically).
	atCompletion func(CompletionWrite) bool
}

// CompletionWrite is a Redis hash field written with an expiry: the form of
// a record that must be durable no later than the queue marks a step done
// (the idempotency ledger's success entry).
type CompletionWrite struct {
	// Key is the Redis key of the hash; Field and Value the field written.
	Key, Field, Value string
	// TTL is the key's expiry, renewed by the write.
	TTL time.Duration
}

// AtCompletion asks the queue to commit w atomically with its own
// completion of this successful step, in the same round trip. It reports
// false when the queue cannot (another outcome, an unpinned queue version,
// Redis Cluster): the caller then writes w itself before returning.
func (r *Result) AtCompletion(w CompletionWrite) bool {
	if r.atCompletion == nil || r.Outcome != OutcomeSuccess {
		return false
	}
	return r.atCompletion(w)
}

// SetAtCompletion installs the queue's completion hook. Only the queue
// calls it.
func (r *Result) SetAtCompletion(fn func(CompletionWrite) bool) { r.atCompletion = fn }

// Observer watches decided attempts: dead-letter capture, metrics, error
// budgets, the ledger's success records, later runs and audit. Observe runs
// after the outcome is decided and before the queue is told, in the order
// the observers were given; it must not block for long, and what it does
// never changes the outcome.
type Observer interface {
	Observe(ctx context.Context, s *Step, r *Result)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(ctx context.Context, s *Step, r *Result)

// Observe calls f.
func (f ObserverFunc) Observe(ctx context.Context, s *Step, r *Result) { f(ctx, s, r) }
