package handlers

import (
	"context"

	"github.com/agentq/agentq/jobs"
)

// NoopSchema is the JSON Schema of a noop payload: an empty object.
const NoopSchema = `{"type":"object","additionalProperties":false}`

// NoopArgs is the payload of a noop task; it has no fields.
type NoopArgs struct{}

// Kind returns jobs.KindNoop.
func (NoopArgs) Kind() string { return jobs.KindNoop }

// Noop does nothing and succeeds. It serves smoke tests and benchmarks of
// the queue itself.
func Noop(ctx context.Context, s *jobs.Step, a NoopArgs) error { return nil }
