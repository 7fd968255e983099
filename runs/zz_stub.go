package runs

// TEMPORARY: signatures of the run engine, templates and scheduler for
// the helpers that wire them while those are written; deleted at merge.

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

var errStub = errors.New("runs: not built yet")

// Runs is the run engine.
type Runs struct{}

func New(rdb redis.UniversalClient, client *queue.Client, insp *queue.Inspector, cfg Config) (*Runs, error) {
	return &Runs{}, nil
}
func (r *Runs) Start(ctx context.Context, workflow string, input json.RawMessage, o StartOptions) (Started, error) {
	return Started{}, errStub
}
func (r *Runs) Get(ctx context.Context, id string) (*Run, error)           { return nil, errStub }
func (r *Runs) List(ctx context.Context, o ListOptions) ([]Summary, error) { return nil, errStub }
func (r *Runs) Cancel(ctx context.Context, id, reason string) error        { return errStub }
func (r *Runs) Middleware() jobs.Middleware                                { return func(h jobs.Handler) jobs.Handler { return h } }
func (r *Runs) Observer() jobs.Observer {
	return jobs.ObserverFunc(func(context.Context, *jobs.Step, *jobs.Result) {})
}
func (r *Runs) Workflows() map[string]Workflow { return nil }

// FieldError is a workflow validation problem at Path (relative to the workflow).
type FieldError struct{ Path, Reason string }

func (e *FieldError) Error() string                                { return e.Path + ": " + e.Reason }
func (w Workflow) Validate(knownKind func(kind string) bool) error { return nil }
func (w Workflow) Plan() []jobs.StepDef                            { return w.Steps }
func Render(step string, tmpl json.RawMessage, data map[string]any) (json.RawMessage, error) {
	return tmpl, nil
}
func ParseTemplates(step string, tmpl json.RawMessage) error { return nil }

