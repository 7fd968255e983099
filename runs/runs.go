// Package runs runs whole agent runs: a workflow's steps, each one queued
// task with its own retries and dead letters, run one after another with
// the outputs of earlier steps rendered into later steps' payloads; tokens
// and cost added up per step and run; caps that stop a run; fallbacks,
// cancellation, dead-letter replay that continues a run, steps added at run
// time, and scheduled runs.
//
// State model: a run's state lives in Redis under the hash tag
// {run:<id>} (see keys.go) and carries a version, bumped by every change.
// Every change is one script that checks the version it was computed from
// (compare and set), so a repeated delivery, a cancel and a replay never
// interleave into a state nobody wrote. A step's task is enqueued with the
// idempotency key "<run id>/<step>", so its task id and its side effect's
// Idempotency-Key are derived from run and step: a step enqueued twice is
// one task, and a step's success, once stored in the run, is never run
// again.
package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/rs/zerolog"

	"github.com/agentq/agentq/jobs"
)

// Status is where a run stands.
type Status string

// Run statuses.
const (
	// StatusRunning: a step is queued or running.
	StatusRunning Status = "running"
	// StatusWaiting: the run waits for something outside it (an approval;
	// reserved for approval gates).
	StatusWaiting Status = "waiting"
	// StatusSucceeded: every step succeeded (or was replaced by its
	// fallback, which succeeded).
	StatusSucceeded Status = "succeeded"
	// StatusFailed: a step was dead-lettered and had no fallback. A replay
	// of that step that succeeds continues the run.
	StatusFailed Status = "failed"
	// StatusCapped: the run went over a cap; no further step starts.
	StatusCapped Status = "capped"
	// StatusCancelled: the run was cancelled; no further step starts.
	StatusCancelled Status = "cancelled"
)

// Terminal reports whether no step of a run in status s starts again by
// itself (a replay may still continue a failed run).
func (s Status) Terminal() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCapped || s == StatusCancelled
}

// StepStatus is where one step of a run stands.
type StepStatus string

// Step statuses.
const (
	StepPending   StepStatus = "pending"   // in the plan, not enqueued yet
	StepQueued    StepStatus = "queued"    // its task is in the queue
	StepRunning   StepStatus = "running"   // an attempt is running
	StepRetrying  StepStatus = "retrying"  // an attempt failed; another is due
	StepSucceeded StepStatus = "succeeded" // its output is stored
	StepDead      StepStatus = "dead"      // dead-lettered
	StepReplaced  StepStatus = "replaced"  // dead-lettered, its fallback ran instead
	StepSkipped   StepStatus = "skipped"   // not run: the run was cancelled, capped or failed first
)

// Caps bound a run. Zero means no cap.
type Caps struct {
	// MaxCostUSD bounds the run's cost in US dollars.
	MaxCostUSD float64 `json:"max_cost_usd,omitempty"`
	// MaxTokens bounds the run's tokens, in and out.
	MaxTokens int64 `json:"max_tokens,omitempty"`
	// MaxDuration bounds the run's wall time from its start.
	MaxDuration time.Duration `json:"max_duration,omitempty"`
	// MaxSteps bounds how many steps start (fallbacks and added steps
	// count).
	MaxSteps int `json:"max_steps,omitempty"`
	// MaxAttempts bounds the attempts of all the run's steps together.
	MaxAttempts int `json:"max_attempts,omitempty"`
}

// Check checks the caps, the one rule for a workflow's caps and a run's
// (StartOptions.Caps): none is negative, and the cost cap is a finite
// number (an infinite cap is no cap: that is 0). It returns every problem,
// each a *FieldError whose Path is the cap's key (max_cost_usd, ...),
// joined with errors.Join; nil when the caps are valid.
func (c Caps) Check() error {
	var errs []error
	for _, fe := range c.problems() {
		errs = append(errs, &fe)
	}
	return errors.Join(errs...)
}

func (c Caps) problems() []FieldError {
	var out []FieldError
	add := func(path, format string, args ...any) {
		out = append(out, FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
	}
	if c.MaxCostUSD < 0 || math.IsNaN(c.MaxCostUSD) || math.IsInf(c.MaxCostUSD, 0) {
		add("max_cost_usd", "must be a finite, non-negative number of US dollars (0 for no cap), got %v", c.MaxCostUSD)
	}
	if c.MaxTokens < 0 {
		add("max_tokens", "must not be negative, got %d", c.MaxTokens)
	}
	if c.MaxDuration < 0 {
		add("max_duration", "must not be negative, got %v", c.MaxDuration)
	}
	if c.MaxSteps < 0 {
		add("max_steps", "must not be negative, got %d", c.MaxSteps)
	}
	if c.MaxAttempts < 0 {
		add("max_attempts", "must not be negative, got %d", c.MaxAttempts)
	}
	return out
}

// Tighten returns c with each cap of o that is tighter (or set where c's
// is not): a run's own caps can only narrow its workflow's.
func (c Caps) Tighten(o Caps) Caps {
	if o.MaxCostUSD > 0 && (c.MaxCostUSD == 0 || o.MaxCostUSD < c.MaxCostUSD) {
		c.MaxCostUSD = o.MaxCostUSD
	}
	if o.MaxTokens > 0 && (c.MaxTokens == 0 || o.MaxTokens < c.MaxTokens) {
		c.MaxTokens = o.MaxTokens
	}
	if o.MaxDuration > 0 && (c.MaxDuration == 0 || o.MaxDuration < c.MaxDuration) {
		c.MaxDuration = o.MaxDuration
	}
	if o.MaxSteps > 0 && (c.MaxSteps == 0 || o.MaxSteps < c.MaxSteps) {
		c.MaxSteps = o.MaxSteps
	}
	if o.MaxAttempts > 0 && (c.MaxAttempts == 0 || o.MaxAttempts < c.MaxAttempts) {
		c.MaxAttempts = o.MaxAttempts
	}
	return c
}

// Schedule starts a workflow's run at each tick of a cron expression.
type Schedule struct {
	// Cron is a five-field cron expression ("0 9 * * MON") or a
	// descriptor (@hourly, @every 10m).
	Cron string `json:"cron"`
	// Timezone is an IANA zone name the expression is read in; default
	// UTC.
	Timezone string `json:"timezone,omitempty"`
	// Input is the input of each run it starts; default {}.
	Input json.RawMessage `json:"input,omitempty"`
}

// Workflow defines a workflow's steps. Steps run in order, except those
// named as another step's fallback: they run only in that role.
type Workflow struct {
	// Name is the workflow's name.
	Name string `json:"name"`
	// Queue is the queue of its steps' tasks; a step may name its own.
	// Empty uses the enqueue default.
	Queue string `json:"queue,omitempty"`
	// Caps bound each run of the workflow.
	Caps Caps `json:"caps,omitempty"`
	// Steps are the workflow's steps.
	Steps []jobs.StepDef `json:"steps"`
	// Schedule, when set, starts runs on a cron schedule.
	Schedule *Schedule `json:"schedule,omitempty"`
}

// StartOptions are the settings of one run start.
type StartOptions struct {
	// Key makes the start idempotent: starting the same workflow with the
	// same key again gives the first run's id and Duplicate. The run id
	// is derived from workflow and key.
	Key string
	// Caps tighten the workflow's caps for this run.
	Caps Caps
}

// Started says what a start did.
type Started struct {
	RunID     string `json:"run_id"`
	Duplicate bool   `json:"duplicate"`
}

// Totals is what a run or step spent.
type Totals struct {
	TokensIn  int64   `json:"tokens_in"`
	TokensOut int64   `json:"tokens_out"`
	CostUSD   float64 `json:"cost_usd"`
	// Attempts is how many attempts ran. In by_model, it counts the
	// attempts that reported usage on the model (a model call that failed
	// before its reply said what it spent is not known to be the model's).
	Attempts int `json:"attempts"`
}

// StepState is one step of a run as `agentq run show` prints it.
type StepState struct {
	Name   string     `json:"name"`
	Kind   string     `json:"kind"`
	Queue  string     `json:"queue"`
	Status StepStatus `json:"status"`
	TaskID string     `json:"task_id,omitempty"`
	// FallbackFor names the step this one replaced; Replacement the step
	// that replaced this one.
	FallbackFor string `json:"fallback_for,omitempty"`
	Replacement string `json:"replacement,omitempty"`
	// Added is set on a step a handler added at run time.
	Added    bool          `json:"added,omitempty"`
	Started  time.Time     `json:"started,omitzero"`
	Ended    time.Time     `json:"ended,omitzero"`
	Duration time.Duration `json:"duration,omitempty"`
	Totals
	// ByModel splits the step's usage by model.
	ByModel map[string]Totals `json:"by_model,omitempty"`
	// Output is the stored output (bounded); OutputSummary a short line of it.
	Output        json.RawMessage `json:"output,omitempty"`
	OutputSummary string          `json:"output_summary,omitempty"`
	// LastError and LastClass are the last failed attempt's masked error
	// and class; DeadLetter the dead-letter id when it was dead-lettered.
	LastError  string     `json:"last_error,omitempty"`
	LastClass  jobs.Class `json:"last_class,omitempty"`
	DeadLetter string     `json:"dead_letter,omitempty"`
}

// Event is one entry of a run's history.
type Event struct {
	At   time.Time `json:"at"`
	Kind string    `json:"kind"` // started, step_queued, step_succeeded, step_retry, step_dead, fallback, replayed, steps_added, capped, cancelled, succeeded, failed
	Step string    `json:"step,omitempty"`
	Text string    `json:"text"`
}

// Run is one run's full state.
type Run struct {
	ID       string          `json:"run_id"`
	Workflow string          `json:"workflow"`
	Status   Status          `json:"status"`
	Key      string          `json:"key,omitempty"`
	Input    json.RawMessage `json:"input"`
	// Reason says why a run ended other than succeeded (the cap and its
	// values, the dead step, the cancel reason).
	Reason  string    `json:"reason,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	Ended   time.Time `json:"ended,omitzero"`
	Caps    Caps      `json:"caps"`
	Totals
	ByModel map[string]Totals `json:"by_model,omitempty"`
	// StepsStarted counts the steps that started (what max_steps bounds).
	StepsStarted int `json:"steps_started"`
	// Steps are the run's steps in plan order, fallbacks after the step
	// they may replace.
	Steps   []StepState `json:"steps"`
	History []Event     `json:"history,omitempty"`
	// Version is the state's version, bumped by every change.
	Version int64 `json:"version"`
}

// Summary is one line of `agentq run list`.
type Summary struct {
	ID       string    `json:"run_id"`
	Workflow string    `json:"workflow"`
	Status   Status    `json:"status"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
	// Step is the current (or last) step.
	Step string `json:"step,omitempty"`
	Totals
}

// ListOptions filter `agentq run list`; zero values do not filter.
type ListOptions struct {
	Workflow string
	Status   Status
	// Since keeps runs created at or after it.
	Since time.Time
	// Limit bounds the result, newest first: 0 means ListLimitDefault (50),
	// NoLimit (or any negative value) lists every run.
	Limit int
}

// ListLimitDefault is ListOptions.Limit's default.
const ListLimitDefault = 50

// NoLimit as ListOptions.Limit lists every run.
const NoLimit = -1

// CapEvent is a run going over a cap, handed to Config.OnCapped (which
// the worker turns into an alert).
type CapEvent struct {
	// Step is the step the cap stops: the one due, dead-lettered with
	// class cap_exceeded.
	RunID, Workflow, Step string
	Err                   *jobs.CapExceededError
	At                    time.Time
}

// Config configures Runs.
type Config struct {
	// Workflows are the workflows by name; runs of others cannot start.
	Workflows map[string]Workflow
	// Retention is how long a finished run's state is kept; at least
	// RetentionMin (1m). Default RetentionDefault (720h).
	Retention time.Duration
	// MaxOutputBytes bounds a step's stored output; a larger output fails
	// the attempt (permanent); at most MaxOutputBytesLimit (64 MiB).
	// Default MaxOutputBytesDefault (256 KiB).
	MaxOutputBytes int
	// MaxSteps bounds a run's steps, added ones included, whatever its
	// caps. Default MaxStepsDefault (100).
	MaxSteps int
	// OnCapped, when set, is told of every run that goes over a cap.
	OnCapped func(context.Context, CapEvent)
	// DeadLetterOf, when set, finds the dead letter of a step's task
	// (queue, task id) for Get: "" when it has none.
	DeadLetterOf func(ctx context.Context, queue, taskID string) (string, error)
	// Logger receives the runs' log lines. Default: zerolog's global.
	Logger *zerolog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Defaults of Config.
const (
	RetentionDefault      = 720 * time.Hour
	MaxOutputBytesDefault = 256 << 10
	MaxStepsDefault       = 100
)

// ErrNotFound is returned for a run id that is not stored (never started,
// or past its retention).
var ErrNotFound = errors.New("run not found")
